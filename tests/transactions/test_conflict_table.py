"""The conflict table: our verdicts, and cxenstored's re-checked on the live reference."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import OurDaemon, reference_daemon
from tests.transactions.conflicts import CASES, Case, verdict


@pytest.fixture(scope="module")
def ours() -> Iterator[str]:
    daemon = OurDaemon()
    yield daemon.socket_path
    daemon.stop()


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    yield from (ref.socket_path for ref in reference_daemon("c"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_our_verdict(ours: str, case: Case) -> None:
    assert verdict(ours, case) == case.ours


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cxenstored_verdict_as_recorded(reference: str, case: Case) -> None:
    assert verdict(reference, case) == case.cxenstored


def test_we_refuse_no_more_than_cxenstored() -> None:
    for case in CASES:
        assert not (case.ours == "EAGAIN" and case.cxenstored == "commit"), case.name
