"""The course's whole session, as students run it: real processes only.

Two hosts (each a pyxenstored and a `pyxl host` subprocess), the `pyxl` command
line for every step, and Debian's C tools observing the store: `xenstore-watch`
running on the first host's /local/domain throughout, `xenstore-read`,
`xenstore-ls` and `xenstore-exists` after each step. The course's PV config
(raw disk, cdrom image, vif on Br0) goes through create, the device handshakes,
pause/unpause, mem-set, vcpu-set, block-attach/-detach, network-attach,
save/restore, migrate to the second host and shutdown -w there; the HVM config
through create and destroy.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import OurDaemon
from tests.lab.test_cli import DEADLINE, HostProcess, c_tool, pyxl
from xenstore.lab.labmain import prepare


class Host:
    def __init__(self, name: str) -> None:
        self.daemon = OurDaemon("--domain-dir", None)
        self.process = HostProcess(self.daemon, "--name", name)
        self.socket = self.daemon.socket_path
        self.examples = prepare(self.daemon.directory)

    def stop(self) -> None:
        self.process.stop()
        self.daemon.stop()

    def c(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([c_tool(f"xenstore-{tool}"), *args], capture_output=True,
                              text=True, timeout=DEADLINE,
                              env={**os.environ, "XENSTORED_PATH": self.socket})

    def read(self, path: str) -> str:
        done = self.c("read", path)
        return done.stdout.strip() if done.returncode == 0 else f"<{done.stderr.strip()}>"

    def exists(self, path: str) -> bool:
        return self.c("exists", path).returncode == 0

    def until(self, path: str, value: str) -> None:
        """Until the C tool reads ``value`` at ``path`` (the simulated kernel is another
        task: its answers come a moment later)."""
        deadline = time.monotonic() + DEADLINE
        while (got := self.read(path)) != value:
            assert time.monotonic() < deadline, f"{path}: {got!r}, never {value!r}"
            time.sleep(0.05)

    def gone(self, path: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while self.exists(path):
            assert time.monotonic() < deadline, f"{path} is still there"
            time.sleep(0.05)

    def ok(self, *args: str) -> str:
        result = pyxl(self.socket, *args)
        assert result.code == 0, (args, result)
        return result.out


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    monkeypatch.setenv("PYXL_HOSTS", str(tmp_path / "hosts"))
    started: list[Host] = []
    try:
        for name in ("lab", "lab2"):
            started.append(Host(name))
            started[-1].process.wait_ready()
        yield started[0], started[1]
    finally:
        for host in started:
            host.stop()


def test_the_course_session(hosts: tuple[Host, Host]) -> None:
    lab, lab2 = hosts
    watch = subprocess.Popen([c_tool("xenstore-watch"), "/local/domain"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "XENSTORED_PATH": lab.socket})
    try:
        session(lab, lab2)
    finally:
        watch.terminate()
        watched = watch.communicate(timeout=DEADLINE)[0].split()
    # The C watcher saw the story: the guest's home built, each device's ends
    # Connected, the shutdown request for the suspend of save, and the home removed.
    assert "/local/domain/1" in watched and "/local/domain/1/control/shutdown" in watched
    assert "/local/domain/1/device/vbd/51712/state" in watched
    assert "/local/domain/0/backend/vbd/1/51712/state" in watched
    assert "/local/domain/1/attr/vif/0/ipv4/0" in watched


def session(lab: Host, lab2: Host) -> None:
    pv = os.path.join(lab.examples, "debian-pv.cfg")
    assert pyxl(lab.socket, "create", pv).code == 0
    # Every device of the course's PV guest reaches Connected on both ends.
    for devid in (51712, 51744):  # xvda, xvdc (the cdrom)
        lab.until(f"/local/domain/0/backend/vbd/1/{devid}/state", "4")
        lab.until(f"/local/domain/1/device/vbd/{devid}/state", "4")
    lab.until("/local/domain/0/backend/vif/1/0/state", "4")
    lab.until("/local/domain/1/device/vif/0/state", "4")
    assert lab.read("/local/domain/0/backend/vif/1/0/bridge") == "Br0"
    assert lab.read("/local/domain/1/device/vbd/51744/device-type") == "cdrom"
    assert lab.read("/local/domain/1/name") == "debian-pv"
    assert "debian-pv" in lab.ok("list")

    lab.ok("pause", "debian-pv")
    assert "--p---" in lab.ok("list", "debian-pv")
    lab.ok("unpause", "debian-pv")
    assert "-b----" in lab.ok("list", "debian-pv")

    lab.ok("mem-set", "debian-pv", "512")
    assert lab.read("/local/domain/1/memory/target") == "524288"
    lab.ok("vcpu-set", "debian-pv", "1")
    assert lab.read("/local/domain/1/cpu/1/availability") == "offline"

    iso = os.path.join(os.path.dirname(lab.examples), "images", "debian.iso")
    lab.ok("block-attach", "debian-pv", f"{iso},raw,xvdb,r")
    lab.until("/local/domain/1/device/vbd/51728/state", "4")
    assert (lab.read("/local/domain/0/backend/vbd/1/51728/mode"),
            lab.read("/local/domain/0/backend/vbd/1/51728/info")) == ("r", "4")
    lab.ok("block-detach", "debian-pv", "xvdb")
    assert not lab.exists("/local/domain/1/device/vbd/51728")
    assert not lab.exists("/local/domain/0/backend/vbd/1/51728")
    lab.ok("network-attach", "debian-pv", "bridge=Br0")
    lab.until("/local/domain/1/device/vif/1/state", "4")

    saved = os.path.join(os.path.dirname(lab.examples), "debian.save")
    lab.ok("save", "debian-pv", saved)
    assert not lab.exists("/local/domain/1")
    lab.ok("restore", saved)  # a new domid, the same name, devices connect again
    lab.until("/local/domain/2/device/vbd/51712/state", "4")
    assert lab.read("/local/domain/2/name") == "debian-pv"

    migrated = pyxl(lab.socket, "migrate", "debian-pv", "lab2")
    assert migrated.code == 0 and "Migration successful." in migrated.err, migrated
    assert not lab.exists("/local/domain/2")
    lab2.until("/local/domain/1/name", "debian-pv")
    lab2.until("/local/domain/1/device/vbd/51712/state", "4")
    stopped = pyxl(lab2.socket, "shutdown", "-w", "debian-pv")
    assert "Domain 1 has been shut down, reason code 0" in stopped.err, stopped
    lab2.gone("/local/domain/1")  # on_poweroff=destroy follows the shutdown
    assert "debian-pv" not in lab2.ok("list")

    hvm = os.path.join(lab.examples, "win-hvm.cfg")
    assert pyxl(lab.socket, "create", hvm).code == 0
    lab.until("/local/domain/3/device/vbd/768/state", "4")  # hda, through qdisk
    lab.until("/local/domain/0/backend/qdisk/3/5632/state", "4")  # hdc, the cdrom
    assert lab.read("/local/domain/3/platform/acpi") == "1"
    lab.ok("destroy", "win-hvm")
    assert not lab.exists("/local/domain/3")
    assert lab.ok("list").count("\n") == 2  # the header and Domain-0
