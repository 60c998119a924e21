"""CONTROL commands both daemons know answer with the same bytes."""

from __future__ import annotations

import pytest

from tests.conftest import OurDaemon, reference_daemon
from xenstore import errors
from xenstore.client import Client

SAME = [
    ("check",),
    ("quota",),
    ("quota-soft",),
    ("quota", "set", "nodes", "5"),
    ("quota",),
    ("quota-soft", "set", "memory", "1000"),
    ("quota-soft",),
    ("print", "hello"),
    ("log", "off"),
    ("bogus",),
    ("check", "now"),
    ("quota", "set", "bogus", "1"),
    ("quota", "1"),
    ("log",),
]


def answers(socket_path: str) -> list[bytes | str]:
    out: list[bytes | str] = []
    with Client(socket_path, timeout=10) as xs:
        for command in SAME:
            try:
                out.append(xs.control(*command))
            except errors.XenStoreError as exc:
                out.append(exc.name)
    return out


def test_control_answers_match_cxenstored() -> None:
    reference = None
    for ref in reference_daemon("c"):
        reference = answers(ref.socket_path)
    if reference is None:
        pytest.skip("no reference daemon")
    ours = OurDaemon()
    try:
        assert answers(ours.socket_path) == reference
    finally:
        ours.stop()
    assert "control: hello" in ours.stderr_text  # print goes to the daemon's log
