"""Start-up costs: a client run end to end, and the daemon from exec to ready.

Scripts call xenstore-read and friends in loops, so a client's start-up is most of
its cost. Every client reads the same node of our daemon; the variants run
interleaved, the order rotated every round, and the report takes medians.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time

from bench.daemons import python_env, run_child, short_tempdir, start_ours

DEBIAN_READ = "/usr/bin/xenstore-read"
_PATH = "/bench/startup"
_VALUE = "01234567"


def console_script(python: str) -> str | None:
    """Our installed `xenstore-read` console script, next to the interpreter, if any.

    Looked up beside the interpreter rather than on $PATH, where a version manager's
    shell shim (pyenv) would add its own start-up to ours.
    """
    path = os.path.join(os.path.dirname(python), "xenstore-read")
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError:
        return None
    return path if first.startswith(b"#!") and b"python" in first else None


def client_variants(python: str) -> tuple[dict[str, list[str]], list[str]]:
    """The clients to time (name -> argv) and notes on those left out."""
    variants = {"ours: python -m xenstore.tools.read": [python, "-m", "xenstore.tools.read"]}
    notes = []
    script = console_script(python)
    if script:
        variants["ours: xenstore-read (console script)"] = [script]
    else:
        notes.append(f"no xenstore-read console script next to {python} (package not installed)")
    if os.access(DEBIAN_READ, os.X_OK) and not console_script(DEBIAN_READ):
        variants["Debian: /usr/bin/xenstore-read (C)"] = [DEBIAN_READ]
    else:
        notes.append(f"{DEBIAN_READ} (Debian's xenstore-utils) is not installed: no C baseline")
    variants["baseline: python -c pass"] = [python, "-c", "pass"]
    return variants, notes


def measure_clients(python: str, socket_path: str, runs: int) -> dict[str, object]:
    """Median wall time of each client reading one node, over `runs` interleaved rounds."""
    from xenstore.client import Client

    with Client(socket_path) as xs:
        xs.write(_PATH, _VALUE)
    variants, notes = client_variants(python)
    env = python_env({"XENSTORED_PATH": socket_path})
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # a warm-up run, which also checks the answer
        argv = variants[name] + ([] if name.startswith("baseline") else [_PATH])
        rc, out, err = run_child(argv, 30, env)
        if rc != 0 or (not name.startswith("baseline") and out.strip() != _VALUE):
            notes.append(f"{name}: left out, it answered {rc} {out.strip()!r} {err.strip()!r}")
            del variants[name]
    names = list(variants)
    for i in range(runs):
        for k in range(len(names)):
            name = names[(k + i) % len(names)]
            argv = variants[name] + ([] if name.startswith("baseline") else [_PATH])
            t0 = time.perf_counter()
            run_child(argv, 30, env)
            samples[name].append((time.perf_counter() - t0) * 1e3)
    with Client(socket_path) as xs:
        xs.rm(_PATH)
    return {
        "runs": runs,
        "clients_ms": {name: samples[name] for name in names},
        "medians_ms": {name: statistics.median(samples[name]) for name in names},
        "notes": notes,
    }


def measure_daemon_ready(python: str, runs: int) -> list[float]:
    """Milliseconds from exec of `python -m xenstore.daemon -P` to its pid on stdout."""
    times = []
    for _ in range(runs):
        directory = short_tempdir()
        try:
            daemon = start_ours(python, directory)
            try:
                times.append(daemon.ready_seconds * 1e3)
            finally:
                daemon.stop()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return times


def venv_variants(venvs: list[str]) -> dict[str, list[str]]:
    """Each virtual environment's xenstore-read and bare interpreter, and the C tool.

    Nothing is put on PYTHONPATH: each environment runs the package it has
    installed (a wheel, or an editable install with its import hook).
    """
    variants: dict[str, list[str]] = {}
    for venv in venvs:
        bindir = os.path.join(os.path.abspath(venv), "bin")
        variants[f"{venv}: xenstore-read"] = [os.path.join(bindir, "xenstore-read")]
        variants[f"{venv}: python -c pass"] = [os.path.join(bindir, "python"), "-c", "pass"]
    if os.access(DEBIAN_READ, os.X_OK) and not console_script(DEBIAN_READ):
        variants["C: /usr/bin/xenstore-read"] = [DEBIAN_READ]
    return variants


def compare_venvs(venvs: list[str], runs: int) -> dict[str, float]:
    """Median milliseconds of each variant reading one node of a fresh daemon, interleaved."""
    from xenstore.client import Client

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "XENSTORED_PATH", "XENSTORED_RUNDIR")}
    directory = short_tempdir()
    # The daemon of the last environment given (a wheel's, say), as installed there.
    python = os.path.join(os.path.abspath(venvs[-1]), "bin", "python")
    daemon = start_ours(python, directory, env=env)
    try:
        with Client(daemon.socket_path) as xs:
            xs.write(_PATH, _VALUE)
        env["XENSTORED_PATH"] = daemon.socket_path
        variants = venv_variants(venvs)
        names = list(variants)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for i in range(runs + 1):  # round 0 warms the caches and checks the answers
            for k in range(len(names)):
                name = names[(k + i) % len(names)]
                argv = variants[name] + ([] if "-c" in variants[name] else [_PATH])
                t0 = time.perf_counter()
                rc, out, err = run_child(argv, 30, env)
                elapsed = (time.perf_counter() - t0) * 1e3
                if i == 0:
                    wanted = "" if "-c" in argv else _VALUE
                    if rc != 0 or out.strip() != wanted:
                        raise RuntimeError(f"{name}: {rc} {out!r} {err!r}")
                    continue
                samples[name].append(elapsed)
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    """``python3 -m bench.startup --venv .venv --venv /tmp/wheel-venv [--runs 20]``."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--venv", action="append", required=True,
                   help="a virtual environment with the package installed (repeatable)")
    p.add_argument("--runs", type=int, default=20, help="runs of each variant (default 20)")
    args = p.parse_args(argv)
    medians = compare_venvs(args.venv, args.runs)
    width = max(map(len, medians))
    for name, ms in medians.items():
        ratio = ""
        if name.endswith("xenstore-read") and not name.startswith("C:"):
            bare = medians.get(name.replace("xenstore-read", "python -c pass"))
            ratio = f"  {ms / bare:.2f}x its python -c pass" if bare else ""
        print(f"{name:<{width}}  {ms:7.2f} ms{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
