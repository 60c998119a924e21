"""Shared pieces of the xenbus tests: a guest laid out as libxl does, and waiting for states."""

from __future__ import annotations

import os
import subprocess

import pytest
import trio

from xenstore.aclient import AsyncClient
from xenstore.protocol.codec import join
from xenstore.protocol.ops import Op
from xenstore.xenbus import DeviceAddress, XenbusState
from xenstore.xenbus.observe import observe

S = XenbusState
GUEST = 3
DEADLINE = 20
C_WATCH = "/usr/bin/xenstore-watch"


async def lay_out(dom0: AsyncClient, address: DeviceAddress) -> None:
    """The nodes and permissions libxl writes for a device (both ends Initialising)."""
    d, b = address.frontend_id, address.backend_id
    async with dom0.transaction() as t:
        await t.write(address.frontend / "backend", address.backend)
        await t.write(address.frontend / "backend-id", str(b))
        await t.write(address.frontend / "state", "1")
        await t.set_perms(address.frontend, [f"n{d}", f"r{b}"])
        for name in ("backend", "backend-id", "state"):
            await t.set_perms(address.frontend / name, [f"n{d}", f"r{b}"])
        await t.write(address.backend / "frontend", address.frontend)
        await t.write(address.backend / "frontend-id", str(d))
        await t.write(address.backend / "online", "1")
        await t.write(address.backend / "state", "1")
        await t.set_perms(address.backend, [f"n{b}", f"r{d}"])
        for name in ("frontend", "frontend-id", "online", "state"):
            await t.set_perms(address.backend / name, [f"n{b}", f"r{d}"])


async def introduce(dom0: AsyncClient, domid: int) -> None:
    home = f"/local/domain/{domid}"
    await dom0.write(home, "")
    await dom0.set_perms(home, [f"n{domid}", "r0"])
    await dom0.request(Op.INTRODUCE, join(str(domid), "4096", "1"))


async def wait_states(xs: AsyncClient, address: DeviceAddress, backend: S, frontend: S) -> None:
    """Wait (watching, never polling) until the two ends are in these states."""
    paths = [address.backend / "state", address.frontend / "state"]
    with trio.fail_after(DEADLINE):
        async with observe(xs, paths) as observer:
            while True:
                snap = await observer.next()
                if (S.parse(snap[paths[0]]), S.parse(snap[paths[1]])) == (backend, frontend):
                    return


def c_watch(socket_path: str, path: str) -> subprocess.Popen[bytes] | None:
    """Debian's C ``xenstore-watch`` on ``path`` (None, or a failure when required, if absent)."""
    if not os.path.exists(C_WATCH):
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"{C_WATCH} is required (Debian's xenstore-utils)")
        return None
    return subprocess.Popen([C_WATCH, path], env={**os.environ, "XENSTORED_PATH": socket_path},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
