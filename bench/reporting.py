"""Turn a run's samples into medians, cost ratios and a Markdown report."""

from __future__ import annotations

import re
import statistics
from typing import Any

REFERENCES = ("cxenstored", "oxenstored")

_TITLES = {
    "lat": (
        "Single-client latency (`lat`)",
        "One connection, one request in flight: READ of an 8-byte value, WRITE of 8 bytes "
        "to an existing node, DIRECTORY of a node with 10 children.",
    ),
    "pipe": (
        "Pipelined READs (`pipe{n}`)",
        "{n} READs written in one go, then {n} replies read: the daemon's per-request cost "
        "when it can batch, without a wake-up per request.",
    ),
    "idle": (
        "Latency beside idle connections (`idle{n}`)",
        "One client's READ latency while {n} other connections are open, each holding a "
        "watch on an unrelated path.",
    ),
    "watch": (
        "Watch fan-out (`watch{n}`)",
        "{n} connections watch one subtree; one client WRITEs below it; the time until the "
        "last watcher has read its event (median of the rounds).",
    ),
    "tput": (
        "Throughput with {n} client{s} (`tput{n}`)",
        "{n} connection{s}, each with one request in flight, 90 % READ and 10 % WRITE of 8 "
        "bytes over 100 keys, all driven by one process with epoll: requests answered per "
        "second over every connection, each request's latency (send to reply), and the "
        "daemon's CPU time per request.",
    ),
    "txn": (
        "Transactions, {n} client{s}, {keys} (`txn{n}{k}`)",
        "{n} connection{s} each repeat a read-modify-write transaction (TRANSACTION_START, "
        "READ a counter, WRITE it + 1, TRANSACTION_END T), retried on EAGAIN, on {keys}. "
        "Commits per second, EAGAIN in % of the attempts, the latency of one increment "
        "(its first START to its successful END, retries included), the daemon's CPU per "
        "commit; at the end the counters are read back and must hold every acknowledged "
        "increment (`lost` must be 0: otherwise the run says LOST UPDATES and fails).",
    ),
    "scale": (
        "Xen-host-shaped store (`scale`, D = {n} domains)",
        "{n} domains of 62 nodes each (/local/domain/N: name, memory, cpu, control, "
        "console, device/vif/0, device/vbd/51712; backends under "
        "/local/domain/0/backend/vif|vbd/N), written one request at a time.",
    ),
}

_STATS = {
    "ops": "throughput",
    "p50": "latency p50",
    "p99": "latency p99",
    "cpu": "daemon CPU per request",
    "ns_per_req": "wall time per request",
    "cpu_ns_per_req": "daemon CPU per request",
    "last_us": "until the last watcher has its event",
    "commits": "commits",
    "cpu_per_commit": "daemon CPU per commit",
    "eagain_pct": "EAGAIN, % of the attempts",
    "lost": "lost updates (must be 0)",
    "populate_s": "populate (62 WRITEs per domain)",
    "populated_domains": "domains populated within the time budget",
    "write_first10_us": "WRITE, first 10% of the domains",
    "write_last10_us": "WRITE, last 10% of the domains",
    "rss_mib": "daemon RSS (VmRSS), store populated",
    "read_p50_us": "READ p50 (a random domain's name)",
    "list_ms": "list /local/domain",
    "list_requests": "requests per listing (> 1: DIRECTORY_PART)",
    "empty_txn_us": "empty transaction (START, END)",
    "create_txn_ms": "create one more domain in one transaction",
    "rm_domain_us": "remove one domain (3 RMs)",
    "teardown_s": "teardown: remove every domain",
}

_UNITS = {"us": "µs"}

#: txnN's suffix: which counters its clients increment.
_TXN_KEYS = {"d": "disjoint counters (one each)", "s": "one shared counter"}


def cost_ratio(ours: float | None, ref: float | None, better: str) -> float | None:
    """How many times ours costs what the reference costs: < 1 ours better, > 1 worse."""
    if ours is None or ref is None or better == "info" or not ours or not ref:
        return None
    return ours / ref if better == "lo" else ref / ours


def summarise(metrics: dict[str, dict[str, Any]], labels: list[str]) -> None:
    """Add medians and ratios (ours against each reference) to every metric, in place."""
    for m in metrics.values():
        m["median"] = {lab: statistics.median(vals) for lab, vals in m["values"].items() if vals}
        m["ratio"] = {}
        for ref in REFERENCES:
            if "ours" in labels and ref in labels:
                r = cost_ratio(m["median"].get("ours"), m["median"].get(ref), m["better"])
                m["ratio"][f"ours/{ref}"] = r


def fmt(v: float | None) -> str:
    """Three significant figures, no exponent for ordinary sizes."""
    if v is None:
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.1:
        return f"{v:.3f}"
    return f"{v:.3g}"


def _noisy(values: list[float] | None) -> str:
    """A mark for a figure whose repetitions spread over more than half its median."""
    if not values or len(values) < 2:
        return ""
    med = statistics.median(values)
    return " †" if med and (max(values) - min(values)) > 0.5 * abs(med) else ""


def _label(name: str) -> str:
    parts = name.split(".")
    stat = _STATS.get(parts[-1], parts[-1])
    return f"{parts[1].upper()} {stat}" if len(parts) == 3 else stat


def _metric_table(metrics: dict[str, dict[str, Any]], names: list[str], labels: list[str]) -> str:
    refs = [r for r in REFERENCES if r in labels and "ours" in labels]
    head = ["metric", "unit", "better", *labels, *(f"ours/{r}" for r in refs)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        m = metrics[name]
        better = {"lo": "lower", "hi": "higher"}.get(m["better"], "info")
        cells = [_label(name), _UNITS.get(m["unit"], m["unit"]), better]
        cut = m.get("cut", [])
        cells += [
            fmt(m["median"].get(lab)) + _noisy(m["values"].get(lab)) + (" ‡" if lab in cut else "")
            for lab in labels
        ]
        cells += [
            fmt(m["ratio"].get(f"ours/{r}")) + (" ‡" if {"ours", r} & set(cut) else "")
            for r in refs
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _sections(metrics: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Metric names grouped by workload id (lat, pipe128, ...), in the order they ran."""
    groups: dict[str, list[str]] = {}
    for name in metrics:
        groups.setdefault(name.split(".")[0], []).append(name)
    return groups


def _header(run: dict[str, Any]) -> list[str]:
    mach, s = run["machine"], run["settings"]
    pin = f"CPU {s['pin']} (generator and daemon share it)" if s["pin"] is not None else "none"
    out = [
        "# XenStore daemons compared: pyxenstored (ours), cxenstored, oxenstored",
        "",
        f"- {mach['date']}; {mach['cpus']} CPUs ({mach['cpu']}), Linux {mach['kernel']}, "
        f"load average {mach['loadavg_start']} at the start, {mach['loadavg_end']} at the end",
        f"- this tree at commit {mach['commit']} (core: {mach.get('core', 'pure Python')}); "
        f"Python {mach['python']}",
        f"- {s['reps']} repetitions, {s['seconds']} s per timed loop, pinning: {pin}; "
        f"the suite took {run['seconds']:.0f} s",
    ]
    for lab, d in run["daemons"].items():
        if "skipped" in d:
            out.append(f"- **{lab}: skipped**: {d['skipped']}")
        else:
            out.append(f"- {lab}: {d['describe']} (pid {d['pid']})")
    out += [
        "",
        f"**How to read.** Each figure is the median of {s['reps']} repetition(s); the daemons "
        "ran interleaved (A B C, the order rotated every repetition), so they shared the "
        "same machine conditions. The ratio columns compare **costs**: ours ÷ reference for "
        "times, CPU and memory, reference ÷ ours for throughput (ops/s). In every ratio "
        "column **below 1 means ours is better** (cheaper, faster) and **above 1 means ours "
        "is worse**: 2.00 means ours costs twice as much. The machine is shared and noisy: "
        "compare ratios within one run, not absolute figures across runs. † marks a figure "
        "whose repetitions spread over more than half of its median (max - min > median / 2): "
        "read its ratio with care.",
    ]
    return out


def _startup(st: dict[str, Any]) -> list[str]:
    out = ["", "## Start-up", ""]
    clients = st.get("clients")
    if clients:
        med = clients["medians_ms"]
        c_ref = next((v for k, v in med.items() if k.startswith("Debian")), None)
        out += [
            f"Reading one node of our daemon, end to end (median of {clients['runs']} runs, "
            "interleaved). The ratio is the client's time ÷ Debian's C xenstore-read "
            "(below 1: ours faster).",
            "",
            "| client | median ms | ÷ Debian's C xenstore-read |",
            "|---|---|---|",
        ]
        for name, v in med.items():
            out.append(f"| {name} | {fmt(v)} | {fmt(v / c_ref) if c_ref else 'n/a'} |")
        out += [f"\n- {note}" for note in clients["notes"]]
    ready = st.get("daemon_ready_ms")
    if ready:
        out += [
            "",
            f"pyxenstored from exec to ready (its pid printed with `-P`, the socket "
            f"listening): median **{fmt(statistics.median(ready))} ms** over {len(ready)} starts "
            f"(min {fmt(min(ready))}, max {fmt(max(ready))}).",
        ]
    return out


def markdown(run: dict[str, Any]) -> str:
    """The whole report."""
    labels = [lab for lab, d in run["daemons"].items() if "skipped" not in d]
    out = _header(run)
    for wid, names in _sections(run["metrics"]).items():
        kind, n, k = re.fullmatch(r"([a-z]+)(\d*)([a-z]?)", wid).groups()  # type: ignore[union-attr]
        title, text = _TITLES.get(kind, (wid, ""))
        keys = _TXN_KEYS.get(k, "")
        fields = {"n": n, "k": k, "keys": keys, "s": "" if n == "1" else "s"}
        out += ["", f"## {title.format(**fields)}", "", text.format(**fields), ""]
        if kind == "scale" and int(n) > run["settings"]["phased_above"]:
            out[-2] += (
                " Each daemon was populated once and torn down once (single figures, within "
                f"a budget of {run['settings']['budget']:g} s each); the measurements between "
                "ran interleaved."
            )
        out.append(_metric_table(run["metrics"], names, labels))
    if run.get("startup"):
        out += _startup(run["startup"])
    xs = run.get("xsload")
    if xs:
        out += ["", "## Extended suite (xsload)", ""]
        out.append(xs["note"])
        if xs.get("markdown"):
            # its headings one level down, under ours
            out += ["", re.sub(r"(?m)^#", "##", xs["markdown"].strip())]
    if any(m.get("cut") for m in run["metrics"].values()):
        out += [
            "",
            "‡ Cut short by the time budget (`--budget`): a populate time is a lower bound "
            "(the daemon did not finish, and its other figures of that store are for the "
            "domains it had), a teardown time is extrapolated from the part done. See the notes.",
        ]
    if run["errors"]:
        out += ["", "## Notes and errors", ""]
        out += [f"- {e}" for e in run["errors"]]
    return "\n".join(out) + "\n"
