"""Path grammar, limits and canonical form, as Xen's C xenstored 4.17 applies them.

A *path* names a node: ``/`` or ``/`` followed by components of
``[A-Za-z0-9_@-]`` separated by single slashes. A path that does not start with
``/`` or ``@`` is relative to the caller's home, ``/local/domain/<domid>``.
A path that starts with ``@`` names a special watch (``@introduceDomain``,
``@releaseDomain``); only WATCH, UNWATCH and SET_PERMS accept those.

The length limit (the ``path-max`` quota, 2048 by default) counts the bytes
after ``/local/domain/<domid>/`` for paths below a domain's home, and the whole
path otherwise, so a guest's relative paths are not penalised for the prefix.
"""

from __future__ import annotations

import re

from xenstore.errors import EINVAL
from xenstore.protocol.ops import REL_PATH_MAX

ROOT = "/"
INTRODUCE_DOMAIN = "@introduceDomain"
RELEASE_DOMAIN = "@releaseDomain"
SPECIAL_PATHS = (INTRODUCE_DOMAIN, RELEASE_DOMAIN)

_VALID = re.compile(r"/(?:[A-Za-z0-9_@\-]+(?:/[A-Za-z0-9_@\-]+)*)?\Z")
_VALID_SPECIAL = re.compile(r"@[A-Za-z0-9_@\-/]*\Z")
# cxenstored reads the domid with sscanf("%5u/"): at most five characters
# (a sign counts) followed by a slash; only then is the prefix discounted.
_DOMAIN_HOME = re.compile(r"/local/domain/(-?[0-9]+)/")


def home(domid: int) -> str:
    """``/local/domain/<domid>``: where a domain's relative paths resolve."""
    return f"/local/domain/{domid}"


def counted_length(path: str) -> int:
    """The length that the path-max quota limits (see the module docstring)."""
    match = _DOMAIN_HOME.match(path)
    if match and len(match.group(1)) <= 5:
        return len(path) - match.end()
    return len(path)


#: Absolute paths already found valid, so that the paths clients use again and again
#: skip the pattern (a third of a READ's path handling). Bounded: started afresh when full.
_valid_seen: dict[str, None] = {}
_VALID_SEEN_MAX = 4096


def canonical(path: str, domid: int, path_max: int = REL_PATH_MAX) -> str:
    """The absolute form of a node path; EINVAL when it breaks the path rules.

    Special ``@`` names are rejected here: only the ops that take them call
    :func:`canonical_watch` or :func:`is_special`.
    """
    if not path.startswith("/"):
        if path.startswith("@") or not path:
            raise EINVAL(f"not a node path: {path!r}")
        path = f"{home(domid)}/{path}"
    if path not in _valid_seen:
        if _VALID.match(path) is None:
            raise EINVAL(f"invalid path: {path!r}")
        if len(_valid_seen) >= _VALID_SEEN_MAX:
            _valid_seen.clear()
        _valid_seen[path] = None
    # The counted length is never more than the length: most paths need no counting.
    if path_max and len(path) > path_max and counted_length(path) > path_max:
        raise EINVAL(f"path longer than {path_max}: {path[:40]!r}...")
    return path


def canonical_watch(path: str, domid: int, path_max: int = REL_PATH_MAX) -> str:
    """Like :func:`canonical` but also accepts a special ``@`` watch path."""
    if path.startswith("@"):
        if _VALID_SPECIAL.match(path) is None:
            raise EINVAL(f"invalid special path: {path!r}")
        return path
    return canonical(path, domid, path_max)


def is_special(path: str) -> bool:
    return path.startswith("@")


def parent(path: str) -> str:
    """The parent of an absolute, canonical, non-root path."""
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else ROOT


def basename(path: str) -> str:
    return path[path.rfind("/") + 1 :]
