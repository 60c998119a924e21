"""``pyxl``, xl's command line for the simulated host, run as students run it: the real
entry point in a subprocess, against our daemon and a host (``pyxl host`` in a subprocess,
or a host in this process with a guest already running, so that a test can wait on the
guest's own events). Output layouts, usage errors and exit codes are xl 4.17's; what the
commands wrote is read back with Debian's C tools where installed."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from tests.conftest import OurDaemon, short_tempdir
from tests.xenbus.helpers import wait_states
from xenstore.aclient import AsyncClient, open_client
from xenstore.client import Client
from xenstore.lab.commands import Commands, Server
from xenstore.lab.host import GuestConfig, Host, HostOptions
from xenstore.lab.rpc import HOST_NODE
from xenstore.xenbus import DeviceAddress, XenbusState, vdev_to_devid
from xenstore.xenbus.specs import DiskSpec, DomainSpec, NicSpec

DEADLINE = 30
BIN = Path(sys.executable).parent
PYXL = [str(BIN / "pyxl")] if (BIN / "pyxl").exists() else [
    sys.executable, "-m", "xenstore.lab.cli"]  # not reinstalled since the entry point came
LIST_HEADER = "Name                                        ID   Mem VCPUs\tState\tTime(s)"


@dataclass
class Result:
    code: int
    out: str
    err: str


def environment(socket_path: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "XENSTORED_PATH": socket_path, "PYXL_HOST_WAIT": "10", **extra}
    env.pop("POSIXLY_CORRECT", None)
    return env


def pyxl(socket_path: str, *args: str, stdin: bytes = b"", **env: str) -> Result:
    done = subprocess.run([*PYXL, *args], input=stdin, capture_output=True, check=False,
                          timeout=DEADLINE, env=environment(socket_path, **env))
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


async def apyxl(socket_path: str, *args: str, stdin: bytes = b"", **env: str) -> Result:
    """pyxl from a trio test, whose host runs in this very process."""
    with trio.fail_after(DEADLINE):
        done = await trio.run_process([*PYXL, *args], stdin=stdin, capture_stdout=True,
                                      capture_stderr=True, check=False,
                                      env=environment(socket_path, **env))
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def c_tool(name: str) -> str:
    path = f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"{path} is required (XS_REQUIRE_REFERENCE=1) but absent")
        pytest.skip(f"{path} is absent (Debian's xenstore-utils)")
    return path


async def c_read(socket_path: str, path: str) -> str:
    with trio.fail_after(DEADLINE):
        done = await trio.run_process([c_tool("xenstore-read"), path], capture_stdout=True,
                                      env={**os.environ, "XENSTORED_PATH": socket_path})
    return done.stdout.decode().strip()


# -- a host in a subprocess, as `pyxl host` runs --------------------------------------


class HostProcess:
    """``pyxl host --domain-dir DIR`` for ``daemon``; stopped by PID."""

    def __init__(self, daemon: OurDaemon, *flags: str) -> None:
        self.stderr_path = os.path.join(daemon.directory, "host.stderr")
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [*PYXL, "host", "--domain-dir", daemon.directory, "--socket",
                 daemon.socket_path, *flags],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while "serving" not in self.stderr():
            assert self.process.poll() is None, f"host died: {self.stderr()}"
            assert time.monotonic() < deadline, f"host did not come up: {self.stderr()}"
            time.sleep(0.05)

    def stderr(self) -> str:
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()



@pytest.fixture
def hosts_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A registry of simulated hosts of this test only (hosts register for migrate)."""
    directory = short_tempdir("xshosts")
    monkeypatch.setenv("PYXL_HOSTS", directory)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def running() -> Iterator[str]:
    """A daemon and a `pyxl host` (8 GiB, 2 CPUs) shared by the read-only tests."""
    registry = short_tempdir("xshosts")
    previous = os.environ.get("PYXL_HOSTS")
    os.environ["PYXL_HOSTS"] = registry
    started = OurDaemon("--domain-dir", None)
    host = HostProcess(started, "--memory", "8192", "--cpus", "2", "--name", "clihost")
    try:
        host.wait_ready()
        yield started.socket_path
    finally:
        host.stop()
        started.stop()
        if previous is None:
            os.environ.pop("PYXL_HOSTS", None)
        else:
            os.environ["PYXL_HOSTS"] = previous
        shutil.rmtree(registry, ignore_errors=True)


# -- help, usage and exit codes (no host needed) --------------------------------------


def test_help_lists_the_subcommands_as_xl_does(daemon: OurDaemon) -> None:
    result = pyxl(daemon.socket_path, "help")
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    assert lines[:4] == ["Usage pyxl [-vfNtT] <subcommand> [args]", "",
                         "pyxl full list of subcommands:", ""]
    names = [line[1:20].rstrip() for line in lines[4:]]
    assert names[:6] == ["create", "list", "destroy", "shutdown", "reboot", "pause"]
    assert {"console", "mem-set", "block-list", "network-list", "top", "uptime", "host",
            "lab"} <= set(names)
    for line in lines[4:]:  # " %-19s %s"
        assert re.fullmatch(r" [a-z-]{1,19} +\S.*", line) and line[20] == " "
    bare = pyxl(daemon.socket_path)
    assert (bare.code, bare.out) == (1, result.out)  # no subcommand: help, EXIT_FAILURE


def test_help_of_one_command(daemon: OurDaemon) -> None:
    result = pyxl(daemon.socket_path, "help", "domid")
    assert result.code == 0
    assert result.out == ("Usage: pyxl [-vtT] domid <DomainName>\n\n"
                          "Print the domid of a domain name.\n\n")
    mem = pyxl(daemon.socket_path, "help", "mem-set").out
    assert mem.startswith("Usage: pyxl [-vtTf] mem-set <Domain> <Memory[b|k|m|g|t]>")
    create = pyxl(daemon.socket_path, "help", "create").out
    assert create.startswith("Usage: pyxl [-vtTfN] create <ConfigFile> [options]")
    assert "\n\nOptions:\n\n-c " in create
    # -h, --help and a unique prefix give the same text, and exit 0.
    for args in (("list", "-h"), ("list", "--help"), ("help", "li"), ("li", "-h")):
        again = pyxl(daemon.socket_path, *args)
        assert (again.code, again.out) == (0, pyxl(daemon.socket_path, "help", "list").out)
    unknown = pyxl(daemon.socket_path, "help", "frobnicate")
    assert (unknown.code, unknown.out) == (0, 'command "frobnicate" not implemented\n')


@pytest.mark.parametrize(("args", "code", "err"), [
    (("mem-set", "guest"), 2, "'pyxl mem-set' requires at least 2 arguments.\n\n"),
    (("domid",), 2, "'pyxl domid' requires at least 1 argument.\n\n"),
    (("list", "-x"), 2, "option `x' not supported.\n"),
    (("create", "-f"), 2, "option `f' not supported.\n"),  # -f without its FILE
    (("frobnicate",), 1, "command not implemented\n"),
    (("d",), 1, "command not implemented\n"),  # destroy, domid, domname, dmesg...
    (("vcpu-",), 1, "command not implemented\n"),  # ambiguous in xl's table too
    (("vm-list",), 1, "command not implemented\n"),  # xl has it, the lab does not
    (("-x", "list"), 1, "pyxl: invalid option -- 'x'\nunknown global option\n"),
    (("-N", "list"), 1, "command does not implement -N (dryrun) option\n"),
    (("shutdown",), 1, "You must specify -a or a domain id.\n\n"),
    (("reboot", "-w"), 1, "You must specify -a or a domain id.\n\n"),
])
def test_usage_errors(daemon: OurDaemon, args: Sequence[str], code: int, err: str) -> None:
    result = pyxl(daemon.socket_path, *args)
    assert (result.code, result.err) == (code, err)
    if code == 2 and "requires" in err:  # then xl prints the command's help
        assert result.out == pyxl(daemon.socket_path, "help", args[0]).out


def test_lab_runs_or_says_plainly_it_is_missing(daemon: OurDaemon) -> None:
    result = pyxl(daemon.socket_path, "lab", "--help")
    if importlib.util.find_spec("xenstore.lab.labmain") is None:
        assert result.code == 1
        assert result.err.startswith("pyxl lab: not available yet")
        assert "Traceback" not in result.err
    else:
        assert result.code == 0 and result.out.startswith("usage: "), result.err


def test_the_cli_imports_neither_trio_nor_construct() -> None:
    probe = ("import sys, xenstore.lab.cli, xenstore.lab.xltop, xenstore.lab.xlconsole\n"
             "print(','.join(m for m in ('trio', 'construct') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=DEADLINE)
    assert done.stdout.strip() == ""


# -- finding the host -----------------------------------------------------------------


def test_no_host_is_said_plainly(daemon: OurDaemon) -> None:
    started = time.monotonic()
    result = pyxl(daemon.socket_path, "list", PYXL_HOST_WAIT="1")
    assert time.monotonic() - started < 10
    assert result.code == 1 and result.out == ""
    assert result.err == ("no pyxl host came up within 1 s (start one with `pyxl host "
                          "--domain-dir DIR`, or `pyxl lab`)\n")


def test_a_stale_host_node_is_said_plainly(daemon: OurDaemon) -> None:
    with Client(daemon.socket_path) as xs:
        xs.write(HOST_NODE, "/nonexistent/pyxl-host.sock")
    result = pyxl(daemon.socket_path, "info")
    assert result.code == 1
    assert result.err == ("no pyxl host answers at /nonexistent/pyxl-host.sock: "
                          "No such file or directory\n")


def test_no_daemon_is_said_plainly(tmp_path: Path) -> None:
    result = pyxl(str(tmp_path / "nowhere"), "list", PYXL_HOST_WAIT="0.3")
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.startswith("cannot reach the XenStore daemon: ")


def test_a_command_started_before_the_host_waits_for_it(daemon: OurDaemon) -> None:
    waiting = subprocess.Popen([*PYXL, "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=environment(daemon.socket_path, PYXL_HOST_WAIT="20"))
    host = None
    try:
        time.sleep(0.5)
        assert waiting.poll() is None, "pyxl list did not wait for the host"
        host = HostProcess(daemon)
        out, err = waiting.communicate(timeout=DEADLINE)
        assert waiting.returncode == 0, err
        assert out.decode().splitlines()[0] == LIST_HEADER
        assert out.decode().splitlines()[1].startswith("Domain-0 ")
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
        if host is not None:
            host.stop()


# -- what the host says, in xl's layouts ----------------------------------------------


def test_list(running: str) -> None:
    result = pyxl(running, "list")
    assert result.code == 0 and result.err == ""
    header, dom0 = result.out.splitlines()
    assert header == LIST_HEADER
    cpu = float(dom0.split()[-1])
    assert dom0 == f"{'Domain-0':<40} {0:>5} {2048:>5} {2:>5}     r-----  {cpu:>8.1f}"
    assert pyxl(running, "list", "0").out.splitlines()[0] == header
    assert pyxl(running, "list", "Domain-0").out.splitlines()[1].startswith("Domain-0 ")
    verbose = pyxl(running, "list", "-v").out.splitlines()
    assert verbose[0] == (LIST_HEADER + "   UUID                            Reason-Code\t"
                          "Security Label")
    assert verbose[1].endswith(" 00000000-0000-0000-0000-000000000000        -"
                               "                -")


def test_list_of_unknown_domains(running: str) -> None:
    assert (pyxl(running, "list", "7").code, pyxl(running, "list", "7").err) == (
        1, "Error: Domain '7' does not exist.\n")
    nosuch = pyxl(running, "list", "nosuch")
    assert (nosuch.code, nosuch.out, nosuch.err) == (
        1, "", "nosuch is an invalid domain identifier (rc=-6)\n")


def test_list_long_is_libxl_json(running: str) -> None:
    result = pyxl(running, "list", "-l")
    assert result.code == 0
    assert result.out.startswith('[\n    {\n        "domid": 0,\n        "config": {\n')
    (dom0,) = json.loads(result.out)
    assert dom0["config"]["c_info"]["name"] == "Domain-0"
    assert dom0["config"]["b_info"]["max_memkb"] == 2048 * 1024


def test_info(running: str) -> None:
    result = pyxl(running, "info")
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    names = [line.split(":")[0].rstrip() for line in lines]
    assert names[:5] == ["host", "release", "version", "machine", "nr_cpus"]
    assert names[-1] == "xend_config_format"
    assert names.index("total_memory") < names.index("free_memory") < names.index("xen_major")
    assert "nr_cpus                : 2" in lines
    assert "total_memory           : 8192" in lines
    assert "free_memory            : 6144" in lines
    assert "host                   : clihost" in lines
    assert all(re.fullmatch(r"[a-z_]{1,22} *: .*", line) for line in lines)
    assert pyxl(running, "info", "free_memory").out == "6144\n"
    assert pyxl(running, "info", "free").out == "6144\n0\n"  # free_memory, free_cpus
    numa = pyxl(running, "info", "-n").out
    assert "cpu_topology           :\ncpu:    core    socket     node\n  0:       0" in numa


def test_uptime(running: str) -> None:
    result = pyxl(running, "uptime")
    assert result.code == 0
    header, dom0 = result.out.splitlines()
    assert header == "Name" + " " * 32 + "ID Uptime"  # "%-33s %4s %s"
    assert re.fullmatch(r"Domain-0 {25} {4}0 [ \d]\d:\d\d:\d\d", dom0), dom0
    short = pyxl(running, "uptime", "-s", "Domain-0").out
    assert re.fullmatch(r" \d\d:\d\d:\d\d up [ \d]\d:\d\d, Domain-0 \(0\)\n", short), short
    bad = pyxl(running, "uptime", "nosuch")
    assert (bad.code, bad.err) == (1, "nosuch is an invalid domain identifier (rc=-6)\n")


def test_domid_and_domname(running: str) -> None:
    assert (pyxl(running, "domid", "Domain-0").out, pyxl(running, "domname", "0").out) == (
        "0\n", "Domain-0\n")
    nosuch = pyxl(running, "domid", "nosuch")
    assert (nosuch.code, nosuch.err) == (
        1, "Can't get domid of domain name 'nosuch', maybe this domain does not exist.\n")
    assert pyxl(running, "domid", "0").code == 1  # a domid is no name
    gone = pyxl(running, "domname", "42")
    assert (gone.code, gone.err) == (
        1, "Can't get domain name of domain id '42', maybe this domain does not exist.\n")
    letters = pyxl(running, "domname", "abc")
    assert (letters.code, letters.err) == (1, "Invalid domain id.\n\n")


def test_top_in_batch_mode(running: str) -> None:
    result = pyxl(running, "top", "-b", "-i", "2", "-d", "0")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    header = ("      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS "
              "NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID")
    assert [lines[0], lines[2]] == [header, header] and len(lines) == 4
    assert re.fullmatch(r"  Domain-0 -----r +\d+ +\d+\.\d    2097152   25\.0    2097152"
                        r"      25\.0     2    0        0        0    0        0        0"
                        r"        0          0          0    0", lines[1]), lines[1]


def test_refusals_about_domain_0(running: str) -> None:
    destroy = pyxl(running, "destroy", "0")
    assert (destroy.code, destroy.err) == (
        1, "Not destroying domain 0; use -f to force.\nThis can only be done when using a "
           "disaggregated hardware domain and toolstack.\n\n")
    assert pyxl(running, "destroy", "nosuch").err == (
        "nosuch is an invalid domain identifier (rc=-6)\n")
    overcommit = pyxl(running, "vcpu-set", "0", "3")
    assert (overcommit.code, overcommit.err) == (
        1, "You are overcommmitting! You have 2 physical CPUs and want 3 vCPUs! Aborting, "
           "use --ignore-host to continue\n")
    assert pyxl(running, "vcpu-set", "0", "x").err == "Error: Invalid argument.\n"
    assert pyxl(running, "mem-set", "0", "12q").err == "invalid memory size: 12q\n"
    assert pyxl(running, "mem-max", "0", "1gb").err == "invalid memory size: 1gb\n"


def test_device_lists_print_xl_headers(running: str) -> None:
    blocks = pyxl(running, "block-list", "0", "nosuch")
    assert blocks.code == 0  # block-list goes on past a bad domain
    assert blocks.out.splitlines()[0] == (
        "Vdev  BE  handle state evt-ch ring-ref BE-path                       ")
    assert "nosuch is an invalid domain identifier\n" in blocks.err
    nics = pyxl(running, "network-list", "0")
    assert nics.out.splitlines()[0] == (
        "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path"
        "                       ")
    assert pyxl(running, "network-list", "nosuch").code == 1  # network-list stops


# -- with a guest: a host in this process, the guest made through its API -----------------


@dataclass
class Lab:
    socket_path: str
    host: Host
    xs: AsyncClient
    directory: str


def guest_config(image: Path) -> GuestConfig:
    return GuestConfig(DomainSpec(1, "web", memory_kib=256 * 1024, maxmem_kib=384 * 1024,
                                  vcpus=1, max_vcpus=2),
                       disks=[DiskSpec("xvda", str(image))],
                       nics=[NicSpec(bridge="Br0", mac="00:16:3E:00:00:07")])


@pytest.fixture
async def lab(daemon: OurDaemon, hosts_dir: str, tmp_path: Path) -> AsyncIterator[Lab]:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    async with open_client(daemon.socket_path) as xs, trio.open_nursery() as nursery:
        host = Host(xs, HostOptions(daemon.directory, "cli-a"))
        await nursery.start(host.run)
        await nursery.start(Server(Commands(host), os.path.join(daemon.directory,
                                                                 "pyxl-host.sock")).run)
        with trio.fail_after(DEADLINE):
            guest = await host.create(guest_config(image))
            assert guest.domain.domid == 1 and guest.kernel is not None
            await guest.kernel.booted.wait()
            await wait_states(xs, DeviceAddress("vbd", 1, vdev_to_devid("xvda"), 0),
                              XenbusState.Connected, XenbusState.Connected)
            await wait_states(xs, DeviceAddress("vif", 1, 0, 0), XenbusState.Connected,
                              XenbusState.Connected)
        yield Lab(daemon.socket_path, host, xs, daemon.directory)
        nursery.cancel_scope.cancel()


async def test_list_shows_the_guest(lab: Lab) -> None:
    result = await apyxl(lab.socket_path, "list")
    assert result.code == 0, result.err
    _dom0, web = result.out.splitlines()[1:]
    cpu = float(web.split()[-1])
    assert web == f"{'web':<40} {1:>5} {256:>5} {1:>5}     -b----  {cpu:>8.1f}"
    by_name = await apyxl(lab.socket_path, "list", "web")
    assert by_name.out.splitlines()[1].startswith(f"{'web':<40} {1:>5} {256:>5} {1:>5}")
    assert (await apyxl(lab.socket_path, "domid", "web")).out == "1\n"
    assert (await apyxl(lab.socket_path, "domname", "1")).out == "web\n"
    uptime = (await apyxl(lab.socket_path, "uptime", "web")).out.splitlines()[1]
    assert re.fullmatch(r"web {30} {4}1  0:00:\d\d", uptime), uptime


async def test_mem_set_and_mem_max_write_libxl_nodes(lab: Lab) -> None:
    home = "/local/domain/1"
    result = await apyxl(lab.socket_path, "mem-set", "web", "128m")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert await c_read(lab.socket_path, f"{home}/memory/target") == "131072"
    result = await apyxl(lab.socket_path, "mem-max", "1", "524288k")
    assert result.code == 0, result.err
    assert await c_read(lab.socket_path, f"{home}/memory/static-max") == "524288"
    too_much = await apyxl(lab.socket_path, "mem-set", "web", "1g")
    assert too_much.code == 1
    assert too_much.err.endswith("cannot set domid 1 dynamic max memory to : 1g\n")


async def test_vcpu_set_pause_unpause(lab: Lab) -> None:
    result = await apyxl(lab.socket_path, "vcpu-set", "web", "2")
    assert result.code == 0, result.err
    assert await c_read(lab.socket_path, "/local/domain/1/cpu/1/availability") == "online"
    assert (await apyxl(lab.socket_path, "pause", "web")).code == 0
    assert "     --p---  " in (await apyxl(lab.socket_path, "list", "web")).out
    assert (await apyxl(lab.socket_path, "unpause", "1")).code == 0
    assert "     -b----  " in (await apyxl(lab.socket_path, "list", "web")).out
    nosuch = await apyxl(lab.socket_path, "pause", "nosuch")
    assert (nosuch.code, nosuch.err) == (1, "nosuch is an invalid domain identifier (rc=-6)\n")


async def test_console_copies_a_pipe_both_ways(lab: Lab) -> None:
    result = await apyxl(lab.socket_path, "console", "web", stdin=b"root\r")
    assert result.code == 0, result.err
    assert "web login: " in result.out  # the scrollback first, then the guest's echo
    assert "root" in result.out.split("web login: ", 1)[1]
    bad = await apyxl(lab.socket_path, "console", "-t", "vga", "web")
    assert (bad.code, bad.err) == (1, "console type supported are: pv, serial, vuart\n")


async def test_shutdown_and_wait(lab: Lab) -> None:
    guest = lab.host.guests[1]
    result = await apyxl(lab.socket_path, "shutdown", "-w", "web")
    assert (result.code, result.out) == (0, ""), result.err
    assert result.err == ("Shutting down domain 1\nWaiting for 1 domains\n"
                          "Domain 1 has been shut down, reason code 0\n")
    with trio.fail_after(DEADLINE):
        await guest.gone.wait()  # on_poweroff=destroy follows
    assert "web" not in (await apyxl(lab.socket_path, "list")).out


async def test_shutdown_of_a_guest_without_pv_drivers(lab: Lab, tmp_path: Path) -> None:
    image = tmp_path / "other.img"
    image.write_bytes(bytes(1 << 20))
    config = GuestConfig(DomainSpec(1, "nopv", memory_kib=128 * 1024), pv_drivers=False,
                         disks=[DiskSpec("xvda", str(image))])
    with trio.fail_after(DEADLINE):
        guest = await lab.host.create(config)
        assert guest.kernel is not None
        await guest.kernel.booted.wait()
    result = await apyxl(lab.socket_path, "shutdown", "nopv")
    assert (result.code, result.err) == (
        1, f"Shutting down domain {guest.domain.domid}\n"
           "PV control interface not available: external graceful shutdown not possible.\n"
           'Use "-F" to fallback to ACPI power event.\n'
           "shutdown failed (rc=-10)\n")


async def test_destroy(lab: Lab) -> None:
    result = await apyxl(lab.socket_path, "destroy", "web")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert not await lab.xs.exists("/local/domain/1")
    again = await apyxl(lab.socket_path, "destroy", "web")
    assert (again.code, again.err) == (1, "web is an invalid domain identifier (rc=-6)\n")


async def test_save_and_restore(lab: Lab, tmp_path: Path) -> None:
    saved = tmp_path / "web.save"
    result = await apyxl(lab.socket_path, "save", "web", str(saved))
    assert result.code == 0, result.err
    assert saved.exists() and 1 not in lab.host.xen.domains
    restored = await apyxl(lab.socket_path, "restore", "-p", str(saved))
    assert restored.code == 0, restored.err
    row = [line for line in (await apyxl(lab.socket_path, "list")).out.splitlines()
           if line.startswith("web ")]
    assert len(row) == 1 and "     --p---  " in row[0]


async def test_reboot_and_wait(lab: Lab) -> None:
    result = await apyxl(lab.socket_path, "reboot", "-w", "1")
    assert (result.code, result.err) == (0, "Rebooting domain 1\nWaiting for 1 domains\n"
                                            "Domain 1 has been shut down, reason code 1\n")


async def test_migrate_to_another_host(lab: Lab) -> None:
    other = OurDaemon("--domain-dir", None)
    try:
        async with open_client(other.socket_path) as xs, trio.open_nursery() as nursery:
            host = Host(xs, HostOptions(other.directory, "cli-b"))
            await nursery.start(host.run)
            await nursery.start(Server(Commands(host), os.path.join(other.directory,
                                                                     "pyxl-host.sock")).run)
            result = await apyxl(lab.socket_path, "migrate", "web", "cli-b")
            assert result.code == 0, result.err
            assert result.err.splitlines()[0] == "migration target: Ready to receive domain."
            assert result.err.endswith("migration sender: Target reports successful startup."
                                       "\nMigration successful.\n")
            there = await apyxl(other.socket_path, "list", "web")
            assert there.code == 0 and there.out.splitlines()[1].startswith("web "), there.err
            here = await apyxl(lab.socket_path, "list", "web")
            assert (here.code, here.err) == (1, "web is an invalid domain identifier (rc=-6)\n")
            nursery.cancel_scope.cancel()
    finally:
        other.stop()


async def test_block_and_network_lists_of_a_guest(lab: Lab) -> None:
    blocks = await apyxl(lab.socket_path, "block-list", "web")
    assert blocks.code == 0 and blocks.err == "", blocks.err
    row = blocks.out.splitlines()[1]
    assert re.fullmatch(r"51712 0   1      4     \d+ +\d+ +/local/domain/0/backend/vbd/1/51712 *",
                        row), row
    nics = await apyxl(lab.socket_path, "network-list", "web")
    assert nics.code == 0 and nics.err == "", nics.err
    row = nics.out.splitlines()[1]
    assert re.fullmatch(r"0   0  00:16:3e:00:00:07     0     4 +-?\d+ +\d+/\d+ +"
                        r"/local/domain/0/backend/vif/1/0 *", row), row


async def test_block_and_network_attach_detach(lab: Lab, tmp_path: Path) -> None:
    image = tmp_path / "extra.img"
    image.write_bytes(bytes(1 << 20))
    attach = await apyxl(lab.socket_path, "block-attach", "web", f"{image},raw,xvdb,rw")
    assert attach.code == 0, attach.err
    assert "51728" in (await apyxl(lab.socket_path, "block-list", "web")).out
    detach = await apyxl(lab.socket_path, "block-detach", "web", "xvdb")
    assert detach.code == 0, detach.err
    nic = await apyxl(lab.socket_path, "network-attach", "web", "bridge=Br0",
                      "mac=00:16:3e:00:00:08")
    assert nic.code == 0, nic.err
    assert "00:16:3e:00:00:08" in (await apyxl(lab.socket_path, "network-list", "web")).out
    gone = await apyxl(lab.socket_path, "network-detach", "web", "00:16:3e:00:00:08")
    assert gone.code == 0, gone.err


# -- create, through `pyxl host` in a subprocess ----------------------------------------


@pytest.fixture
def host_process(daemon: OurDaemon, hosts_dir: str) -> Iterator[str]:
    host = HostProcess(daemon, "--name", "cli-b")
    try:
        host.wait_ready()
        yield daemon.socket_path
    finally:
        host.stop()


def test_create_then_mem_set_seen_by_the_c_tools(host_process: str, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    cfg = tmp_path / "web.cfg"
    cfg.write_text(f'name = "web"\nkernel = "/boot/vmlinuz"\nmemory = 256\nmaxmem = 512\n'
                   "vcpus = 1\n"
                   f"disk = ['{image},raw,xvda,rw']\n"
                   "vif = ['mac=00:16:3e:00:00:07,bridge=Br0']\n")
    created = pyxl(host_process, "create", str(cfg), "vcpus=2")
    assert (created.code, created.out) == (0, ""), created.err
    assert created.err == f"Parsing config from {cfg}\n"
    web = pyxl(host_process, "list", "web").out.splitlines()[1]
    assert re.fullmatch(r"web {37} +1 +256 +2     -b----  +\d+\.\d", web), web
    assert pyxl(host_process, "mem-set", "web", "128").code == 0
    env = {**os.environ, "XENSTORED_PATH": host_process}
    target = subprocess.run([c_tool("xenstore-read"), "/local/domain/1/memory/target"],
                            capture_output=True, text=True, env=env, timeout=DEADLINE)
    assert target.stdout == "131072\n"
    listing = subprocess.run([c_tool("xenstore-ls"), "/local/domain/1/memory"],
                             capture_output=True, text=True, env=env, timeout=DEADLINE)
    assert 'target = "131072"' in listing.stdout
    assert 'static-max = "524288"' in listing.stdout
    assert pyxl(host_process, "destroy", "web").code == 0


def test_create_without_a_readable_config(daemon: OurDaemon, tmp_path: Path) -> None:
    missing = tmp_path / "missing.cfg"
    result = pyxl(daemon.socket_path, "create", str(missing))
    assert (result.code, result.err) == (
        3, f"Failed to read config file: {missing}: No such file or directory\n")
    nothing = pyxl(daemon.socket_path, "create")
    assert (nothing.code, nothing.err) == (
        6, "Config file not specified and none in save file\n")
    two = pyxl(daemon.socket_path, "create", str(missing), str(missing))
    assert two.code == 2 and two.out.startswith("Usage: pyxl [-vtTfN] create ")


# -- on a terminal ----------------------------------------------------------------------


class Terminal:
    """``pyxl ARGS`` with a pseudo-terminal for stdin and stdout, as a student's shell."""

    def __init__(self, socket_path: str, *args: str) -> None:
        self.master, slave = os.openpty()
        self.process = subprocess.Popen([*PYXL, *args], stdin=slave, stdout=slave,
                                        stderr=subprocess.PIPE,
                                        env=environment(socket_path))
        os.close(slave)
        self.seen = b""

    def expect(self, text: bytes) -> None:
        deadline = time.monotonic() + DEADLINE
        while text not in self.seen:
            assert time.monotonic() < deadline, f"never saw {text!r} in {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                self.seen += os.read(self.master, 4096)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self) -> int:
        try:
            return self.process.wait(DEADLINE)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            os.close(self.master)


def test_top_on_a_terminal_quits_on_q(running: str) -> None:
    terminal = Terminal(running, "top")
    terminal.expect(b"xentop - ")
    terminal.expect(b"  Domain-0 -----r")
    assert b"1 domains: 1 running, 0 blocked, 0 paused, 0 crashed, 0 dying, 0 shutdown" in (
        terminal.seen)
    terminal.type(b"q")
    assert terminal.wait() == 0


async def test_console_on_a_terminal_detaches_on_ctrl_bracket(lab: Lab) -> None:
    def session() -> tuple[int, bytes]:
        terminal = Terminal(lab.socket_path, "console", "web")
        terminal.expect(b"web login: ")
        terminal.type(b"root\r")
        terminal.expect(b"Login incorrect")
        terminal.type(b"\x1d")  # Ctrl-]
        return terminal.wait(), terminal.seen

    code, seen = await trio.to_thread.run_sync(session)
    assert code == 0
    assert b"Booting paravirtualized kernel on Xen" in seen
