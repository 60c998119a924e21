"""The host's side of ``pyxl``'s commands: what each request does, and the data it answers.

Each handler takes the request's arguments and returns a JSON-able result, or
raises :class:`~xenstore.lab.xen.LabError` with the message xl would print. The
command line (:mod:`.cli`) formats results as xl does. The server part accepts
connections on the host's socket and publishes it at ``/tool/pyxl/host``.

Writes the toolstack makes here are libxl's: ``control/shutdown`` for shutdown
and reboot, ``memory/target`` and ``memory/static-max`` for mem-set and mem-max,
``cpu/<n>/availability`` for vcpu-set; the guest's kernel does the rest.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from xenstore import errors
from xenstore.aclient import AsyncTransaction
from xenstore.lab.consoled import ConsoleLog
from xenstore.lab.devices import DeviceCommands
from xenstore.lab.host import Guest, Host
from xenstore.lab.rpc import HOST_NODE, MAX_LINE, HostClient, encode
from xenstore.lab.saved import config_record, read_save_file, write_save_file
from xenstore.lab.xen import Domain, LabError
from xenstore.xenbus.paths import domain_home
from xenstore.xenbus.toolstack import ToolstackError

log = logging.getLogger("xenstore.lab")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def domain_row(domain: Domain, now: float) -> dict[str, Any]:
    return {
        "name": domain.name, "domid": domain.domid, "uuid": domain.uuid, "type": domain.type,
        "memory_kib": domain.memory_kib, "maxmem_kib": domain.maxmem_kib,
        "memory": domain.memory_kib,  # as the page reads it (KiB)
        "vcpus": domain.vcpus, "max_vcpus": domain.max_vcpus, "flags": domain.flags(),
        "state": domain.state.value, "cpu_time": round(domain.cpu_time(now), 1),
        "created": domain.created,
        "shutdown_reason": domain.shutdown_reason.value if domain.shutdown_reason else None,
    }


class Commands:
    """The requests ``pyxl`` sends, handled against ``host``."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.handlers: dict[str, Handler] = {
            "list": self.list, "destroy": self.destroy, "shutdown": self.shutdown,
            "wait_gone": self.wait_gone, "pause": self.pause, "unpause": self.unpause,
            "mem_set": self.mem_set, "mem_max": self.mem_max, "vcpu_set": self.vcpu_set,
            "info": self.info, "domid": self.domid, "domname": self.domname,
            "save": self.save, "restore": self.restore, "migrate": self.migrate,
            "migrate_receive": self.migrate_receive, "rename": self.rename,
            "console": self.console,
        }
        devices = DeviceCommands(host)
        self.handlers.update({
            "create": devices.create, "block_attach": devices.block_attach,
            "block_detach": devices.block_detach, "block_list": devices.block_list,
            "network_attach": devices.network_attach,
            "network_detach": devices.network_detach, "network_list": devices.network_list,
        })

    def _guest(self, args: dict[str, Any]) -> Guest:
        return self.host.guest(str(args["domain"]))

    async def list(self, args: dict[str, Any]) -> Any:
        now = self.host.xen.clock()
        wanted = args.get("domains") or []
        domains = sorted(self.host.xen.domains.values(), key=lambda d: d.domid)
        if wanted:
            domains = [self.host.xen.find(str(name)) for name in wanted]
        rows = []
        for domain in domains:
            row = domain_row(domain, now)
            guest = self.host.guests.get(domain.domid)
            if guest is not None:  # for list -l and top
                row["config"] = config_record(guest.config)
                row["vbds"], row["nets"] = len(guest.config.disks), len(guest.config.nics)
            rows.append(row)
        return rows

    async def destroy(self, args: dict[str, Any]) -> Any:
        guest = self._guest(args)
        await self.host.destroy(guest.domain.domid)
        return {"domid": guest.domain.domid}

    async def shutdown(self, args: dict[str, Any]) -> Any:
        """Ask guests to power off (or reboot): libxl writes control/shutdown, after
        checking the guest advertised it can (control/feature-<reason>)."""
        reason = str(args.get("reason", "poweroff"))
        guests = [g for g in self.host.guests.values()] if args.get("all") else [self._guest(args)]
        asked = []
        acpi = False
        for guest in guests:
            home = domain_home(guest.domain.domid)
            feature = "reboot" if reason == "reboot" else "poweroff"
            try:
                advertised = await self.host.xs.read(home / "control" / f"feature-{feature}")
            except errors.ENOENT:
                advertised = b""
            if advertised == b"1":
                await self.host.xs.write(home / "control" / "shutdown", reason)
            elif args.get("fallback") and guest.spec.type == "hvm":
                self.host.acpi(guest, reason)  # libxl: an ACPI power or reset event
                acpi = True
            else:
                raise LabError("PV control interface not available: external graceful "
                               f"{'reboot' if reason == 'reboot' else 'shutdown'} not "
                               "possible.\nUse \"-F\" to fallback to ACPI "
                               f"{'reset' if reason == 'reboot' else 'power'} event.")
            asked.append(guest.domain.domid)
        return {"domids": asked, "acpi": acpi}

    async def wait_gone(self, args: dict[str, Any]) -> Any:
        """Until each of the domains is destroyed (xl shutdown -w); or shut down, with
        ``down``."""
        guests = [g for g in (self.host.guests.get(int(d)) for d in args["domids"]) if g]
        with trio.fail_after(float(args.get("timeout", 60))):
            for guest in guests:
                if args.get("down"):
                    await _first(guest.down, guest.gone)  # destroyed counts as down
                else:
                    await guest.gone.wait()
        return {}

    async def pause(self, args: dict[str, Any]) -> Any:
        self.host.pause(self._guest(args))
        return {}

    async def unpause(self, args: dict[str, Any]) -> Any:
        self.host.unpause(self._guest(args))
        return {}

    async def mem_set(self, args: dict[str, Any]) -> Any:
        domain = self.host.xen.find(str(args["domain"]))
        kib = int(args["kib"])
        if kib > domain.maxmem_kib:
            raise LabError(f"memory_dynamic_max must be less than or equal to "
                           f"memory_static_max ({kib} KiB > {domain.maxmem_kib} KiB)")
        await self.host.xs.write(domain_home(domain.domid) / "memory" / "target", str(kib))
        if domain.domid == 0:  # dom0 balloons at once: its kernel is the host's
            self.host.xen.set_memory(0, kib)
        return {}

    async def mem_max(self, args: dict[str, Any]) -> Any:
        domain = self.host.xen.find(str(args["domain"]))
        kib = int(args["kib"])
        if kib < domain.memory_kib:
            raise LabError(f"cannot set the maximum below the current memory "
                           f"({domain.memory_kib} KiB)")
        self.host.xen.set_maxmem(domain.domid, kib)
        await self.host.xs.write(domain_home(domain.domid) / "memory" / "static-max", str(kib))
        return {}

    async def vcpu_set(self, args: dict[str, Any]) -> Any:
        domain = self.host.xen.find(str(args["domain"]))
        count = int(args["vcpus"])
        if count > domain.max_vcpus:
            raise LabError(f"Requested vcpus ({count}) exceeds the domain's maximum "
                           f"(maxvcpus {domain.max_vcpus})")
        if count < 1:
            raise LabError("Invalid argument: a domain needs at least one vCPU")
        cpu = domain_home(domain.domid) / "cpu"

        async def work(t: AsyncTransaction) -> None:
            for n in range(domain.max_vcpus):
                await t.write(cpu / n / "availability", "online" if n < count else "offline")

        await self.host.xs.retry(work)
        if domain.domid == 0:
            self.host.xen.set_vcpus(0, count)
        return {}

    async def save(self, args: dict[str, Any]) -> Any:
        """xl save: suspend, write the record, destroy (or keep running with -c)."""
        guest = self._guest(args)
        record = await self.host.suspend(guest)
        await trio.to_thread.run_sync(write_save_file, str(args["file"]), record)
        await self.host.destroy(guest.domain.domid)
        if args.get("checkpoint") or args.get("leave_paused"):
            restored = await self.host.restore(record)
            if args.get("leave_paused"):
                self.host.pause(restored)
            return {"domid": restored.domain.domid}
        return {}

    async def restore(self, args: dict[str, Any]) -> Any:
        record = await trio.to_thread.run_sync(read_save_file, str(args["file"]))
        guest = await self.host.restore(record)
        return {"domid": guest.domain.domid, "name": guest.domain.name}

    async def migrate(self, args: dict[str, Any]) -> Any:
        """xl migrate to another simulated host: suspend here, start there as
        ``NAME--incoming``, rename here ``NAME--migratedaway`` and destroy, then the
        other host renames its copy. Returns the lines xl prints on the way."""
        guest = self._guest(args)
        name = guest.domain.name
        target = host_socket(str(args["host"]))
        lines = ["migration target: Ready to receive domain."]
        record = await self.host.suspend(guest)
        lines.append(f"Saving to migration stream new xl format (domain {name})")
        with HostClient(target) as other:
            received = await trio.to_thread.run_sync(
                functools.partial(other.call, "migrate_receive", record=record,
                                  name=f"{name}--incoming"))
            lines += ["migration target: Transfer complete, requesting permission to "
                      "start domain.",
                      "migration sender: Target has acknowledged transfer."]
            await self.host.rename(guest, f"{name}--migratedaway")
            await self.host.destroy(guest.domain.domid)
            lines.append("migration sender: Giving target permission to start.")
            await trio.to_thread.run_sync(functools.partial(
                other.call, "rename", domain=str(received["domid"]), name=name))
        lines += ["migration target: Got permission, starting domain.",
                  "migration target: Domain started successsfully.",
                  "migration sender: Target reports successful startup.",
                  "Migration successful."]
        return {"domid": received["domid"], "lines": lines}

    async def migrate_receive(self, args: dict[str, Any]) -> Any:
        guest = await self.host.restore(args["record"], name=str(args["name"]))
        return {"domid": guest.domain.domid}

    async def rename(self, args: dict[str, Any]) -> Any:
        await self.host.rename(self._guest(args), str(args["name"]))
        return {}

    async def console(self, args: dict[str, Any]) -> Any:
        guest = self._guest(args)
        if guest.console is None:
            raise LabError(f"domain {guest.domain.domid} has no console")
        return ConsoleStream(guest.console)

    async def info(self, args: dict[str, Any]) -> Any:
        return {**self.host.xen.info(), "host": self.host.options.name,
                "domains": len(self.host.xen.domains)}

    async def domid(self, args: dict[str, Any]) -> Any:
        return self.host.xen.find(str(args["name"])).domid

    async def domname(self, args: dict[str, Any]) -> Any:
        return self.host.xen.domain(int(args["domid"])).name


async def _first(*events: trio.Event) -> None:
    """Until any one of ``events`` is set."""
    async with trio.open_nursery() as nursery:
        for event in events:
            async def wait(event: trio.Event = event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()
            nursery.start_soon(wait)


class ConsoleStream:
    """A console to attach the connection to, once the answer is sent."""

    def __init__(self, console: ConsoleLog) -> None:
        self.console = console

    async def bridge(self, stream: trio.SocketStream, pending: bytes) -> None:
        output = self.console.attach()
        await stream.send_all(bytes(self.console.scrollback))
        if pending:
            self.console.type_in(pending)

        async def out() -> None:
            async for data in output:
                await stream.send_all(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(out)
            while True:
                data = await stream.receive_some(4096)
                if not data:
                    break
                self.console.type_in(data)
            nursery.cancel_scope.cancel()


def hosts_dir() -> str:
    """Where simulated hosts of this user register (for ``pyxl migrate NAME HOST``)."""
    return os.environ.get("PYXL_HOSTS") or f"/tmp/pyxl-hosts-{os.getuid()}"


def host_socket(name: str) -> str:
    path = os.path.join(hosts_dir(), name)
    if not os.path.lexists(path):
        raise LabError(f"no simulated host named {name!r} (known: "
                       f"{', '.join(sorted(os.listdir(hosts_dir()))) or 'none'})"
                       if os.path.isdir(hosts_dir()) else f"no simulated host named {name!r}")
    return os.readlink(path) if os.path.islink(path) else path


class Server:
    """Serves :class:`Commands` on a Unix socket and says where in the store."""

    def __init__(self, commands: Commands, path: str) -> None:
        self.commands = commands
        self.path = path

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await listener.bind(self.path)
        listener.listen(64)
        xs = self.commands.host.xs
        await xs.write(HOST_NODE, self.path)
        registered = self._register()
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await trio.serve_listeners(
                    self._connection, [trio.SocketListener(listener)],
                    handler_nursery=nursery)
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await xs.rm(HOST_NODE)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            if registered is not None:
                with contextlib.suppress(OSError):
                    os.unlink(registered)

    def _register(self) -> str | None:
        """Say in :func:`hosts_dir` that this host answers here (for migrate)."""
        directory = hosts_dir()
        link = os.path.join(directory, self.commands.host.options.name)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(self.path, link)
        except OSError as exc:
            log.warning("cannot register host %s in %s: %s", link, directory, exc)
            return None
        return link

    async def _connection(self, stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            while True:
                while b"\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data or len(buffer) > MAX_LINE:
                        return
                    buffer += data
                line, _, buffer = buffer.partition(b"\n")
                answer = await self._answer(line)
                if isinstance(answer, ConsoleStream):
                    await stream.send_all(encode({"ok": True, "result": {}}))
                    await answer.bridge(stream, buffer)
                    return
                await stream.send_all(encode(answer))

    async def _answer(self, line: bytes) -> dict[str, Any] | ConsoleStream:
        try:
            request = json.loads(line)
            handler = self.commands.handlers.get(str(request.get("cmd")))
            if handler is None:
                return {"ok": False, "error": f"unknown command {request.get('cmd')!r}"}
            result = await handler(request)
            if isinstance(result, ConsoleStream):
                return result
            return {"ok": True, "result": result}
        except (LabError, ToolstackError) as exc:
            return {"ok": False, "error": str(exc)}
        except (KeyError, ValueError, TypeError) as exc:
            return {"ok": False, "error": f"bad request: {exc!r}"}
        except trio.TooSlowError:
            return {"ok": False, "error": "timed out"}
        except Exception as exc:  # a host bug costs this request, not the host
            log.exception("request %r failed", line[:200])
            return {"ok": False, "error": f"internal error: {exc!r}"}

