"""``xenstore-chmod [-u] [-r] key perm...``: set a node's permissions.

Each perm is a letter (``n`` none, ``r`` read, ``w`` write, ``b`` both) and a
domain id, read with C's ``atoi`` and sent as libxenstore prints it: ``r``
alone is ``r0``, ``r0x10`` is ``r0``, and ``w2147483648`` (atoi wraps it to
-2147483648) is cut to ``w-214748364`` by the 12-byte buffer. ``-u`` applies the same perms
to every ancestor, ``-r`` to every descendant; all in one transaction.
"""

from __future__ import annotations

from xenstore.tools import common
from xenstore.tools.cnum import atoi
from xenstore.tools.connection import Failure, perm_to_string

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc would cost the tool's start-up
    from collections.abc import Sequence

#: do_chmod's ``char buf[MAX_PATH_LEN]``: -r's child paths are cut to 255 bytes.
MAX_PATH_LEN = 256


def parse_perm(job: common.Job, spec: bytes) -> bytes:
    """One perm argument as xs_perm_to_string would send it; exit on a bad letter."""
    letter = spec[:1]
    if letter == b"" or letter not in b"nrwb":
        # An empty argument shows its terminating NUL byte, as "%c" does.
        job.msg.errx(b"Invalid permission specification: '" + (letter or b"\0") + b"'")
    return perm_to_string(letter, atoi(spec[1:]))


def _set(job: common.Job, path: bytes, perms: list[bytes], tx: int) -> None:
    try:
        job.conn.xs_set_permissions(path, perms, tx)
    except Failure as exc:
        job.msg.err(b"Error occurred setting permissions on '" + path + b"'", exc.errno)


def _chmod_up(job: common.Job, path: bytes, perms: list[bytes], tx: int) -> None:
    """The ancestors of ``path``, nearest first, up to (not including) ``""``."""
    while True:
        slash = path.rfind(b"/")
        if slash < 0:
            job.msg.errx(b"Unable to locate path separator '/' in '" + path + b"'")
        path = path[:slash]
        if not path:
            return
        _set(job, path, perms, tx)


def _chmod_down(job: common.Job, path: bytes, perms: list[bytes], tx: int) -> None:
    """The descendants of ``path`` (already done itself), depth first."""
    try:
        children = job.conn.xs_directory(path, tx)
    except Failure:
        return  # C ignores a node it cannot list
    for child in children:
        # snprintf into a 256-byte buffer: long paths are silently cut.
        child_path = (path + b"/" + child)[: MAX_PATH_LEN - 1]
        if child_path:
            _set(job, child_path, perms, tx)
            _chmod_down(job, child_path, perms, tx)


def perform(job: common.Job, tx: int) -> int:
    path, specs = job.operands[0], job.operands[1:]
    perms = [parse_perm(job, spec) for spec in specs]
    if not path:
        return 0
    _set(job, path, perms, tx)
    if job.upto:
        _chmod_up(job, path, perms, tx)
    if job.recurse:
        _chmod_down(job, path, perms, tx)
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore-chmod``; ``argv`` excludes the program name."""
    return common.main("chmod", argv, prog, perform)


if __name__ == "__main__":
    raise SystemExit(main())
