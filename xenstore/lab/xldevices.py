"""``pyxl block-*`` and ``network-*``: hot-plugging disks and NICs, as xl_block.c and xl_nic.c.

The host parses the specifications (xl-disk-configuration(5), xl-network-
configuration(5)) and plays libxl's part in the store; these commands name the
domain as xl does, pass the words on, and print the lists in xl's columns.
Note two quirks kept from xl: block-attach and block-list say "invalid domain
identifier" without libxl's rc, and block-list goes on to the next domain
where network-list stops.
"""

from __future__ import annotations

from typing import Any

from xenstore.lab import xlformat
from xenstore.lab.rpc import HostError
from xenstore.lab.xlsession import FAILURE, Invocation, err, out


def _domid_or_none(inv: Invocation, qualifier: str) -> int | None:
    domid = inv.qualifier_to_domid(qualifier)
    if domid is None:
        err(f"{qualifier} is an invalid domain identifier")
    return domid


def _call(inv: Invocation, cmd: str, domid: int, **args: Any) -> Any:
    try:
        return inv.call(cmd, domain=str(domid), **args)
    except HostError as exc:
        raise inv.fail(exc) from None


def cmd_block_attach(inv: Invocation) -> int:
    domid = _domid_or_none(inv, inv.args[0])
    if domid is None:
        return FAILURE
    # xl reads the words after the domain as parts of one specification.
    _call(inv, "block_attach", domid, spec=",".join(inv.args[1:]))
    return 0


def cmd_block_detach(inv: Invocation) -> int:
    domid = inv.find_domain(inv.args[0])
    args: dict[str, Any] = {"device": inv.args[1]}
    if inv.has("-f", "--force"):
        args["force"] = True
    _call(inv, "block_detach", domid, **args)
    return 0


def cmd_block_list(inv: Invocation) -> int:
    out(xlformat.block_header())
    for qualifier in inv.args:
        domid = _domid_or_none(inv, qualifier)
        if domid is None:
            continue
        try:
            rows = inv.call("block_list", domain=str(domid))
        except HostError as exc:
            err(str(exc))
            continue
        for row in rows:
            out(xlformat.block_row(domid, row))
    return 0


def cmd_network_attach(inv: Invocation) -> int:
    domid = inv.find_domain(inv.args[0])
    # The words as xl gets them (each KEY=VALUE is parsed on its own, so a value may
    # not hold a comma); the host reads them as one vif entry.
    _call(inv, "network_attach", domid, spec=inv.args[1:])
    return 0


def cmd_network_detach(inv: Invocation) -> int:
    domid = inv.find_domain(inv.args[0])
    _call(inv, "network_detach", domid, device=inv.args[1])
    return 0


def cmd_network_list(inv: Invocation) -> int:
    out(xlformat.network_header())
    for qualifier in inv.args:
        domid = inv.find_domain(qualifier)
        try:
            rows = inv.call("network_list", domain=str(domid))
        except HostError as exc:
            err(str(exc))
            continue
        for row in rows:
            out(xlformat.network_row(row))
    return 0
