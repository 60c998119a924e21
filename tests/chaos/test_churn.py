"""Domain churn over real sockets: the daemon survives it and leaks nothing.

A toolstack introduces, releases, re-introduces, resumes and targets domains
(one at a time and pipelined) while guests use their sockets and a dom0 watcher
listens for the special events (:mod:`tests.chaos.churn`). Afterwards the daemon
answers, CONTROL check passes, and what it holds is back to what it held before:
open descriptors, guest socket files, its trio tasks, domains, connections,
watches, transactions, nodes.

Seeded and reproducible. CI runs the default seeds; to run more or replay one:

    XS_CHAOS_SEEDS=1-20 .venv/bin/python -m pytest tests/chaos
    XS_CHAOS_SEEDS=17 XS_CHAOS_STEPS=5000 .venv/bin/python -m pytest tests/chaos
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.chaos.churn import Churn
from tests.conftest import OurDaemon
from xenstore.client import Client
from xenstore.protocol.codec import join
from xenstore.protocol.ops import Op

#: Each run ends after this many steps or this many seconds, whichever comes first.
STEPS = int(os.environ.get("XS_CHAOS_STEPS", "800"))
SECONDS = float(os.environ.get("XS_CHAOS_SECONDS", "25"))


def seeds() -> list[int]:
    text = os.environ.get("XS_CHAOS_SEEDS", "1,2,3")
    chosen: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        chosen.extend(range(int(first), int(last or first) + 1))
    return chosen



def holdings(daemon: OurDaemon) -> dict[str, int | set[str]]:
    """What the daemon holds, seen from outside, through one fresh dom0 connection."""
    report = os.path.join(daemon.directory, "memreport")
    with Client(daemon.socket_path, timeout=10) as dom0:
        assert dom0.request(Op.CONTROL, b"check\0") == b"OK\0"
        dom0.request(Op.CONTROL, join("memreport", report))
        held: dict[str, int | set[str]] = {"open descriptors": len(os.listdir(
            f"/proc/{daemon.pid}/fd"))}
    with open(report) as lines:
        for line in lines:
            name, _, value = line.partition(":")
            held[name] = int(value)
    os.unlink(report)
    held["guest socket files"] = {n for n in os.listdir(daemon.directory) if n.isdigit()}
    return held


def settled(daemon: OurDaemon, before: dict[str, int | set[str]]) -> dict[str, int | set[str]]:
    """What the daemon holds, once it is back to ``before`` (or after a deadline)."""
    deadline = time.monotonic() + 10
    while True:
        after = holdings(daemon)
        if after == before or time.monotonic() > deadline:
            return after
        time.sleep(0.05)


@pytest.mark.parametrize("seed", seeds())
def test_domain_churn(daemon: OurDaemon, seed: int) -> None:
    churn_and_check(daemon, seed)


def test_domain_churn_waiting_through_trio_only() -> None:
    """The same with ``--portable-loop``: the hot loop never blocks in its own epoll,
    the path taken where trio's run loop cannot be seen."""
    started = OurDaemon("--domain-dir", None, "--portable-loop")
    try:
        churn_and_check(started, seeds()[0])
    finally:
        started.stop()


def churn_and_check(daemon: OurDaemon, seed: int) -> None:
    with Client(daemon.socket_path, timeout=10) as dom0:
        dom0.mkdir("/local/domain")
    before = holdings(daemon)
    churn = Churn(daemon.socket_path, daemon.directory, random.Random(seed))
    try:
        deadline = time.monotonic() + SECONDS
        for _ in range(STEPS):
            churn.step()
            if time.monotonic() > deadline:
                break
        churn.finish()
    except AssertionError as exc:
        raise AssertionError(f"chaos seed {seed} (replay: XS_CHAOS_SEEDS={seed}): {exc}\n"
                             f"daemon log:\n{daemon.stderr()[-4000:]}") from exc
    assert daemon.process.poll() is None, f"seed {seed}: the daemon died:\n{daemon.stderr()}"
    after = settled(daemon, before)
    assert after == before, f"seed {seed}: leaked\nbefore {before}\nafter  {after}"
    assert "Traceback" not in daemon.stderr(), daemon.stderr()
    print(f"seed {seed}: {sum(churn.counts.values())} actions, {len(churn.releases)} "
          f"releases: {churn.counts}")
