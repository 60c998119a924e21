"""What ``pyxl`` prints, as xl 4.17 lays it out: pure functions from the host's answers to text.

The columns, widths and wording are xl's (xl_info.c for ``list``, ``info`` and
``uptime``; xl_block.c and xl_nic.c for the device lists; xentop.c for
``top``), so that what students learn here reads the same on a real host.
Nothing here talks to the host or reads a clock: rows and times come in, lines
go out, and the tests can pin every space.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from xenstore.lab.cnumbers import c_strtol, c_strtoul

Row = Mapping[str, Any]

#: libxl's shutdown reason codes (libxl_types.idl), as ``list -v`` shows them.
SHUTDOWN_CODES = {"poweroff": 0, "reboot": 1, "suspend": 2, "crash": 3, "watchdog": 4,
                  "soft_reset": 5}
INT_MAX = (1 << 31) - 1

# -- xl list -----------------------------------------------------------------------


def list_header(*, verbose: bool = False, context: bool = False, cpupool: bool = False,
                numa: bool = False) -> str:
    """The header of ``xl list``: a tab before State and before Time(s), as xl prints."""
    line = "Name" + " " * 40 + "ID   Mem VCPUs\tState\tTime(s)"
    if verbose:
        line += "   UUID                            Reason-Code\tSecurity Label"
    elif context:
        line += "   Security Label"
    if cpupool:
        line += "         Cpupool"
    if numa:
        line += " NODE Affinity"
    return line


def list_row(row: Row, *, verbose: bool = False, context: bool = False,
             cpupool: bool = False, numa: bool = False) -> str:
    """One domain: the name left in 40 columns, then ID, MiB, vCPUs, State, seconds."""
    line = (f"{row['name']:<40} {row['domid']:>5} {int(row['memory_kib']) // 1024:>5} "
            f"{row['vcpus']:>5}     {row['flags']}  {float(row['cpu_time']):>8.1f}")
    if verbose:
        code = reason_code(row)
        line += f" {row['uuid']}" + (f" {code:>8x}" if code is not None else f" {'-':>8}")
    if verbose or context:
        line += f" {'-':>16}"
    if cpupool:
        line += f"{'Pool-0':>16}"
    if numa:
        line += " all"  # one NUMA node, every domain may use it
    return line


def reason_code(row: Row) -> int | None:
    """libxl's shutdown reason of a domain that is shut down, else None."""
    if row.get("state") != "shutdown" and row.get("shutdown_reason") is None:
        return None
    return SHUTDOWN_CODES.get(str(row.get("shutdown_reason")), 0)


def domain_config(row: Row) -> dict[str, Any]:
    """libxl's domain configuration for ``list -l``: the host's own when it gives one
    (``row["config"]``), else what the row tells of c_info and b_info."""
    config = row.get("config")
    if isinstance(config, dict):
        return config
    return {
        "c_info": {"type": row["type"], "name": row["name"], "uuid": row["uuid"]},
        "b_info": {
            "max_vcpus": row["max_vcpus"],
            "avail_vcpus": list(range(int(row["vcpus"]))),
            "max_memkb": row["maxmem_kib"],
            "target_memkb": row["memory_kib"],
        },
    }


def list_long(rows: Iterable[Row]) -> str:
    """``xl list -l``: a JSON array of {domid, config}, indented by four as libxl's yajl."""
    return json.dumps([{"domid": row["domid"], "config": domain_config(row)} for row in rows],
                      indent=4)


# -- xl info -----------------------------------------------------------------------


def info_fields(info: Row, *, numa: bool = False) -> list[str]:
    """Every line of ``xl info`` (each "name<padding>: value"), numa's tables inside.

    What the host does not say is filled in as a small x86 host running Xen 4.17
    would show it; a key of the same name in ``info`` overrides the default.
    """
    cpus = int(info.get("nr_cpus", 1))
    uname = os.uname()
    fields: list[tuple[str, object]] = [
        ("host", info.get("host", uname.nodename)),
        ("release", uname.release), ("version", uname.version), ("machine", "x86_64"),
        ("nr_cpus", cpus), ("max_cpu_id", cpus - 1), ("nr_nodes", 1),
        ("cores_per_socket", cpus), ("threads_per_core", 1), ("cpu_mhz", "2400.000"),
        ("hw_caps", ":".join(["00000000"] * 8)),
        ("virt_caps", "pv hvm hap shadow gnttab-v1 gnttab-v2"),
        ("total_memory", info.get("total_memory", 0)),
        ("free_memory", info.get("free_memory", 0)),
        ("sharing_freed_memory", 0), ("sharing_used_memory", 0), ("outstanding_claims", 0),
        ("free_cpus", 0),
    ]
    tail: list[tuple[str, object]] = [
        ("xen_major", 4), ("xen_minor", 17), ("xen_extra", ".7-pyxl"),
        ("xen_version", "4.17.7-pyxl"),
        ("xen_caps", "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"),
        ("xen_scheduler", "credit2"), ("xen_pagesize", 4096),
        ("platform_params", "virt_start=0xffff800000000000"),
        ("xen_changeset", "pyxl simulated host"),
        ("xen_commandline", "placeholder"), ("cc_compiler", "pyxl"),
        ("cc_compile_by", "pyxl"), ("cc_compile_domain", "lab"),
        ("cc_compile_date", "(simulated)"), ("build_id", "(simulated)"),
    ]
    lines = [_info_line(name, info.get(name, value)) for name, value in fields]
    if numa:
        lines += topology_lines(cpus, int(info.get("total_memory", 0)),
                                int(info.get("free_memory", 0)))
    lines += [_info_line(name, info.get(name, value)) for name, value in tail]
    lines.append(_info_line("xend_config_format", 4))
    return lines


def _info_line(name: str, value: object) -> str:
    return f"{name:<23}: {value}"


def topology_lines(cpus: int, total_mib: int, free_mib: int) -> list[str]:
    """``xl info -n``: CPU and device topology, then the NUMA nodes (one here)."""
    lines = ["cpu_topology           :", "cpu:    core    socket     node"]
    lines += [f"{cpu:>3}:    {cpu:>4}     {0:>4}     {0:>4}" for cpu in range(cpus)]
    lines += ["device topology        :", "device           node",
              "No device topology data available",
              "numa_info              :", "node:    memsize    memfree    distances",
              f"{0:>4}:    {total_mib:>6}     {free_mib:>6}      10"]
    return lines


def info_select(lines: Sequence[str], name: str) -> list[str]:
    """``xl info NAME``: the values of the lines whose text starts with NAME."""
    return [line.split(": ", 1)[1] for line in lines
            if line.startswith(name) and ": " in line and line.index(":") == line.index(": ")]


# -- xl uptime ---------------------------------------------------------------------


def uptime_text(seconds: int, short: bool = False) -> str:
    """xl's uptime: "[D day[s], ]HH:MM[:SS]", hours padded to two columns."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    prefix = f"{days} days, " if days > 1 else "1 day, " if days == 1 else ""
    clock = f"{hours:2d}:{minutes:02d}" + ("" if short else f":{secs:02d}")
    return prefix + clock


def uptime_header() -> str:
    return f"{'Name':<33} {'ID':>4} Uptime"


def uptime_line(name: str, domid: int, seconds: int, *, short: bool = False,
                now_hms: str = "") -> str:
    """One domain's uptime; ``short`` (``-s``) is the uptime(1)-like form."""
    if short:
        return f" {now_hms} up {uptime_text(seconds, True)}, {name} ({domid})"
    return f"{name:<33} {domid:>4} {uptime_text(seconds)}"


# -- devices -----------------------------------------------------------------------


def _num(row: Row, key: str) -> int:
    """An integer column; what is not known yet shows as -1, as libxl's getinfo does."""
    value = row.get(key)
    try:
        return int(value) if value is not None else -1
    except (TypeError, ValueError):
        return -1


def block_header() -> str:
    return (f"{'Vdev':<5} {'BE':<3} {'handle':<6} {'state':<5} {'evt-ch':<6} "
            f"{'ring-ref':<8} {'BE-path':<30}")


def block_row(domid: int, row: Row) -> str:
    """xl prints the device number under Vdev and the frontend's domid as handle."""
    return (f"{_num(row, 'devid'):<5} {_num(row, 'backend_id'):<3} {domid:<6} "
            f"{_num(row, 'state'):<5} {_num(row, 'evtchn'):<6} {_num(row, 'ring_ref'):<8} "
            f"{row.get('backend', ''):<30}")


def network_header() -> str:
    return (f"{'Idx':<3} {'BE':<2} {'Mac Addr.':<17} {'handle':<6} {'state':<5} "
            f"{'evt-ch':<6} {'tx-':>5}/{'rx-ring-ref':<5} {'BE-path':<30}")


def network_row(row: Row) -> str:
    """The MAC runs straight into the right-aligned handle, as in xl."""
    return (f"{_num(row, 'idx'):<3} {_num(row, 'backend_id'):<2} "
            f"{str(row.get('mac', '')).lower()}"
            f"{_num(row, 'handle'):>6} {_num(row, 'state'):>5} {_num(row, 'evtchn'):>6} "
            f"{_num(row, 'tx_ring_ref'):>5}/{_num(row, 'rx_ring_ref'):<11} "
            f"{row.get('backend', ''):<30}")


# -- numbers as xl reads them ------------------------------------------------------


def parse_mem_size_kb(text: str) -> int | None:
    """xl's memory sizes: a number in MiB, or with a b/k/m/g/t suffix; None if invalid.

    As xl, a missing number counts as 0 and a second character after it is an
    error. A negative size is refused here (xl would hand libxl a huge target).
    """
    value, used, _ = c_strtol(text, 10)
    number = value or 0
    rest = text[used:]
    if len(rest) > 1:
        return None
    shift = {"t": 30, "g": 20, "": 10, "m": 10, "k": 0}.get(rest.lower())
    if shift is not None:
        kib = number << shift
    elif rest.lower() == "b":
        kib = number >> 10
    else:
        return None
    return kib if kib >= 0 else None


# -- top (xentop) ------------------------------------------------------------------

TOP_FIELDS = (("NAME", 10), ("STATE", 6), ("CPU(sec)", 10), ("CPU(%)", 6), ("MEM(k)", 10),
              ("MEM(%)", 6), ("MAXMEM(k)", 10), ("MAXMEM(%)", 9), ("VCPUS", 5), ("NETS", 4),
              ("NETTX(k)", 8), ("NETRX(k)", 8), ("VBDS", 4), ("VBD_OO", 8), ("VBD_RD", 8),
              ("VBD_WR", 8), ("VBD_RSECT", 10), ("VBD_WSECT", 10), ("SSID", 4))


def top_state(flags: str) -> str:
    """xentop's STATE: the letters of ``xl list`` in xentop's order (d s b c p r)."""
    flags = (flags + "------")[:6]
    letters = (("d", flags[5] == "d"), ("s", flags[3] == "s"), ("b", flags[1] == "b"),
               ("c", flags[4] == "c"), ("p", flags[2] == "p"), ("r", flags[0] == "r"))
    return "".join(ch if on else "-" for ch, on in letters)


def top_name_width(rows: Iterable[Row], full_name: bool) -> int:
    width = 10
    if full_name:
        width = max([width, *(len(str(row["name"])) for row in rows)])
    return width


def top_header(name_width: int = 10) -> str:
    widths = [name_width, *(w for _, w in TOP_FIELDS[1:])]
    return " ".join(f"{header:>{width}}" for (header, _), width in zip(TOP_FIELDS, widths,
                                                                      strict=True))


def top_row(row: Row, total_kib: int, cpu_pct: float, *, name_width: int = 10,
            full_name: bool = False) -> str:
    """One domain in xentop's columns. The lab counts no network or disk traffic."""
    name = str(row["name"])
    name_cell = f"{name:>{name_width}}" if full_name else f"{name[:10]:>10}"
    mem = int(row["memory_kib"])
    maxmem = int(row["maxmem_kib"])
    total = max(total_kib, 1)
    cells = [
        name_cell, f"{top_state(str(row['flags'])):>6}", f"{int(float(row['cpu_time'])):>10}",
        f"{cpu_pct:>6.1f}", f"{mem:>10}", f"{mem / total * 100:>6.1f}", f"{maxmem:>10}",
        f"{maxmem / total * 100:>9.1f}", f"{int(row['vcpus']):>5}",
        f"{int(row.get('nets', 0)):>4}", f"{0:>8}", f"{0:>8}", f"{int(row.get('vbds', 0)):>4}",
        f"{0:>8}", f"{0:>8}", f"{0:>8}", f"{0:>10}", f"{0:>10}", f"{0:>4}",
    ]
    return " ".join(cells)


def top_summary(rows: Sequence[Row], info: Row, now_hms: str) -> list[str]:
    """The lines above xentop's table (interactive mode only, as xentop)."""
    counts = {"running": 0, "blocked": 0, "paused": 0, "shutdown": 0, "crashed": 0,
              "dying": 0}
    for row in rows:  # the first state that applies, in xentop's order
        flags = (str(row["flags"]) + "------")[:6]
        for key, on in (("running", flags[0] == "r"), ("blocked", flags[1] == "b"),
                        ("paused", flags[2] == "p"), ("shutdown", flags[3] == "s"),
                        ("crashed", flags[4] == "c"), ("dying", flags[5] == "d")):
            if on:
                counts[key] += 1
                break
    total = int(info.get("total_memory", 0)) * 1024
    free = int(info.get("free_memory", 0)) * 1024
    return [
        f"xentop - {now_hms}   Xen {info.get('xen_version', '4.17.7-pyxl')}",
        f"{len(rows)} domains: {counts['running']} running, {counts['blocked']} blocked, "
        f"{counts['paused']} paused, {counts['crashed']} crashed, {counts['dying']} dying, "
        f"{counts['shutdown']} shutdown ",
        f"Mem: {total}k total, {total - free}k used, {free}k free    "
        f"CPUs: {info.get('nr_cpus', 1)} @ 2400MHz",
    ]


def parse_count(text: str) -> int | None:
    """vcpu-set's count: strtoul's reading, refused when empty or beyond INT_MAX."""
    value, used, _ = c_strtoul(text, 10)
    if value is None or used == 0 or value > INT_MAX:
        return None
    return value
