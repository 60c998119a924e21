"""The pieces records are made of, read strictly and written back byte for byte:
NUL-terminated strings, perm entries and lists of names; and perms as ours. Shared by :mod:`.stream`
(Xen's records) and :mod:`.ours` (our own)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from xenstore import perms as _perms
from xenstore.migration.records import PERM_IGNORE, PERM_LETTERS, NodePerm
from xenstore.perms import Perm

_LETTER = {_perms.NONE: "n", _perms.READ: "r", _perms.WRITE: "w", _perms.BOTH: "b"}
_ACCESS = {letter: bits for bits, letter in _LETTER.items()}

PERM = struct.Struct("<BBH")


class Body(Exception):
    """A problem inside one record's body, at an offset within it."""

    def __init__(self, problem: str, at: int = 0) -> None:
        super().__init__(problem)
        self.problem = problem
        self.at = at


def string(body: bytes, at: int, length: int, what: str) -> bytes:
    """A NUL-terminated string of ``length`` bytes (NUL included) at ``at``."""
    if length == 0:
        raise Body(f"the {what} has length 0 (its NUL counts)", at)
    raw = body[at:at + length]
    if len(raw) < length:
        raise Body(f"the {what} runs past the record's end", at)
    if raw.find(0) != length - 1:
        raise Body(f"the {what} must end with its only NUL byte", at)
    return raw[:-1]


def c_string(raw: bytes) -> bytes:
    if 0 in raw:
        raise ValueError(f"a NUL inside {raw!r}")
    return raw + b"\0"


def raw_bytes(body: bytes, at: int, length: int, what: str) -> bytes:
    """``length`` bytes at ``at``, all inside the record."""
    raw = body[at:at + length]
    if len(raw) < length:
        raise Body(f"{what} of {length} bytes runs past the record's end", at)
    return raw


def perms(body: bytes, at: int, count: int) -> tuple[tuple[NodePerm, ...], int]:
    """``count`` perm entries at ``at``, and where they end."""
    found = []
    for _ in range(count):
        if at + PERM.size > len(body):
            raise Body(f"{count} perms run past the record's end", at)
        access, flags, domid = PERM.unpack_from(body, at)
        if access not in PERM_LETTERS:
            raise Body(f"perm access {access:#x} is none of n, r, w, b", at)
        if flags & ~PERM_IGNORE:
            raise Body(f"perm flags {flags:#x} are not known", at + 1)
        found.append(NodePerm(chr(access), domid, bool(flags & PERM_IGNORE)))
        at += PERM.size
    return tuple(found), at


def perm_letter(access: str) -> int:
    if len(access) != 1 or access.encode() not in PERM_LETTERS:
        raise ValueError(f"perm access {access!r} is none of n, r, w, b")
    return ord(access)


def encode_perms(entries: Sequence[NodePerm]) -> bytes:
    return b"".join(PERM.pack(perm_letter(p.access), PERM_IGNORE if p.ignore else 0, p.domid)
                    for p in entries)


def names(body: bytes, at: int, length: int, what: str) -> tuple[bytes, ...]:
    """A list of names, each ending with its NUL, in ``length`` bytes at ``at``."""
    raw = raw_bytes(body, at, length, what)
    if not raw:
        return ()
    if raw[-1]:
        raise Body(f"{what} must end with a NUL byte", at + length - 1)
    return tuple(raw[:-1].split(b"\0"))


def encode_names(entries: Sequence[bytes]) -> bytes:
    return b"".join(c_string(name) for name in entries)


def stream_perms(entries: _perms.Perms) -> tuple[NodePerm, ...]:
    """Our perms in the stream's encoding (domids are 16 bits there, as in cxenstored)."""
    return tuple(NodePerm(_LETTER[p.access], p.domid & 0xFFFF) for p in entries)


def our_perms(entries: Sequence[NodePerm]) -> _perms.Perms:
    """The stream's perms as ours; entries marked stale are left out (they grant nothing)."""
    kept = [entries[0], *(p for p in entries[1:] if not p.ignore)]
    return _perms.intern(tuple(Perm(p.domid, _ACCESS[p.access]) for p in kept))
