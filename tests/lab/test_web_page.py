"""The host's live page in a real headless browser (Debian's chromium, over the
DevTools pipe): it loads, a guest created after it opened appears, its disk's
backend and frontend reach Connected on the page, and the guest's shutdown
empties it again. A screenshot is saved under the test's tmp_path."""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
import trio

from tests.conftest import OurDaemon, short_tempdir
from tests.lab.cdp import Page, open_browser
from xenstore.aclient import open_client
from xenstore.lab.web import serve_page
from xenstore.xenbus.backend import BackendBus, BackendDriver
from xenstore.xenbus.device import Value
from xenstore.xenbus.frontend import Frontend, FrontendDriver
from xenstore.xenbus.rings import Ring
from xenstore.xenbus.specs import DiskSpec, DomainSpec
from xenstore.xenbus.toolstack import Toolstack

GUEST = 3
DEVID = 51712  # xvda
DEADLINE = 120


@pytest.fixture
def chromium() -> str:
    """Debian's chromium; a skip saying why without it (a failure when CI requires it).

    A plain fixture, so that the skip is decided before trio runs the test."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "Debian's chromium is absent (apt install chromium): the page's browser test needs it"
    if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


class Disk(BackendDriver):
    """A backend with nothing behind it: the handshake is what the page shows."""

    async def hotplug(self) -> Mapping[str, Value]:
        return {"physical-device": "7:0"}

    def features(self) -> Mapping[str, Value]:
        return {"feature-flush-cache": 1}

    async def connect(self, ring: Ring) -> Mapping[str, Value]:
        return {"sectors": 2048, "sector-size": 512, "info": 0}


class DiskFront(FrontendDriver):
    backend_features = ("feature-flush-cache",)
    connect_details = ("sectors", "sector-size", "info")

    async def ring_details(self, features: Mapping[str, bytes]) -> Mapping[str, Value]:
        return {"ring-ref": 8, "event-channel": 11, "protocol": "x86_64-abi"}

    async def connected(self, details: Mapping[str, bytes]) -> None:
        pass


def js(value: object) -> str:
    return json.dumps(value)


def card(domid: int) -> str:
    return f"document.querySelector('.domain[data-domid=\"{domid}\"]')"


def node(path: str) -> str:
    return f"document.querySelector('li.node[data-path={js(path)}]')"


async def shows_state(page: Page, path: str, value: str) -> None:
    await page.wait_for(f"{node(path)}?.dataset.value === {js(value)}", f"{path} = {value}")


async def test_a_guest_made_after_the_page_opened_appears_and_connects(
        chromium: str, tmp_path: Path) -> None:
    monitor_dir = short_tempdir()
    monitor = os.path.join(monitor_dir, "monitor")
    daemon = OurDaemon("--domain-dir", None, "--monitor", monitor)
    image = tmp_path / "xvda.img"
    image.write_bytes(bytes(1 << 20))
    try:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery, open_client(daemon.socket_path) as dom0:
                url = await nursery.start(functools.partial(
                    serve_page, daemon.socket_path, monitor))
                toolstack = Toolstack(dom0)
                await toolstack.init_dom0()
                async with open_browser(chromium, tmp_path / "chromium") as browser:
                    page = await browser.open(url)
                    # It rendered: dom0's card, the tree, a live status.
                    await page.wait_for(f"{card(0)}?.textContent.includes('Domain-0')",
                                        "dom0's card")
                    await page.wait_for(f"{node('/local/domain/0/name')} !== null",
                                        "dom0's name in the tree")
                    await page.wait_for("document.getElementById('status')"
                                        ".classList.contains('live')", "the live status")
                    assert await page.evaluate(f"{card(GUEST)} === null")

                    # A guest, made after the page opened, with a disk.
                    await toolstack.create_domain(DomainSpec(GUEST, "guest3",
                                                             memory_kib=256 * 1024))
                    address = await toolstack.add_disk(GUEST, DiskSpec("xvda", str(image)))
                    await page.wait_for(f"{card(GUEST)}?.textContent.includes('guest3')",
                                        "the guest's card")
                    async with open_client(os.path.join(daemon.directory, str(GUEST))) as guest:
                        await nursery.start(BackendBus(dom0, 0, "vbd", Disk).run)
                        frontend = Frontend(guest, address, DiskFront)
                        nursery.start_soon(frontend.run)
                        await frontend.connected.wait()
                        device = (f"{card(GUEST)}?.querySelector("
                                  f"'li.device[data-type=\"vbd\"][data-devid=\"{DEVID}\"]')")
                        await page.wait_for(
                            f"{device}?.dataset.backendState === '4' && "
                            f"{device}?.dataset.frontendState === '4'",
                            "the disk Connected on the guest's card")
                        await shows_state(page, str(address.backend / "state"), "4")
                        await shows_state(page, str(address.frontend / "state"), "4")
                        chips = await page.evaluate(f"{device}.textContent")
                        assert "backend 4 Connected" in chips, chips
                        assert "frontend 4 Connected" in chips, chips
                        # The log says who wrote the guest's Connected and who was told.
                        # (a WRITE, or the commit of the transaction that wrote it).
                        told = await page.wait_for(
                            "[...document.querySelectorAll('#log .entry')]"
                            ".map(e => e.textContent).find(t => t.includes("
                            f"{js(str(address.frontend / 'state'))}) && t.includes('\"4\"')"
                            " && t.includes('told: dom0 conn'))",
                            "the guest's Connected in the log, and dom0 told")
                        assert f"domain {GUEST} (conn" in told, told
                        # A click on the guest's state shows its owner and permissions.
                        await page.evaluate(f"{node(str(address.frontend / 'state'))}"
                                            ".querySelector('.row').click()")
                        details = await page.wait_for(
                            "document.getElementById('details-body').textContent", "details")
                        assert f"owner: dom{GUEST}" in details, details
                        await trio.sleep(1.7)  # the flashes fade, for a calm picture
                        shot = await page.screenshot(tmp_path / "pyxl-page.png")
                        print(f"screenshot of the page: {shot}")
                        assert shot.stat().st_size > 10_000

                        # The shutdown: devices close, the domain goes, and so does its card.
                        await toolstack.destroy_domain(GUEST)
                    await page.wait_for(f"{card(GUEST)} === null", "the guest's card gone")
                    await page.wait_for(f"{node(f'/local/domain/{GUEST}')} === null",
                                        "the guest's home gone from the tree")
                    await page.wait_for(
                        "[...document.querySelectorAll('#log .entry.op-RELEASE')].length > 0",
                        "the RELEASE in the log")
                    await trio.sleep(1.7)  # the removed rows fade out, the log calms
                    after = await page.screenshot(tmp_path / "pyxl-page-after.png")
                    print(f"screenshot after the shutdown: {after}")
                nursery.cancel_scope.cancel()
    finally:
        daemon.stop()
        shutil.rmtree(monitor_dir, ignore_errors=True)
