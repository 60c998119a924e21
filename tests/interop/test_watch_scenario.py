"""The recorded watch scenario over real sockets: our daemon and the reference."""

from __future__ import annotations

from tests import scenarios


def test_watch_scenario(any_daemon: str) -> None:
    steps = scenarios.load("watch_scenario.txt")
    assert scenarios.run(steps, scenarios.socket_runner(any_daemon)) == []
