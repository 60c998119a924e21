"""``xenstore-conformance SOCKET`` as the README shows it: without a way to be a guest,
the category that acts as guests is skipped and says so; a correct daemon passes."""

from __future__ import annotations

import pytest

from tests.conftest import OurDaemon
from xenstore.conformance import cli

SKIPPED = ("guests         skipped: its steps act as guests; give --guest-dir DIR (the "
           "target's pyxenstored --domain-dir DIR)")


def test_without_a_guest_directory_the_guest_steps_are_skipped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = OurDaemon()
    try:
        status = cli.main([daemon.socket_path])
    finally:
        daemon.stop()
    lines = capsys.readouterr().out.splitlines()
    assert status == 0, lines
    assert SKIPPED in lines
    assert not [line for line in lines if "failures" in line]
    assert len(lines) == len(cli.scenario.categories())


def test_with_guest_sockets_they_run(capsys: pytest.CaptureFixture[str]) -> None:
    daemon = OurDaemon("--domain-dir", None)
    try:
        status = cli.main([daemon.socket_path, "--category", "guests",
                           "--guest-dir", daemon.directory])
        assert status == 0
        assert capsys.readouterr().out.startswith("guests           68/69")
        # Compared with a live reference, the reference must be able to play guests too.
        status = cli.main([daemon.socket_path, "--category", "guests", "--guest-dir",
                           daemon.directory, "--ref", daemon.socket_path])
    finally:
        daemon.stop()
    assert status == 0
    assert capsys.readouterr().out == (
        "guests         skipped: its steps act as guests; give --ref-guest-dir DIR for the "
        "reference\n")
