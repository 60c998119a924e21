"""CONTROL snapshot FILE, ``pyxenstored --restore FILE`` and ``testing.start(restore=)``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xenstore import testing
from xenstore.client import Client


def walk(client: Client, path: str = "/") -> list[tuple[str, bytes, list[str]]]:
    found = [(path, client.read(path), client.get_perms(path))]
    for name in client.directory(path):
        found += walk(client, f"{path.rstrip('/')}/{name}")
    return found


def fill(client: Client) -> None:
    client.write("/data/binary", b"\x00\xff\x01")
    client.write("/data/empty", b"")
    client.introduce_domain(4, 100, 9)
    client.write("/local/domain/4/x", b"four")
    client.set_perms("/local/domain/4/x", ["b4", "r0"])
    client.set_perms("@releaseDomain", ["n0", "r4"])
    client.watch("/data", "tok")


@pytest.mark.parametrize("in_process", [False, True])
def test_a_snapshot_restores_tree_perms_and_domains(tmp_path: Path, in_process: bool) -> None:
    snap = str(tmp_path / "snap")
    with testing.xenstored(guests=True) as daemon, daemon.client() as client:
        fill(client)
        assert client.control("snapshot", snap) == b"OK\0"
        before = walk(client)
    with testing.xenstored(guests=True, restore=snap, in_process=in_process) as daemon:
        with daemon.client() as client:
            assert walk(client) == before
            assert client.is_domain_introduced(4)
            assert client.control("check") == b"OK\0"
        assert os.path.exists(daemon.guest_socket(4))


def test_a_bad_snapshot_is_refused_with_record_and_offset(tmp_path: Path) -> None:
    good = tmp_path / "good"
    with testing.xenstored() as daemon, daemon.client() as client:
        client.control("snapshot", str(good))
    data = bytearray(good.read_bytes())
    bad = tmp_path / "bad"
    bad.write_bytes(data[:-9])
    done = subprocess.run(
        [sys.executable, "-m", "xenstore.daemon", "--socket", str(tmp_path / "s"),
         "--restore", str(bad)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 4
    assert "cannot restore" in done.stderr and "at byte" in done.stderr
    assert "record" in done.stderr and "Traceback" not in done.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "xenstore.daemon", "--socket", str(tmp_path / "s"),
         "--restore", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 4 and "cannot read the snapshot" in missing.stderr
