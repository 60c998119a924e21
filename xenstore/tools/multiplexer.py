"""``xenstore <mode> ...``: the single binary that the C clients all are.

The mode comes from the program name when it is ``xenstore-<mode>`` (so a
link named ``xenstore-read`` to this command reads), else from the first
argument; in the latter case getopt's messages name the mode word
(``read: invalid option -- 'x'``) and the usage line includes it. Modes are
read, write, rm, exists, list, ls, chmod and watch.
"""

from __future__ import annotations

from collections.abc import Sequence

from xenstore.tools import common
from xenstore.tools.connection import Failure


def perform_watch(job: common.Job, tx: int) -> int:
    """``watch [-n NR] key...``: print the path of each event (NR of them, or forever).

    The token of each watch is its own path. Each event is flushed as it comes,
    since a script usually reads them through a pipe.
    """
    for path in job.operands:
        try:
            job.conn.xs_watch(path, path)
        except Failure:
            job.msg.errx(b"Unable to add watch on " + path + b"\n")
    count = 0
    while job.nr_watches == -1 or count < job.nr_watches:
        count += 1
        try:
            epath = job.conn.xs_read_watch()
        except Failure:
            # The connection is gone. C would spin on xs_read_watch() failing
            # until the count runs out (forever without -n): stop instead.
            return 1
        job.stdout.write(epath + b"\n")
        job.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore``; ``argv`` excludes the program name."""
    return common.main(None, argv, prog)


if __name__ == "__main__":
    raise SystemExit(main())
