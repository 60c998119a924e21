"""The recorded cxenstored watch scenario, replayed against the pure core."""

from __future__ import annotations

from tests import scenarios


def test_core_fires_watches_as_cxenstored() -> None:
    steps = scenarios.load("watch_scenario.txt")
    assert len(steps) > 60
    assert scenarios.run(steps, scenarios.core_runner()) == []
