"""``xenstore-read [-p] [-R] key...``: print values, escaped unless ``-R``.

Several keys are read in one transaction. Output is held back until the end,
yet a failure still prints what was read before it (C's behaviour).
"""

from __future__ import annotations

from xenstore.tools import common
from xenstore.tools.connection import Failure
from xenstore.tools.escape import sanitise

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc would cost the tool's start-up
    from collections.abc import Sequence


def perform(job: common.Job, tx: int) -> int:
    for path in job.operands:
        try:
            value = job.conn.xs_read(path, tx)
        except Failure:
            job.msg.warnx(b"couldn't read path " + path)
            return 1
        if job.prefix:
            job.out += path + b": "
        # -R prints the bytes as stored, without even a newline.
        job.out += value if job.raw else sanitise(value) + b"\n"
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore-read``; ``argv`` excludes the program name."""
    return common.main("read", argv, prog, perform)


if __name__ == "__main__":
    raise SystemExit(main())
