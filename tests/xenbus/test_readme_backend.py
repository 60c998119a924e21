"""The README's "Writing a backend" example, run as a user would run it.

The ```python block under that heading is written to a file and run as its own
process with ``XENSTORED_PATH`` pointing at our daemon; the test plays the
toolstack and the guest's frontend, while Debian's C ``xenstore-watch`` watches
the backend's directory and must print its state changes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import trio

from tests.conftest import OurDaemon
from tests.xenbus.helpers import DEADLINE, GUEST, S, c_watch, introduce, lay_out, wait_states
from xenstore.aclient import open_client
from xenstore.xenbus import DeviceAddress, Frontend, FrontendDriver, vdev_to_devid
from xenstore.xenbus.device import Value

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_backend() -> str:
    text = README.read_text()
    section = text[text.index("### Writing a backend"):]
    match = re.search(r"```python\n(.*?)```\n", section, re.S)
    assert match is not None, "no python block under 'Writing a backend'"
    code = match.group(1)
    assert len(code.splitlines()) < 60, "the README promises a backend in under 60 lines"
    return code


class DiskFront(FrontendDriver):
    backend_features = ("feature-flush-cache",)
    connect_details = ("sectors", "sector-size")

    async def ring_details(self, features: Mapping[str, bytes]) -> Mapping[str, Value]:
        assert features == {"feature-flush-cache": b"1"}
        return {"ring-ref": 8, "event-channel": 11, "protocol": "x86_64-abi"}

    async def connected(self, details: Mapping[str, bytes]) -> None:
        self.sectors = int(details["sectors"])


def run_script(script: Path, socket_path: str) -> subprocess.Popen[bytes]:
    """``python script`` as a user runs it, pointed at the daemon by XENSTORED_PATH."""
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env={**os.environ, "XENSTORED_PATH": socket_path})


async def test_the_readme_backend_serves_a_guest(daemon: OurDaemon, tmp_path: Path) -> None:
    script = tmp_path / "ramdisk.py"
    script.write_text(readme_backend())
    disk = DeviceAddress("vbd", GUEST, vdev_to_devid("xvda"), 0)
    async with open_client(daemon.socket_path) as dom0:
        await introduce(dom0, GUEST)
        await lay_out(dom0, disk)
        await dom0.write(disk.backend / "size", str(1 << 20))
        watcher = c_watch(daemon.socket_path, disk.backend)
        backend = run_script(script, daemon.socket_path)
        try:
            guest_socket = os.path.join(daemon.directory, str(GUEST))
            with trio.fail_after(DEADLINE):
                async with open_client(guest_socket) as guest, trio.open_nursery() as nursery:
                    frontend = Frontend(guest, disk, DiskFront)
                    nursery.start_soon(frontend.run)
                    await frontend.connected.wait()
                    assert isinstance(frontend.driver, DiskFront)
                    assert frontend.driver.sectors == 2048
                    assert await dom0.read(disk.backend / "hotplug-status") == b"connected"
                    frontend.close()
                    await frontend.closed.wait()
                    await wait_states(dom0, disk, S.Closed, S.Closed)
                    nursery.cancel_scope.cancel()
        finally:
            backend.terminate()
            out, err = backend.communicate(timeout=10)
            if watcher is not None:
                watcher.terminate()
                watched, _ = watcher.communicate(timeout=10)
    assert f"{disk}: ring (8,), event channel (11,)".encode() in out, err
    assert f"{disk}: disconnected".encode() in out, err
    if watcher is not None:
        lines = watched.decode().split()
        assert lines[0] == disk.backend  # the first event: the watched path itself
        assert lines.count(disk.backend / "state") >= 4  # InitWait, Connected, Closing, Closed
        assert disk.backend / "hotplug-status" in lines


async def test_a_missing_size_fails_hotplug_as_the_readme_says(
    daemon: OurDaemon, tmp_path: Path,
) -> None:
    script = tmp_path / "ramdisk.py"
    script.write_text(readme_backend())
    disk = DeviceAddress("vbd", GUEST, vdev_to_devid("xvdb"), 0)
    async with open_client(daemon.socket_path) as dom0:
        await introduce(dom0, GUEST)
        await lay_out(dom0, disk)
        backend = run_script(script, daemon.socket_path)
        try:
            with trio.fail_after(DEADLINE):
                await wait_states(dom0, disk, S.Closing, S.Initialising)
            assert await dom0.read(disk.backend / "hotplug-status") == b"error"
            assert await dom0.read(disk.backend / "hotplug-error") == (
                b"the toolstack gave no size for the RAM disk")
        finally:
            backend.terminate()
            backend.communicate(timeout=10)
