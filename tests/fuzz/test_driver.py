"""The fuzz driver notices the bugs it is there to find (planted here one at a time)."""

from __future__ import annotations

import random

import pytest

from fuzz import driver
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Effect


class Seeded:
    """Choices from a seeded generator: the same scripts on every run."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.steps = driver.MAX_STEPS

    def integer(self, low: int, high: int) -> int:
        return self.random.randint(low, high)

    def data(self, most: int) -> bytes:
        return self.random.randbytes(self.random.randint(0, most))

    def more(self) -> bool:
        self.steps -= 1
        return self.steps >= 0


def first_finding(scripts: int = 300) -> str | None:
    for seed in range(scripts):
        try:
            driver.run(Seeded(seed))
        except driver.Finding as finding:
            return str(finding)
    return None


def test_the_core_as_it_is_passes() -> None:
    assert first_finding(100) is None


def test_an_internal_error_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> bytes:
        raise ValueError("planted")

    original = Server.__init__

    def init(self: Server, *args: object) -> None:
        original(self)
        self._dispatch[2] = broken  # READ

    monkeypatch.setattr(Server, "__init__", init)
    assert "internal error" in (first_finding() or "")


def test_watches_left_after_a_disconnect_are_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    # The planted bug: a disconnect that leaves the connection's watches registered.
    # Replaced on the class, which the driver (Python) calls through even when the
    # core is compiled.
    original = Server.disconnect

    def disconnect(self: Server, conn_id: int) -> list[Effect]:
        mine = list(self.watches.by_conn.get(conn_id, {}).values())
        effects = original(self, conn_id)
        for watch in mine:
            self.watches.add(conn_id, watch.wpath, watch.token, watch.depth,
                             watch.relative_to)
        return effects

    monkeypatch.setattr(Server, "disconnect", disconnect)
    found = first_finding()
    assert found is not None and "closed" in found and "watches" in found


def test_transactions_left_after_a_disconnect_are_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The planted bug: a disconnect that forgets the connection's transactions without
    # ending them, so their snapshots stay open for ever.
    original = Server.disconnect

    def disconnect(self: Server, conn_id: int) -> list[Effect]:
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.transactions.clear()
        return original(self, conn_id)

    monkeypatch.setattr(Server, "disconnect", disconnect)
    found = first_finding()
    assert found is not None and "open snapshots" in found


def test_a_framer_that_raises_anything_else_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def feed(self: object, data: bytes) -> list[object]:
        raise IndexError("planted")

    monkeypatch.setattr(driver.Framer, "feed", feed)
    assert "the framer raised" in (first_finding() or "")
