"""``xenstore-rm [-t] key...``: remove nodes (and, with ``-t``, emptied parents).

``-t`` then removes each parent that has an empty value and no children left,
walking up until one does not qualify or cannot be read (the root's parent,
``""``, never can). All keys go in one transaction, so a failure on any of
them undoes the others.
"""

from __future__ import annotations

from xenstore.tools import common
from xenstore.tools.connection import Failure

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc would cost the tool's start-up
    from collections.abc import Sequence


def _rm(job: common.Job, path: bytes, tx: int) -> bool:
    try:
        job.conn.xs_rm(path, tx)
    except Failure:
        job.msg.warnx(b"could not remove path " + path)
        return False
    return True


def _removable(job: common.Job, path: bytes, tx: int) -> bool:
    """Whether -t removes ``path``: its value is empty (by length) and it has no children."""
    try:
        if job.conn.xs_read(path, tx):
            return False
        return not job.conn.xs_directory(path, tx)
    except Failure:
        return False


def perform(job: common.Job, tx: int) -> int:
    for path in job.operands:
        while True:
            if not _rm(job, path, tx):
                return 1
            slash = path.rfind(b"/")
            if not job.tidy or slash < 0:
                break
            path = path[:slash]
            if not _removable(job, path, tx):
                break
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore-rm``; ``argv`` excludes the program name."""
    return common.main("rm", argv, prog, perform)


if __name__ == "__main__":
    raise SystemExit(main())
