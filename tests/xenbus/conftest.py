"""Fixtures of the xenbus tests: a daemon serving guests on domain sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import OurDaemon


@pytest.fixture
def daemon() -> Iterator[OurDaemon]:
    started = OurDaemon("--domain-dir", None)
    try:
        yield started
    finally:
        started.stop()
