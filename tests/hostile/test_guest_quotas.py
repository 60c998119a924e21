"""A guest that goes up to every quota and beyond.

Each quota is filled, then hammered with a pipelined burst of requests beyond
it: every one is refused with the quota's errno and the domain is named in the
log, while dom0 and another guest are answered as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.domains.test_guest_sockets import Host
from tests.hostile.harness import (
    LIVENESS,
    RawClient,
    guest_host,
    guest_socket,
    owned_nodes,
    probe,
    wait_for_log,
)
from xenstore import errors
from xenstore.client import Client
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import Op

BEYOND = 500


@dataclass
class Guests:
    host: Host
    guest: Client
    #: Another domain, which must not suffer from the first one's excess.
    neighbour: Client
    path: str


@pytest.fixture
def guests() -> Iterator[Guests]:
    with guest_host("--write-rate", "0") as host:
        path = guest_socket(host, 5)
        with Client(path, timeout=10) as guest, Client(guest_socket(host, 6), timeout=10) as n:
            yield Guests(host, guest, n, path)


def refused_burst(g: Guests, requests: list[tuple[Op, bytes]], errno: str,
                  tx_id: int = 0, burst: RawClient | None = None) -> None:
    """Send ``requests`` pipelined from a fresh connection of the guest (or ``burst``):
    each is refused with ``errno``, and others are answered meanwhile."""
    burst = burst or RawClient(g.path)
    burst.sock.sendall(b"".join(encode(Packet(op, i, tx_id, payload))
                                for i, (op, payload) in enumerate(requests)))
    assert probe(g.host.daemon.socket_path) < LIVENESS
    replies = [p for p in burst.packets(len(requests)) if p.op != Op.WATCH_EVENT]
    assert [(p.op, p.req_id, p.payload) for p in replies] == [
        (Op.ERROR, i, errno.encode() + b"\0") for i in range(len(requests))
    ]
    burst.close()
    g.neighbour.write("still", "served")
    assert g.neighbour.read("still") == b"served"


def test_nodes(guests: Guests) -> None:
    g = guests
    attempts = 0
    with pytest.raises(errors.ENOSPC):
        while True:  # 10 directories of 100: no node's size quota is in the way
            g.guest.write(f"d{attempts // 100}/n{attempts % 100}", "")
            attempts += 1
    assert owned_nodes(g.host.dom0, 5) in (999, 1000)  # a last directory and leaf need two
    wait_for_log(g.host.daemon, r"domain 5: nodes quota hit at /local/domain/5/d\d+/n\d+")
    refused_burst(g, [(Op.WRITE, join(f"more{i}") + b"x") for i in range(BEYOND)], "ENOSPC")
    refused_burst(g, [(Op.MKDIR, join(f"d0/deeper{i}")) for i in range(BEYOND)], "ENOSPC")
    g.guest.rm("d0/n0")  # giving one back makes room for one
    g.guest.write("again", "")
    with pytest.raises(errors.ENOSPC):
        g.guest.write("and-again", "")
    assert owned_nodes(g.host.dom0, 5) <= 1000


def test_watches(guests: Guests) -> None:
    g = guests
    for i in range(128):
        g.guest.watch(f"w{i}", "t")
    with pytest.raises(errors.ENOSPC):
        g.guest.watch("one-more", "t")
    wait_for_log(g.host.daemon, r"domain 5: watches quota hit")
    refused_burst(g, [(Op.WATCH, join(f"x{i}", "t" * 1000)) for i in range(BEYOND)], "ENOSPC")
    g.neighbour.watch("mine", "t")  # another domain's quota is its own


def test_transactions(guests: Guests) -> None:
    g = guests
    opened = [g.guest.transaction_start() for _ in range(10)]
    with pytest.raises(errors.ENOSPC):
        g.guest.transaction_start()
    wait_for_log(g.host.daemon, r"domain 5: transactions quota hit")
    # The quota is the domain's: another connection of the same guest is refused too.
    refused_burst(g, [(Op.TRANSACTION_START, b"\0")] * BEYOND, "ENOSPC")
    g.guest.transaction_end(opened[0], commit=False)
    g.guest.transaction_end(g.guest.transaction_start(), commit=False)
    assert g.neighbour.transaction_start()


def test_node_size_and_permissions(guests: Guests) -> None:
    g = guests
    with pytest.raises(errors.ENOSPC):
        g.guest.write("big", "v" * 2048)
    wait_for_log(g.host.daemon, r"domain 5: node-size quota hit at /local/domain/5/big")
    with pytest.raises(errors.ENOSPC):
        g.guest.set_perms(".", ["n5", "r1", "r2", "r3", "r4", "r6"])
    wait_for_log(g.host.daemon, r"domain 5: permissions quota hit")
    refused_burst(g, [(Op.WRITE, join(f"big{i}") + b"v" * 3000) for i in range(BEYOND)],
                  "ENOSPC")
    g.guest.write("fits", "v" * 1000)


def test_memory(guests: Guests) -> None:
    g = guests
    g.host.dom0.request(Op.SET_QUOTA, join("5", "memory", "65536"))
    written = 0
    with pytest.raises(errors.ENOMEM):
        while True:
            g.guest.write(f"m{written}", "v" * 1500)
            written += 1
            assert written < 100, "the memory quota was never hit"
    assert 30 <= written <= 44  # ~1.5 KB each against 64 KiB
    wait_for_log(g.host.daemon, r"domain 5: memory quota hit \(\d+ bytes\)")
    refused_burst(g, [(Op.WRITE, join(f"m-more{i}") + b"v" * 1500) for i in range(BEYOND)],
                  "ENOMEM")
    refused_burst(g, [(Op.WATCH, join(f"w{i}", "t" * 2000)) for i in range(BEYOND)], "ENOMEM")
    g.neighbour.write("m0", "v" * 1500)


def test_transaction_nodes(guests: Guests) -> None:
    g = guests
    g.host.dom0.request(Op.SET_QUOTA, join("5", "transaction-nodes", "8"))
    guest = RawClient(g.path)
    guest.send(Op.TRANSACTION_START, "")
    tx = int(guest.packets(1)[0].payload.rstrip(b"\0"))
    for i in range(8):
        guest.send(Op.WRITE, f"t{i}", tx_id=tx, req_id=i)
    replies = [p.op for p in guest.packets(8)]
    fitted = replies.count(Op.WRITE)
    assert replies == [Op.WRITE] * fitted + [Op.ERROR] * (8 - fitted) and fitted >= 3
    wait_for_log(g.host.daemon, r"domain 5: transaction-nodes quota hit")
    refused_burst(g, [(Op.WRITE, join(f"late{i}")) for i in range(BEYOND)], "ENOSPC", tx,
                  guest)
    assert not g.host.dom0.exists("/local/domain/5/t0")  # never committed


def test_nodes_created_in_transactions_count_against_the_quota(guests: Guests) -> None:
    """Parallel transactions each within the quota cannot add up past it: the
    later commits are refused with ENOSPC, and logged."""
    g = guests
    g.host.dom0.request(Op.SET_QUOTA, join("5", "nodes", "10"))
    transactions = [g.guest.transaction_start() for _ in range(3)]
    for k, tx in enumerate(transactions):
        for i in range(9):
            try:
                g.guest.write(f"tx{k}-{i}", "", tx)
            except errors.ENOSPC:
                break
    refused = 0
    for tx in transactions:
        try:
            g.guest.transaction_end(tx)
        except errors.ENOSPC:
            refused += 1
    assert refused == 2
    assert owned_nodes(g.host.dom0, 5) <= 10
    assert "domain 5: nodes quota hit committing transaction" in g.host.daemon.stderr()
