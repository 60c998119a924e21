"""The conformance corpus against the pure core, our daemon, and the references."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.conformance.core_runner import core_runner
from tests.conftest import OurDaemon, reference_daemon
from xenstore.conformance import scenario
from xenstore.conformance.cli import Score, clean, guest_connector, run_category
from xenstore.conformance.runners import Stream, socket_runner, unix_connector

CATEGORIES = scenario.categories()


@dataclass
class Target:
    socket_path: str
    guests: Callable[[int], Stream] | None


@pytest.fixture(scope="module")
def ours() -> Iterator[Target]:
    daemon = OurDaemon("--domain-dir", None)  # guests on the daemon's directory
    yield Target(daemon.socket_path, guest_connector(daemon.directory))
    daemon.stop()


@pytest.fixture(scope="module")
def cxenstored() -> Iterator[Target]:
    for ref in reference_daemon("c"):
        yield Target(ref.socket_path, guest_connector(None, ref.state_dir))


def score_socket(category: str, target: Target, ref: Target | None = None) -> Score:
    connect = unix_connector(target.socket_path)
    clean(connect)
    reference = None
    if ref is not None:
        ref_connect = unix_connector(ref.socket_path)
        clean(ref_connect)
        reference = socket_runner(ref_connect, ref.guests)
    return run_category(category, socket_runner(connect, target.guests), reference)


def test_the_corpus_is_substantial() -> None:
    assert {"basics", "guests", "watches", "malformed"} <= set(CATEGORIES)
    assert sum(len(scenario.load(c)) for c in CATEGORIES) > 400


@pytest.mark.parametrize("category", CATEGORIES)
def test_core_passes_except_documented_differences(category: str) -> None:
    score = run_category(category, core_runner(), None)
    assert score.failures == []
    assert score.passed + len(score.documented) == score.total


@pytest.mark.parametrize("category", CATEGORIES)
def test_our_daemon_passes_except_documented_differences(category: str, ours: Target) -> None:
    score = score_socket(category, ours)
    assert score.failures == []


@pytest.mark.parametrize("category", CATEGORIES)
def test_the_goldens_are_what_cxenstored_answers(category: str, cxenstored: Target) -> None:
    score = score_socket(category, cxenstored)
    assert score.failures == [] and score.documented == []


@pytest.mark.parametrize("category", CATEGORIES)
def test_live_comparison_with_cxenstored(
    category: str, ours: Target, cxenstored: Target
) -> None:
    score = score_socket(category, ours, ref=cxenstored)
    assert score.failures == []


def test_the_command_line(ours: Target) -> None:
    done = subprocess.run([sys.executable, "-m", "xenstore.conformance", ours.socket_path,
                           "--guest-dir", os.path.dirname(ours.socket_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for category in CATEGORIES:
        assert category in done.stdout
    assert "documented differences" in done.stdout
    broken = subprocess.run([sys.executable, "-m", "xenstore.conformance", "/nonexistent/s"],
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert "could not reset the target" in broken.stdout


def test_the_whole_corpus_twice_on_one_daemon() -> None:
    """Every category, end to end and then again, on one daemon with guests on its
    domain sockets: no scenario is lost to a dead or wedged daemon, the second pass
    scores as the first (nothing a category leaves behind changes the next), and
    both score as the pure core does."""
    daemon = OurDaemon("--domain-dir", None)
    try:
        target = Target(daemon.socket_path, guest_connector(daemon.directory))
        expected = {c: run_category(c, core_runner(), None) for c in CATEGORIES}
        for _ in range(2):
            for category in CATEGORIES:
                score = score_socket(category, target)
                assert score.failures == [], (category, score.failures[:3])
                assert score.total == expected[category].total
                assert len(score.documented) == len(expected[category].documented)
                assert daemon.process.poll() is None, daemon.stderr()
        assert "Traceback" not in daemon.stderr()
    finally:
        daemon.stop()
