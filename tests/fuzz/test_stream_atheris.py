"""The migration stream's atheris harness runs clean on its seeds, and its oracle works.

``XS_STREAM_ATHERIS_RUNS`` sets the budget (default 20000 inputs, a few seconds).
Without atheris the harness test skips with the reason, unless
``XS_REQUIRE_REFERENCE=1`` (CI), where that is a failure (as for the core harness).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.stream_check import CXENSTORED_DUMP, Finding, check, seeds
from tests.fuzz.test_atheris_budget import require_atheris
from xenstore.migration import GlobalData, NodeData, NodePerm, RingConnection, write

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("XS_STREAM_ATHERIS_RUNS", "20000"))


def run_harness(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # As fuzz/README.md runs it (python fuzz/stream_atheris.py), in a scratch
    # directory: libFuzzer writes its files to the current one.
    return subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "stream_atheris.py"), "-rss_limit_mb=2048",
         "-timeout=10", f"-artifact_prefix={tmp_path}/", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
    )


def test_the_seeds_are_real_streams_that_pass() -> None:
    made = seeds()
    assert len(made) == 4 if CXENSTORED_DUMP.exists() else 3
    for seed in made:
        check(seed)


def test_the_oracle_accepts_errors_and_reports_a_broken_restore(
        monkeypatch: pytest.MonkeyPatch) -> None:
    check(b"")
    check(b"xenstore" + bytes(100))
    good = write([GlobalData(), RingConnection(1, 0, 0), NodeData(b"/", b"", (NodePerm("n", 0),))])
    check(good)

    def broken(data: bytes) -> object:
        raise KeyError("/")

    monkeypatch.setattr("fuzz.stream_check.server_from", broken)
    with pytest.raises(Finding):
        check(good)


def test_the_stream_harness_runs_its_budget_clean(tmp_path: Path) -> None:
    require_atheris()
    corpus = tmp_path / "corpus"
    made = run_harness(tmp_path, "--seeds", str(corpus), timeout=60)
    assert made.returncode == 0, made.stderr[-4000:]
    done = run_harness(tmp_path, f"-runs={RUNS}", "-max_total_time=60", str(corpus),
                       timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    runs = re.search(r"^Done (\d+) runs in", done.stderr, re.MULTILINE)
    assert runs is not None, done.stderr[-4000:]
    assert int(runs.group(1)) > len(seeds())
    assert not list(tmp_path.glob("crash-*"))
    assert not list(tmp_path.glob("timeout-*"))


def test_a_stream_crash_file_replays(tmp_path: Path) -> None:
    require_atheris()
    crash = tmp_path / "input"
    crash.write_bytes(seeds()[0])
    done = run_harness(tmp_path, str(crash), timeout=60)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"Running: {crash}" in done.stderr
