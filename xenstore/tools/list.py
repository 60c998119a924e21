"""``xenstore-list [-p] key...``: print the children's names, one a line.

With ``-p`` each name is prefixed by the key and a slash, even when the key
is ``/`` (so ``xenstore-list -p /`` prints ``//tool``: Xen 4.17 does).
"""

from __future__ import annotations

from xenstore.tools import common
from xenstore.tools.connection import Failure

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc would cost the tool's start-up
    from collections.abc import Sequence


def perform(job: common.Job, tx: int) -> int:
    for path in job.operands:
        try:
            names = job.conn.xs_directory(path, tx)
        except Failure:
            job.msg.warnx(b"could not list path " + path)
            return 1
        prefix = path + b"/" if job.prefix else b""
        for name in names:
            job.out += prefix + name + b"\n"
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore-list``; ``argv`` excludes the program name."""
    return common.main("list", argv, prog, perform)


if __name__ == "__main__":
    raise SystemExit(main())
