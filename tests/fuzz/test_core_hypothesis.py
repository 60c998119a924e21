"""The hypothesis harness: the fuzz driver's scripts, with choices drawn by hypothesis.

The same hostile scripts as the atheris harness (``fuzz/core_atheris.py``, see
:mod:`fuzz.driver`): four connections (two dom0, two guests) sending raw bytes
and hostile requests, disconnecting and reconnecting, with the whole server's
invariants checked after every disconnect and at the end. Hypothesis shrinks a
failure to a short script and keeps it in its example database.

``XS_FUZZ_EXAMPLES`` sets the number of scripts (CI: the default, under a
minute on a slow machine); fuzz/README.md says how to run it for longer.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import driver

EXAMPLES = int(os.environ.get("XS_FUZZ_EXAMPLES", "400"))


class Drawn:
    """The driver's choices, drawn from hypothesis (so failures shrink)."""

    def __init__(self, data: st.DataObject) -> None:
        self.draw = data.draw
        self.steps = data.draw(st.integers(1, driver.MAX_STEPS), label="steps")

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def data(self, most: int) -> bytes:
        return self.draw(st.binary(max_size=most))

    def more(self) -> bool:
        self.steps -= 1
        return self.steps >= 0


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_hostile_scripts_keep_the_server_sound(data: st.DataObject) -> None:
    drawn = Drawn(data)
    steps = drawn.steps
    ran = driver.run(drawn)  # raises driver.Finding on anything wrong
    assert ran.steps == steps  # the whole script ran
