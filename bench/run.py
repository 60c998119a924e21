#!/usr/bin/env python3
"""Benchmark pyxenstored against Xen's C xenstored and oxenstored, in one run.

    sudo python3 -m bench.run [-r N] [-t SECS] [--only LIST] [--domains D] [--xsload DIR]

(from the repository's root: ``bench`` is a package there, as is ``xsref``, the
reference daemons' launcher; neither is installed with ``xenstore``.)

Starts the three daemons, runs each workload against each of them interleaved
(A B C, the order rotated every repetition), and writes a Markdown report of
medians and cost ratios (ours/cxenstored, ours/oxenstored) to stdout and a file,
with every sample in JSON beside it. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from bench import reporting, startup
from bench.daemons import (
    REFERENCE_KINDS,
    Daemon,
    Processes,
    pinned,
    raise_fd_limit,
    run_child,
    short_tempdir,
    start_ours,
    start_reference,
)
from xenstore import compiled
from xsref import launcher

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
XSBENCH_SRC = os.path.join(BENCH_DIR, "xsbench.c")
DEFAULT_WORKLOADS = "lat,tput8,tput64,txn8d,pipe128,idle1000,watch1000,scale,startup"
#: Above this many domains, each daemon is populated once, measured -r times
#: interleaved, and torn down once (populating takes minutes); below, every
#: repetition populates, measures and tears down.
PHASED_ABOVE = 2000
#: xsbench's exit status when a txn workload finds committed increments missing.
LOST_UPDATES = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("-r", "--reps", type=int, default=5, help="repetitions (default 5)")
    p.add_argument(
        "-t",
        "--seconds",
        type=float,
        default=0.5,
        help="length of each timed loop in seconds (default 0.5)",
    )
    p.add_argument(
        "--only",
        help="workloads to run, comma-separated (default "
        f"{DEFAULT_WORKLOADS});\nalso pipeK, idleN, watchN, tputN, txnNd, txnNs, scaleD",
    )
    p.add_argument(
        "--domains",
        type=int,
        default=1000,
        help="D for the scale workload (default 1000; 10000 for the big one)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=240,
        help="seconds allowed for each populate and teardown (default 240)",
    )
    p.add_argument(
        "--daemons",
        default="ours,cxenstored,oxenstored",
        help="which daemons to run (default ours,cxenstored,oxenstored)",
    )
    p.add_argument(
        "--pin",
        default="last",
        help="CPU shared by the load generator and the daemon during each\n"
        "measurement; 'none' leaves placement to the scheduler (default: the last CPU)",
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter for our daemon and clients (default: this one)",
    )
    p.add_argument(
        "--startup-runs",
        type=int,
        default=30,
        help="runs of each client in the start-up measurement (default 30)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=os.path.join(BENCH_DIR, "results", "report.md"),
        help="Markdown report (default bench/results/report.md)",
    )
    p.add_argument("--json", help="JSON with every sample (default: the report's name, .json)")
    p.add_argument(
        "--xsload",
        metavar="DIR",
        help="also run the xsload suite in DIR (DIR/run.sh) against the same daemons",
    )
    p.add_argument(
        "--xsload-only",
        metavar="LIST",
        help="xsload scenarios (default: those of --only, else its whole suite)",
    )
    return p.parse_args(argv)


def xsbench_args(wid: str, domains: int) -> list[str] | None:
    """The xsbench command line of a workload id (None for 'startup'); ValueError if unknown."""
    if wid == "lat":
        return ["lat"]
    if wid == "startup":
        return None
    if wid == "scale":
        return ["scale", str(domains)]
    m = re.fullmatch(r"(pipe|idle|watch|tput|scale)([1-9]\d*)", wid)
    if m:
        return [m[1], m[2]]
    m = re.fullmatch(r"txn([1-9]\d*)([ds])", wid)  # d: disjoint counters, s: one shared
    if m:
        return ["txn", m[1], m[2]]
    raise ValueError(
        f"unknown workload {wid!r}: use lat, pipeK, idleN, watchN, tputN, txnNd, txnNs, "
        "scale, startup"
    )


def pin_cpu(spec: str) -> int | None:
    if spec == "none":
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if spec == "last" else int(spec)
    if cpu not in allowed:
        raise SystemExit(f"--pin {spec}: CPU {cpu} is not available to this process ({allowed})")
    return cpu


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        commit = (
            subprocess.run(
                ["git", "-C", os.path.dirname(BENCH_DIR), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or "unknown"
        )
    except OSError:
        commit = "unknown"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
        "core": compiled.describe(),  # pure Python, or compiled (scripts/compile)
        "loadavg_start": loadavg(),
    }


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def start_daemons(args: argparse.Namespace, procs: Processes, run: dict[str, Any]) -> list[Daemon]:
    """Start the daemons asked for; a reference that cannot run here is skipped, with why."""
    daemons = []
    for label in args.daemons.split(","):
        directory = short_tempdir()
        procs.callback(shutil.rmtree, directory, True)  # after the daemon stops (LIFO)
        try:
            if label == "ours":
                d = start_ours(args.python, directory)
            elif label in REFERENCE_KINDS:
                d = start_reference(label, directory)
            else:
                raise SystemExit(f"--daemons: unknown daemon {label!r}")
        except (launcher.ReferenceUnavailable, launcher.ReferenceStartError) as exc:
            print(f"bench: skipping {label}: {exc}", file=sys.stderr)
            run["daemons"][label] = {"skipped": str(exc).replace("\n", " ")[:500]}
            continue
        except RuntimeError as exc:  # ours: no point going on without it
            raise SystemExit(f"bench: {label} did not start: {exc}") from None
        procs.callback(d.stop)
        print(f"bench: {label} ready on {d.socket_path} (pid {d.pid})", file=sys.stderr)
        run["daemons"][label] = {"describe": d.describe, "pid": d.pid, "socket": d.socket_path}
        daemons.append(d)
    return daemons


def compile_xsbench(build_dir: str) -> str | None:
    """Build xsbench.c with the C compiler; None (and a message) if there is none."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print(
            "bench: no C compiler (cc or gcc) on this machine: the xsbench workloads "
            "are skipped; install gcc to run them",
            file=sys.stderr,
        )
        return None
    binary = os.path.join(build_dir, "xsbench")
    result = subprocess.run(
        [cc, "-O2", "-Wall", "-o", binary, XSBENCH_SRC], capture_output=True, text=True
    )
    if result.returncode != 0:
        print(f"bench: compiling xsbench.c failed:\n{result.stderr}", file=sys.stderr)
        return None
    if result.stderr.strip():
        print(f"bench: warnings compiling xsbench.c:\n{result.stderr}", file=sys.stderr)
    return binary


class Suite:
    """Runs xsbench workloads against the daemons and records every sample."""

    def __init__(
        self,
        args: argparse.Namespace,
        binary: str,
        cpu: int | None,
        daemons: list[Daemon],
        run: dict[str, Any],
    ) -> None:
        self.args, self.binary, self.cpu, self.daemons, self.run = args, binary, cpu, daemons, run
        self.labels = [d.label for d in daemons]

    def one(self, d: Daemon, wid: str, wargs: list[str], rep: int, timeout: float) -> None:
        print(f"  rep {rep}  {d.label:<10} {wid} {' '.join(wargs[2:])}", file=sys.stderr)
        argv = [
            self.binary,
            "-t",
            str(self.args.seconds),
            "-p",
            str(d.pid),
            "-B",
            str(self.args.budget),
            "-s",
            str(rep),
            d.socket_path,
            *wargs,
        ]
        with pinned(d.pid, self.cpu):
            rc, out, err = run_child(argv, timeout, cpu=self.cpu)
        for line in out.splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                self.run["errors"].append(f"{d.label}, {wid}: unreadable output {line[:200]!r}")
                continue
            m = self.run["metrics"].setdefault(
                r["m"], {"unit": r["u"], "better": r["b"], "values": {x: [] for x in self.labels}}
            )
            m["values"][d.label].append(r["v"])
            if r.get("cut"):  # cut short by the time budget
                m.setdefault("cut", []).append(d.label)
        err = err.strip()
        if rc == LOST_UPDATES:
            # Not a figure to average away: a daemon lost (or invented) committed updates.
            msg = f"{d.label}, {wid}, repetition {rep}: LOST UPDATES: {err[-500:]}"
            print(f"bench: *** {msg}", file=sys.stderr)
            self.run["errors"].insert(0, f"**{msg}**")
        elif rc != 0:
            what = "timed out" if rc == 124 else f"exit status {rc}"
            self.run["errors"].append(f"{d.label}, {wid}, repetition {rep}: {what}: {err[-500:]}")
        elif err:
            self.run["errors"].append(f"{d.label}, {wid}, repetition {rep}: {err[-500:]}")

    def interleaved(self, wid: str, wargs: list[str], rep: int, timeout: float) -> None:
        n = len(self.daemons)
        for j in range(n):
            self.one(self.daemons[(j + rep - 1) % n], wid, wargs, rep, timeout)

    def run_all(self, workloads: list[tuple[str, list[str]]]) -> None:
        a = self.args
        phased = [(w, x) for w, x in workloads if x[0] == "scale" and int(x[1]) > PHASED_ABOVE]
        quick = [(w, x) for w, x in workloads if (w, x) not in phased]
        for rep in range(1, a.reps + 1):
            print(f"bench: repetition {rep}/{a.reps}", file=sys.stderr)
            for wid, wargs in quick:
                slow = wargs[0] == "scale"
                timeout = 2 * a.budget + 300 if slow else 60 + 20 * a.seconds
                self.interleaved(wid, wargs, rep, timeout)
        for wid, wargs in phased:
            print(
                f"bench: {wid} at D={wargs[1]}: populate each daemon once "
                f"(budget {a.budget:g} s), measure {a.reps} times, tear down",
                file=sys.stderr,
            )
            for d in self.daemons:
                self.one(d, wid, [*wargs, "populate"], 1, a.budget + 300)
            for rep in range(1, a.reps + 1):
                self.interleaved(wid, [*wargs, "measure"], rep, 900)
            for d in self.daemons:
                self.one(d, wid, [*wargs, "teardown"], 1, a.budget + 300)


def xsload_only(args: argparse.Namespace) -> tuple[str | None, bool]:
    """The --only list for xsload's run.sh (None: its whole suite) and whether to add --big."""
    if args.xsload_only:
        return args.xsload_only, args.domains >= 10000
    if not args.only:
        return None, args.domains >= 10000
    ids, big = [], False
    for wid in args.only.split(","):
        if wid == "scale" and args.domains >= 10000:
            big = True  # run.sh's --big is its D=10000 step
        elif wid == "scale":
            ids.append(f"scale{args.domains}")
        elif wid != "startup":
            ids.append(wid)
    if big and not ids:
        # an empty --only is run.sh's whole suite: add its smaller store instead
        ids.append("scale1000")
    return ",".join(ids), big


def run_xsload(
    args: argparse.Namespace, daemons: list[Daemon], tmp: str, cpu: int | None, run: dict[str, Any]
) -> None:
    """Run DIR/run.sh against our sockets and keep its report (Markdown and JSON)."""
    script = os.path.join(os.path.abspath(args.xsload), "run.sh")
    if not os.access(script, os.X_OK):
        run["errors"].append(f"--xsload {args.xsload}: no executable run.sh there")
        return
    only, big = xsload_only(args)
    if only == "":
        return
    json_path = os.path.join(tmp, "xsload.json")
    argv = [
        script,
        "-r",
        str(args.reps),
        "-t",
        str(args.seconds),
        "-j",
        json_path,
        "--budget",
        str(int(args.budget)),
        "--pin",
        "none" if cpu is None else str(cpu),
    ]
    labels = [d.label for d in daemons]
    for ref in reporting.REFERENCES:
        if "ours" in labels and ref in labels:
            argv += ["-x", f"ours/{ref}"]
    if only:
        argv += ["--only", only]
    if big:
        argv.append("--big")
    argv += [f"{d.label}={d.socket_path}" for d in daemons]
    env = dict(os.environ, XSLOAD_BUILD=os.path.join(tmp, "xsload-build"))
    print(f"bench: xsload: {' '.join(argv[1:])}", file=sys.stderr)
    t0 = time.monotonic()
    rc, out, _ = run_child(argv, 24 * 3600, env, stderr_to=sys.stderr.fileno())
    data = None
    if os.path.exists(json_path):
        with open(json_path) as f:
            data = json.load(f)
    shown = " ".join(argv[1:]).replace(json_path, "…")
    for d in daemons:
        shown = shown.replace(d.socket_path, "…")
    run["xsload"] = {
        "rc": rc,
        "seconds": time.monotonic() - t0,
        "markdown": out,
        "json": data,
        "note": f"xsload's run.sh `{shown}` (exit status {rc}, {time.monotonic() - t0:.0f} s) "
        "on the same daemons: its report follows. Its ratio columns ours/… are costs too "
        "(below 1: ours better).",
    }
    if rc != 0:
        run["errors"].append(f"xsload's run.sh exited with status {rc}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wids = (args.only or DEFAULT_WORKLOADS).split(",")
    try:
        workloads = [(w, a) for w in wids if (a := xsbench_args(w, args.domains)) is not None]
    except ValueError as exc:
        raise SystemExit(f"--only: {exc}") from None
    cpu = pin_cpu(args.pin)
    raise_fd_limit()
    json_path = args.json or os.path.splitext(args.output)[0] + ".json"
    run: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "reps": args.reps,
            "seconds": args.seconds,
            "pin": cpu,
            "phased_above": PHASED_ABOVE,
            "domains": args.domains,
            "budget": args.budget,
            "workloads": wids,
        },
        "daemons": {},
        "metrics": {},
        "errors": [],
        "startup": {},
    }
    t0 = time.monotonic()
    try:
        with Processes() as procs:
            tmp = short_tempdir()
            procs.callback(shutil.rmtree, tmp, True)
            daemons = start_daemons(args, procs, run)
            if not daemons:
                raise SystemExit("bench: no daemon could be started")
            binary = compile_xsbench(tmp) if workloads else None
            if binary:
                Suite(args, binary, cpu, daemons, run).run_all(workloads)
            ours = next((d for d in daemons if d.label == "ours"), None)
            if "startup" in wids and ours:
                print("bench: start-up", file=sys.stderr)
                run["startup"]["clients"] = startup.measure_clients(
                    args.python, ours.socket_path, args.startup_runs
                )
                run["startup"]["daemon_ready_ms"] = startup.measure_daemon_ready(
                    args.python, max(5, args.startup_runs // 3)
                )
            if args.xsload:
                run_xsload(args, daemons, tmp, cpu, run)
    except KeyboardInterrupt:
        print("bench: interrupted; every daemon was stopped", file=sys.stderr)
        run["errors"].append("interrupted: the figures are partial")
    run["seconds"] = time.monotonic() - t0
    run["machine"]["loadavg_end"] = loadavg()
    running = [lab for lab, d in run["daemons"].items() if "skipped" not in d]
    reporting.summarise(run["metrics"], running)
    text = reporting.markdown(run)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    with open(json_path, "w") as f:
        json.dump(run, f, indent=1)
    sys.stdout.write(text)
    print(f"bench: report in {args.output}, samples in {json_path}", file=sys.stderr)
    if any("LOST UPDATES" in e for e in run["errors"]):
        print("bench: *** a daemon lost committed updates: see the report's notes", file=sys.stderr)
        return LOST_UPDATES
    return 130 if "interrupted: the figures are partial" in run["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
