"""The atheris harness runs for a fixed budget and finds nothing.

``XS_ATHERIS_SECONDS`` sets the budget (CI: the default, one minute). Without
atheris (it has wheels for CPython on x86-64 Linux only) the test skips with
the reason, unless ``XS_REQUIRE_REFERENCE=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("XS_ATHERIS_SECONDS", "60"))

#: A few starting inputs: libFuzzer grows the corpus from them.
SEEDS = [bytes(32), b"\x01" * 64, bytes(range(256)), b"\xff\x00" * 80]


def require_atheris() -> None:
    if importlib.util.find_spec("atheris") is None:
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail("atheris is required (XS_REQUIRE_REFERENCE=1) but not installed")
        pytest.skip("atheris is not installed (pip install atheris; x86-64 Linux wheels only)")


def run_harness(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # As fuzz/README.md runs it (python -m fuzz.core_atheris from the root), but
    # in a scratch directory: libFuzzer writes its files to the current one.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run(
        [sys.executable, "-m", "fuzz.core_atheris", "-rss_limit_mb=2048",
         f"-artifact_prefix={tmp_path}/", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_atheris_harness_runs_its_budget_clean(tmp_path: Path) -> None:
    require_atheris()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(SEEDS):
        (corpus / f"seed-{index}").write_bytes(seed)
    done = run_harness(
        tmp_path, f"-max_total_time={SECONDS}", str(corpus), timeout=SECONDS + 50
    )
    assert done.returncode == 0, done.stderr[-4000:]
    runs = re.search(r"^Done (\d+) runs in", done.stderr, re.MULTILINE)
    assert runs is not None, done.stderr[-4000:]
    assert int(runs.group(1)) > len(SEEDS)
    assert not list(tmp_path.glob("crash-*"))


def test_a_crash_file_replays(tmp_path: Path) -> None:
    """Given files instead of a corpus directory, the harness runs each input once."""
    require_atheris()
    crash = tmp_path / "input"
    crash.write_bytes(bytes(range(256)))
    done = run_harness(tmp_path, str(crash), timeout=60)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"Running: {crash}" in done.stderr
