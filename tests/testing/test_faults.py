"""xenstore.testing's faults: what a driver's author arms to test retry and error paths."""

from __future__ import annotations

import time

import pytest

from xenstore import errors, testing
from xenstore.client import Client, ClientTransaction
from xenstore.testing import TestDaemon

MODES = [pytest.param(False, id="subprocess"), pytest.param(True, id="in-process")]
DELAY = 0.3


@pytest.mark.parametrize("in_process", MODES)
def test_a_retry_loop_survives_three_injected_eagains(in_process: bool) -> None:
    with testing.xenstored(in_process=in_process) as daemon, daemon.client(timeout=30) as xs:
        xs.write("/counter", "0")
        daemon.faults.eagain(3)
        assert daemon.faults.armed() == ["eagain 3"]
        attempts: list[bytes] = []
        slept: list[float] = []

        def bump(t: ClientTransaction) -> int:
            seen = t.read("/counter")
            attempts.append(seen)
            t.write("/counter", str(int(seen) + 1))
            return len(attempts)

        assert xs.retry(bump, sleep=slept.append) == 4
        assert attempts == [b"0"] * 4  # each refused attempt was rolled back
        assert len(slept) == 3
        assert xs.read("/counter") == b"1"
        assert daemon.faults.armed() == []
        # Run out: the next commit goes through at once.
        assert xs.retry(bump, sleep=slept.append) == 5
        assert len(slept) == 3


def test_retry_gives_up_when_the_faults_outlast_its_attempts(xs: Client,
                                                              xenstored: TestDaemon) -> None:
    xenstored.faults.eagain(5)
    with pytest.raises(errors.EAGAIN):
        xs.retry(lambda t: t.write("/x", "1"), attempts=3, sleep=lambda _: None)
    assert xenstored.faults.armed() == ["eagain 2"]
    assert not xs.exists("/x")


def test_write_errno_by_name_or_class_and_disarmed(xs: Client, xenstored: TestDaemon) -> None:
    backend = "/local/domain/0/backend"
    xenstored.faults.write_errno(backend, "EACCES")
    with pytest.raises(errors.EACCES):
        xs.write(f"{backend}/vif/1/0/state", "2")
    xs.write("/local/domain/0/backends", "not under it")
    xenstored.faults.write_errno(backend, errors.ENOSPC)
    with pytest.raises(errors.ENOSPC):
        xs.mkdir(backend)
    xenstored.faults.write_errno(backend, None)
    xs.write(f"{backend}/vif/1/0/state", "2")


@pytest.mark.xenstored(in_process=True)
def test_watch_events_come_late_and_in_order(xs: Client, xenstored: TestDaemon) -> None:
    """(That replies overtake held events is shown on the wire: tests/daemon/test_event_delay.)"""
    xenstored.faults.event_delay(DELAY)
    assert xenstored.faults.armed() == [f"event-delay {DELAY:g}"]
    watched = time.monotonic()
    xs.watch("/w", "t")
    with xenstored.client(timeout=30) as writer:
        for i in range(3):
            writer.write(f"/w/{i}", "x")
    assert xs.read("/w/2") == b"x"
    assert xs.read_watch() == ("/w", "t")
    assert time.monotonic() - watched >= DELAY
    assert [xs.read_watch() for _ in range(3)] == [(f"/w/{i}", "t") for i in range(3)]
    xenstored.faults.clear()
    assert xenstored.faults.armed() == []


@pytest.mark.xenstored(faults=False)
def test_a_daemon_without_faults_refuses_them(xs: Client, xenstored: TestDaemon) -> None:
    for arm in (lambda: xenstored.faults.eagain(1), xenstored.faults.clear,
                xenstored.faults.armed):
        with pytest.raises(RuntimeError, match="faults=True"):
            arm()
    with pytest.raises(errors.EACCES):
        xs.control("fault", "eagain", "1")
    xs.retry(lambda t: t.write("/x", "1"), attempts=1)
