"""``xenstore-exists key...``: exit 0 if every key can be read, else 1, silently."""

from __future__ import annotations

from xenstore.tools import common
from xenstore.tools.connection import Failure

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc would cost the tool's start-up
    from collections.abc import Sequence


def perform(job: common.Job, tx: int) -> int:
    for path in job.operands:
        try:
            job.conn.xs_read(path, tx)
        except Failure:
            return 1
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore-exists``; ``argv`` excludes the program name."""
    return common.main("exists", argv, prog, perform)


if __name__ == "__main__":
    raise SystemExit(main())
