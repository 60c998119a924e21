"""``xenstore-write [-R] key value...``: store values, unescaped unless ``-R``.

Several pairs are written in one transaction; the first failure aborts it.
"""

from __future__ import annotations

from xenstore.tools import common
from xenstore.tools.connection import Failure
from xenstore.tools.escape import unsanitise

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc would cost the tool's start-up
    from collections.abc import Sequence


def perform(job: common.Job, tx: int) -> int:
    operands = job.operands
    for i in range(0, len(operands), 2):
        path, spec = operands[i], operands[i + 1]
        value = spec if job.raw else unsanitise(spec)
        try:
            job.conn.xs_write(path, value, tx)
        except Failure:
            job.msg.warnx(b"could not write path " + path)
            return 1
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore-write``; ``argv`` excludes the program name."""
    return common.main("write", argv, prog, perform)


if __name__ == "__main__":
    raise SystemExit(main())
