"""Node permissions: parsing, formatting and access decisions.

A node's permissions are a list of entries ``<letter><domid>``: the first names
the owner and what every domain not listed gets; later entries override that
default for one domain each. Letters: ``n`` none, ``r`` read, ``w`` write,
``b`` both.

Permission lists are immutable tuples and interned (:func:`intern`), so the
thousands of nodes that share ``n0`` or ``n5 r0`` share one object.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from xenstore.errors import EINVAL

NONE, READ, WRITE, BOTH = 0, 1, 2, 3
#: Access bit meaning "may change perms": owners and privileged callers.
OWNER = 4
FULL = READ | WRITE | OWNER

#: Domids at or above DOMID_FIRST_RESERVED are not real domains.
DOMID_FIRST_RESERVED = 0x7FF0

_LETTERS = {"n": NONE, "r": READ, "w": WRITE, "b": BOTH}
_LETTER_OF = {bits: letter for letter, bits in _LETTERS.items()}


class Perm(NamedTuple):
    """One entry: a domid (unsigned 32 bits, as the C daemon stores it) and its access."""

    domid: int
    access: int

    def __str__(self) -> str:
        # cxenstored prints the id with "%i": ids above 2**31 show as negative.
        domid = self.domid - (1 << 32) if self.domid >= 1 << 31 else self.domid
        return f"{_LETTER_OF[self.access]}{domid}"


Perms = tuple[Perm, ...]

_interned: dict[Perms, Perms] = {}
#: How many distinct permission lists are kept for sharing. Sharing only saves memory
#: (nodes hold their own reference), so past this the table starts afresh: a guest
#: setting ever new lists (within its quotas) must not grow the daemon for ever.
INTERN_MAX = 4096


def intern(perms: Perms) -> Perms:
    """The shared instance equal to ``perms`` (while the table holds it)."""
    shared = _interned.get(perms)
    if shared is not None:
        return shared
    if len(_interned) >= INTERN_MAX:
        _interned.clear()
    _interned[perms] = perms
    return perms


def owner_only(domid: int) -> Perms:
    """``n<domid>``: the owner may do everything, nobody else anything."""
    return intern((Perm(domid, NONE),))


# strtol(s, &end, 0) as xs_strings_to_perms uses it: leading white space, a
# sign, then a hexadecimal, octal or decimal number, and nothing after it.
_STRTOL = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")
_LONG_MAX = (1 << 63) - 1


def _parse_domid(text: str) -> int:
    match = _STRTOL.match(text)
    if match is None:
        raise EINVAL(f"bad domid in permission: {text!r}")
    sign, digits = match.groups()
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    # strtol saturates at LONG_MAX; the C daemon then keeps the low 32 bits.
    value = min(value, _LONG_MAX + (1 if sign == "-" else 0))
    return (-value if sign == "-" else value) & 0xFFFFFFFF


def parse(entry: str) -> Perm:
    """One ``<letter><domid>`` entry; EINVAL when malformed."""
    access = _LETTERS.get(entry[:1])
    if access is None:
        raise EINVAL(f"bad permission letter: {entry!r}")
    return Perm(_parse_domid(entry[1:]), access)


def parse_list(entries: list[str]) -> Perms:
    return intern(tuple(parse(entry) for entry in entries))


def format_list(perms: Perms) -> list[str]:
    return [str(perm) for perm in perms]


def access_for(perms: Perms, domid: int, target: int | None = None) -> int:
    """What an unprivileged ``domid`` may do to a node with ``perms``.

    The owner (or a domain whose SET_TARGET target is the owner) gets
    everything; otherwise the first entry after the owner's that names the
    domain (or its target) decides; otherwise the owner's entry is the default.
    """
    owner = perms[0]
    if owner.domid == domid or (target is not None and owner.domid == target):
        return FULL
    # One walk, as cxenstored's perm_for_conn: the first entry naming either decides
    # (``n0 r9 w5`` gives domain 5 with target 9 read, not write).
    for perm in perms[1:]:
        if perm.domid == domid or (target is not None and perm.domid == target):
            return perm.access
    return owner.access
