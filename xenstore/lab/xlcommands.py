"""The domain commands of ``pyxl``: what each asks the host and what it prints, as xl does.

Each ``cmd_*`` takes the parsed :class:`~.xlsession.Invocation` and returns xl's
exit status. Messages follow xl 4.17 (xl_info.c, xl_vmcontrol.c, xl_mem.c,
xl_vcpu.c, xl_saverestore.c, xl_migrate.c): what xl prints on stdout goes to
stdout, its progress and errors to stderr. The host's own refusals arrive as
the text libxl would log and are printed as they come.
"""

from __future__ import annotations

import os
import time
from typing import Any

from xenstore.lab import xlformat
from xenstore.lab.cnumbers import c_strtol
from xenstore.lab.rpc import HostError
from xenstore.lab.xlsession import (
    FAILURE,
    LONG_WAIT,
    Exit,
    Invocation,
    ShowHelp,
    err,
    is_domid,
    out,
)

#: libxl's ERROR_NOPARAVIRT, in the line xl adds when a guest has no PV control.
ERROR_NOPARAVIRT = -10


def _print_messages(result: Any) -> None:
    """What the host reports for xl's stderr: progress (``lines``) and ``warnings``."""
    if isinstance(result, dict):
        for key in ("lines", "warnings"):
            for line in result.get(key) or []:
                err(str(line))


# -- looking at domains ------------------------------------------------------------


def _select(inv: Invocation, rows: list[dict[str, Any]], qualifier: str) -> dict[str, Any]:
    """One domain of ``rows`` as ``xl list NAME`` finds it, or xl's message."""
    if is_domid(qualifier):
        domid = int(qualifier or "0") % (1 << 32)
        for row in rows:
            if int(row["domid"]) == domid:
                return row
        err(f"Error: Domain '{qualifier}' does not exist.")
        raise Exit(FAILURE)
    for row in rows:
        if row["name"] == qualifier:
            return row
    err(f"{qualifier} is an invalid domain identifier (rc=-6)")
    raise Exit(FAILURE)


def cmd_list(inv: Invocation) -> int:
    rows = inv.domains()
    if inv.args:  # xl takes one; the lab lets students name several
        rows = [_select(inv, rows, qualifier) for qualifier in inv.args]
    if inv.has("-l", "--long"):
        out(xlformat.list_long(rows))
        return 0
    style = {"verbose": inv.has("-v", "--verbose"), "context": inv.has("-Z", "--context"),
             "cpupool": inv.has("-c", "--cpupool"), "numa": inv.has("-n", "--numa")}
    out(xlformat.list_header(**style))
    for row in rows:
        out(xlformat.list_row(row, **style))
    return 0


def cmd_info(inv: Invocation) -> int:
    numa = inv.has("-n", "--numa")
    lines = xlformat.info_fields(inv.call("info"), numa=numa)
    if not numa and inv.args:
        lines = xlformat.info_select(lines, inv.args[0])
    for line in lines:
        out(line)
    return 0


def cmd_uptime(inv: Invocation) -> int:
    short = inv.has("-s")
    wanted = [inv.find_domain(qualifier) for qualifier in inv.args]
    rows = {int(row["domid"]): row for row in inv.domains()}
    info = inv.call("info")
    now = time.time()
    now_hms = time.strftime("%H:%M:%S", time.localtime(now))
    if not short:
        out(xlformat.uptime_header())
    for domid in wanted or [0, *sorted(d for d in rows if d != 0)]:
        row = rows.get(domid)
        if domid == 0:  # dom0 has been up as long as the host
            seconds = int(float(info.get("uptime", 0)))
        elif row is None:
            continue  # xl prints nothing for a domain it cannot find
        else:
            seconds = int(now) - int(float(row["created"]))
        name = row["name"] if row else "Domain-0"
        out(xlformat.uptime_line(name, domid, seconds, short=short, now_hms=now_hms))
    return 0


def cmd_domid(inv: Invocation) -> int:
    name = inv.args[0]
    for row in inv.domains():
        if row["name"] == name:
            out(str(row["domid"]))
            return 0
    err(f"Can't get domid of domain name '{name}', maybe this domain does not exist.")
    return FAILURE


def cmd_domname(inv: Invocation) -> int:
    value, used, _ = c_strtol(inv.args[0], 10)
    if value is None or used == 0:
        err("Invalid domain id.\n")
        return FAILURE
    domid = value % (1 << 32)
    for row in inv.domains():
        if int(row["domid"]) == domid:
            out(str(row["name"]))
            return 0
    err(f"Can't get domain name of domain id '{domid}', maybe this domain does not exist.")
    return FAILURE


# -- the life of a domain ----------------------------------------------------------


def cmd_create(inv: Invocation) -> int:
    """xl create: send the config's text (and KEY=VALUE overrides) to the host."""
    config = inv.value("-f", "--defconfig")
    overrides: list[str] = []
    for arg in inv.args:
        if "=" in arg:
            overrides.append(arg)
        elif config is None:
            config = arg
        else:
            raise ShowHelp(2)
    if config is None:
        err("Config file not specified and none in save file")
        return 6  # -ERROR_INVAL, as xl returns it
    try:
        with open(config, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        err(f"Failed to read config file: {config}: {exc.strerror}")
        return 3  # -ERROR_FAIL
    if not inv.has("-q", "--quiet"):
        err(f"Parsing config from {config}")
    try:
        result = inv.call("create", config=text, path=os.path.abspath(config),
                          overrides=overrides)
    except HostError as exc:
        raise inv.fail(exc) from None
    _print_messages(result)
    return _after_start(inv, int(result["domid"]))


def _after_start(inv: Invocation, domid: int) -> int:
    """What create and restore do once the domain exists: -p, -c, -F."""
    if inv.has("-p"):
        inv.call("pause", domain=str(domid))
    if inv.has("-c"):
        from xenstore.lab.xlconsole import attach

        inv.close()
        return attach(inv, domid)
    if inv.has("-F"):  # in the foreground until the domain is gone
        inv.call_waiting(LONG_WAIT, "wait_gone", domids=[domid], timeout=LONG_WAIT)
    return 0


def _shutdown_one(inv: Invocation, domid: int, reboot: bool) -> None:
    what = "reboot" if reboot else "shutdown"
    err(f"{'Rebooting' if reboot else 'Shutting down'} domain {domid}")
    try:
        result = inv.call("shutdown", domain=str(domid),
                          reason="reboot" if reboot else "poweroff", fallback=inv.has("-F"))
    except HostError as exc:
        more = ([f"{what} failed (rc={ERROR_NOPARAVIRT})"]
                if str(exc).startswith("PV control interface not available") else [])
        raise inv.fail(exc, *more) from None
    if isinstance(result, dict) and result.get("acpi"):  # -F, and the guest needed it
        err("PV control interface not available: sending ACPI "
            f"{'reset' if reboot else 'power'} button event.")


def shutdown_or_reboot(inv: Invocation, reboot: bool) -> int:
    """xl shutdown / reboot [-a] [-w[w]] [-F] DOMAIN: ask, then wait if told."""
    everyone = inv.has("-a", "--all")
    if not inv.args and not everyone:
        err("You must specify -a or a domain id.\n")
        return FAILURE
    if everyone:
        domids = [int(row["domid"]) for row in inv.domains() if int(row["domid"]) != 0]
    else:
        domids = [inv.find_domain(inv.args[0])]
    for domid in domids:
        _shutdown_one(inv, domid, reboot)
    waits = inv.count("-w", "--wait")
    if waits:
        down = waits == 1  # -w: shut down is enough; -ww: until destroyed
        err(f"Waiting for {len(domids)} domains")
        try:
            inv.call_waiting(LONG_WAIT, "wait_gone", domids=domids, down=down,
                             timeout=LONG_WAIT)
        except HostError as exc:
            raise inv.fail(exc) from None
        code = 1 if reboot else 0
        for domid in domids:
            err(f"Domain {domid} has been shut down, reason code {code}" if down
                else f"Domain {domid} has been destroyed")
    return 0


def cmd_shutdown(inv: Invocation) -> int:
    return shutdown_or_reboot(inv, reboot=False)


def cmd_reboot(inv: Invocation) -> int:
    return shutdown_or_reboot(inv, reboot=True)


def cmd_destroy(inv: Invocation) -> int:
    domid = inv.find_domain(inv.args[0])
    if domid == 0 and not inv.has("-f"):
        err("Not destroying domain 0; use -f to force.\n"
            "This can only be done when using a disaggregated hardware domain and "
            "toolstack.\n")
        return FAILURE
    _simple(inv, "destroy", domid)
    return 0


def _simple(inv: Invocation, cmd: str, domid: int, *more: str, **args: Any) -> Any:
    try:
        return inv.call(cmd, domain=str(domid), **args)
    except HostError as exc:
        raise inv.fail(exc, *more) from None


def cmd_pause(inv: Invocation) -> int:
    _simple(inv, "pause", inv.find_domain(inv.args[0]))
    return 0


def cmd_unpause(inv: Invocation) -> int:
    _simple(inv, "unpause", inv.find_domain(inv.args[0]))
    return 0


# -- memory and vCPUs --------------------------------------------------------------


def _memory(inv: Invocation, cmd: str, which: str) -> int:
    domid = inv.find_domain(inv.args[0])
    size = inv.args[1]
    kib = xlformat.parse_mem_size_kb(size)
    if kib is None:
        err(f"invalid memory size: {size}")
        return FAILURE
    _simple(inv, cmd, domid, f"cannot set domid {domid} {which} memory to : {size}", kib=kib)
    return 0


def cmd_mem_set(inv: Invocation) -> int:
    return _memory(inv, "mem_set", "dynamic max")


def cmd_mem_max(inv: Invocation) -> int:
    return _memory(inv, "mem_max", "static max")


def cmd_vcpu_set(inv: Invocation) -> int:
    domid = inv.find_domain(inv.args[0])
    count = xlformat.parse_count(inv.args[1])
    if count is None:
        err("Error: Invalid argument.")
        return FAILURE
    if not inv.has("-i", "--ignore-host"):  # no more vCPUs than the host has CPUs
        host_cpus = int(inv.call("info")["nr_cpus"])
        online = next((int(row["vcpus"]) for row in inv.domains()
                       if int(row["domid"]) == domid), None)
        if online is None:
            return FAILURE  # xl gives up quietly when it cannot read the domain
        if count > online and count > host_cpus:
            err(f"You are overcommmitting! You have {host_cpus} physical CPUs and want "
                f"{count} vCPUs! Aborting, use --ignore-host to continue")
            return FAILURE
    _simple(inv, "vcpu_set", domid, vcpus=count)
    return 0


# -- save, restore, migrate --------------------------------------------------------


def cmd_save(inv: Invocation) -> int:
    if len(inv.args) > 3:
        raise ShowHelp(FAILURE)
    domid = inv.find_domain(inv.args[0])
    args: dict[str, Any] = {"file": os.path.abspath(inv.args[1])}
    if len(inv.args) == 3:
        args["config"] = _read_config(inv.args[2])
    if inv.has("-c"):
        args["checkpoint"] = True  # leave it running
    if inv.has("-p"):
        args["leave_paused"] = True
    _print_messages(_simple(inv, "save", domid, **args))
    return 0


def _read_config(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as exc:
        err(f"Failed to read config file: {path}: {exc.strerror}")
        raise Exit(FAILURE) from None


def cmd_restore(inv: Invocation) -> int:
    if len(inv.args) not in (1, 2):
        raise ShowHelp(FAILURE)
    args: dict[str, Any] = {"file": os.path.abspath(inv.args[-1])}
    if len(inv.args) == 2:
        args["config"] = _read_config(inv.args[0])
        args["path"] = os.path.abspath(inv.args[0])
    try:
        result = inv.call("restore", **args)
    except HostError as exc:
        raise inv.fail(exc) from None
    _print_messages(result)
    return _after_start(inv, int(result["domid"]))


def cmd_migrate(inv: Invocation) -> int:
    domid = inv.find_domain(inv.args[0])
    result = _simple(inv, "migrate", domid, host=inv.args[1])
    if isinstance(result, dict) and result.get("lines"):
        _print_messages(result)  # both ends' progress, as xl shows it
    else:
        err("Migration successful.")
    return 0
