"""Introduced domains, their quotas and what each one uses.

Without a hypervisor a domain is what dom0 says it is: INTRODUCE creates it,
RELEASE (or a simulated death) ends it. Each domain has the global quotas
unless SET_QUOTA gave it its own. Node counts are kept by the store per owner;
this module keeps the rest of a domain's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xenstore.errors import EINVAL
from xenstore.perms import DOMID_FIRST_RESERVED

#: Feature bits this daemon supports (xenstore-ring.txt): none, as it has no rings.
SUPPORTED_FEATURES = 0


@dataclass(slots=True, eq=False)
class Domain:
    """One introduced domain."""

    domid: int
    gfn: int
    evtchn: int
    #: Its own quotas (from SET_QUOTA); the rest are the global ones.
    quotas: dict[str, int] = field(default_factory=dict)
    #: Set by SET_TARGET: it acts with this domain's rights.
    target: int | None = None
    #: A @releaseDomain was fired for its shutdown; RESUME re-arms it.
    shutdown: bool = False
    features: int = 0


def parse_domid(text: bytes, allow_zero: bool = False) -> int:
    """A domid argument, strictly: decimal, below DOMID_FIRST_RESERVED (0 if allowed).

    Stricter than cxenstored 4.17, whose atoi() reads ``abc`` as domain 0.
    """
    if not text.isdigit() or len(text) > 5:
        raise EINVAL(f"not a domid: {text!r}")
    domid = int(text)
    if domid >= DOMID_FIRST_RESERVED or (domid == 0 and not allow_zero):
        raise EINVAL(f"not a guest domid: {domid}")
    return domid


def parse_number(text: bytes) -> int:
    if not text.isdigit() or len(text) > 18:
        raise EINVAL(f"not a number: {text!r}")
    return int(text)
