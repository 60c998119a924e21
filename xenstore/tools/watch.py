"""``xenstore-watch [-n NR] [-d DEPTH] key...``: print the path of each watch event.

Every key is watched with itself as the token, then the path of each event is
printed on a line of its own and flushed at once (a script usually reads them
through a pipe), NR events in all (``-n``; forever without it, or with a
negative NR). The daemon fires every new watch once up front, so the first
lines name the keys themselves.

``-d DEPTH`` is Xen's newer watch depth (not in 4.17): the WATCH request
carries the depth as a third field and only changes at most DEPTH levels
below a key fire (0: the key itself). A negative DEPTH means an ordinary
watch. A daemon that does not know depths refuses the watch: 4.17 answers
EINVAL.

Where the connection is lost, C's loop keeps calling ``xs_read_watch()``,
which fails at once, so with ``-n`` the remaining count runs out and the tool
exits 0; without ``-n`` it would spin forever at full CPU, where this one
exits 1 instead.
"""

from __future__ import annotations

from xenstore import errors
from xenstore.protocol.codec import join
from xenstore.protocol.ops import Op
from xenstore.tools import common
from xenstore.tools.connection import Failure, ToolConnection

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc would cost the tool's start-up
    from collections.abc import Sequence

__all__ = ["main", "perform"]


def add_watch(conn: ToolConnection, path: bytes, depth: int) -> bool:
    """Watch ``path`` (token: the path itself), to ``depth`` levels if it is not negative.

    Returns whether the daemon accepted the watch.
    """
    if depth < 0:
        try:
            conn.xs_watch(path, path)
        except Failure:
            return False
        return True
    try:
        # xs_watch_depth(): the depth as "%u", after the path and the token.
        conn.request(Op.WATCH, join(path, path, b"%d" % depth))
    except (errors.XenStoreError, errors.ProtocolError, OSError):
        return False
    return True


def perform(job: common.Job, tx: int) -> int:
    """Watch every operand, then print ``job.nr_watches`` events (-1: forever)."""
    for path in job.operands:
        if add_watch(job.conn, path, job.depth):
            continue
        # C's formats end in "\n" and errx() adds another: a blank line follows.
        if job.depth < 0:
            job.msg.errx(b"Unable to add watch on " + path + b"\n")
        job.msg.errx(b"Unable to add watch on %s with depth %d\n" % (path, job.depth))
    count = 0
    while job.nr_watches == -1 or count < job.nr_watches:
        count += 1
        try:
            epath = job.conn.xs_read_watch()
        except Failure:
            # The connection is gone: every further read fails at once, so C
            # uses up the count and exits 0, or spins forever without -n.
            return 0 if job.nr_watches != -1 else 1
        job.stdout.write(epath + b"\n")
        job.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore-watch``; ``argv`` excludes the program name."""
    return common.main("watch", argv, prog, perform)


if __name__ == "__main__":
    raise SystemExit(main())
