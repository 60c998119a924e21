"""``xenstore-ls [-f] [-p] [path...]``: print a tree with values (default ``/``).

The layout is C's, to the byte: one space of indent per level, the name cut
so that ``name = "..."`` fits the width, values escaped and cut with
``\\...`` when too long, and with ``-p`` a ``. . .`` leader to column 60
before the permissions. The width is 80 unless stdout is a terminal, then
its width less 2 (a 0- or 1-column terminal disables cutting, by an unsigned
comparison in C). ``-f`` prints full paths, never cut unless on a terminal.
Nothing is read in a transaction; a node that vanishes mid-walk is skipped.
"""

from __future__ import annotations

import errno

from xenstore.tools import common
from xenstore.tools.connection import Failure
from xenstore.tools.escape import sanitise

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc would cost the tool's start-up
    from collections.abc import Iterator, Sequence

#: The room a line keeps for its value: len(' = "..."').
TAG_LEN = 8
#: STRING_MAX (XENSTORE_ABS_PATH_MAX + 1024): longer child paths are cut and not read.
STRING_MAX = 3072 + 1024


def _cut(text: bytes, precision: int) -> bytes:
    """printf's ``%.*s``: a negative precision means no limit."""
    return text if precision < 0 else text[:precision]


def _children(job: common.Job, path: bytes, depth: int) -> Iterator[bytes]:
    try:
        names = job.conn.xs_directory(path)
    except Failure as exc:
        if depth and exc.errno == errno.ENOENT:
            return iter(())  # removed while we walked: move on
        job.msg.err(b"xs_directory (" + path + b")", exc.errno)
    return iter(names)


def _line(job: common.Job, name: bytes, newpath: bytes, too_long: bool, depth: int) -> bytes:
    """The line for one node, reading its value (and perms with -p)."""
    max_width = job.max_width
    line = bytearray()
    linewid = 0
    if job.show_whole_path:
        line += newpath  # not counted in linewid, as in C
    else:
        line += b" " * depth
        shown = _cut(name, max_width - TAG_LEN - depth)
        line += shown
        linewid = depth + len(shown)
    value: bytes | None = None
    if not too_long:
        try:
            value = job.conn.xs_read(newpath)
        except Failure:
            value = None
    if value is None:
        line += b":\n"  # and the line still gets its own newline below
    else:
        text = sanitise(value)
        # C compares as size_t: a negative width (terminal of 0 or 1 column)
        # is huge, so nothing is cut. The raw length decides, not the escaped.
        if 0 <= max_width < linewid + len(value) + TAG_LEN:
            line += b' = "' + _cut(text, max_width - TAG_LEN - linewid) + b'\\..."'
        else:
            line += b' = "' + text + b'"'
            linewid += len(text) + 5
            if job.prefix:
                line += b" "
                linewid += 1
                stop = min(job.desired_width, max_width)
                while linewid < stop:
                    line += b"." if linewid & 1 else b" "
                    linewid += 1
    if job.prefix:
        try:
            perms = job.conn.xs_get_permissions(newpath)
        except Failure as exc:
            job.stdout.write(line)
            line.clear()
            job.msg.warn(b"\ncould not access permissions for " + name, exc.errno)
        else:
            line += b"  (" + b",".join(perms) + b")"
    line += b"\n"
    return bytes(line)


def _walk(job: common.Job, root: bytes) -> None:
    """do_ls, iteratively: a tree may be deeper than Python's recursion limit."""
    stack = [(root, _children(job, root, 0))]
    stdout = job.stdout
    while stack:
        path, children = stack[-1]
        name = next(children, None)
        if name is None:
            stack.pop()
            continue
        depth = len(stack) - 1
        full = path + (b"" if path.endswith(b"/") else b"/") + name
        # snprintf into STRING_MAX bytes: a longer path is cut, and not read.
        newpath = full[: STRING_MAX - 1]
        stdout.write(_line(job, name, newpath, len(full) >= STRING_MAX, depth))
        stack.append((newpath, _children(job, newpath, depth + 1)))


def perform(job: common.Job, tx: int) -> int:
    for root in job.operands or [b"/"]:
        _walk(job, root)
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore-ls``; ``argv`` excludes the program name."""
    return common.main("ls", argv, prog, perform)


if __name__ == "__main__":
    raise SystemExit(main())
