"""The README's live-update session (issue 15), run as a reader runs it.

The ``sh`` block after the ``live-update-session`` comment in README.md's
``### Live update`` runs in bash with two substitutions: this interpreter for
``$PWD/.venv/bin/python`` (with the repository on ``PYTHONPATH``, as a clone's
root gives it) and a fresh short directory for ``$(mktemp -d)``. cxenstored 4.17
under the launcher goes into our daemon and back while one Debian
``xenstore-watch`` stays connected; what the block prints shows which daemon
served each write (the daemon's ``/proc/PID/comm``), the watch's events, and
that the watch is still the same live process at the end.

The block stops what it started (``kill $WATCH $LAUNCHER; wait``); if it fails
or hangs, the test stops those two by their PIDs (written by an EXIT trap put
before the block), and the daemon by its PID if the launcher could not.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import short_tempdir
from xsref import launcher

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MARK = "<!-- live-update-session: run by tests/reference/test_live_update_readme.py -->"
C_TOOLS = ("/usr/bin/xenstore-watch", "/usr/bin/xenstore-write",
           os.path.join(launcher.XEN_BIN_DIR, "xenstore-control"))
#: The block's line that names the reader's clone and directory (replaced whole).
LOCAL_LINE = "PY=$PWD/.venv/bin/python D=$(mktemp -d)"
TIMEOUT = 30.0


def session() -> str:
    """The fenced block right after the marker."""
    text = README.read_text()
    assert text.count(MARK) == 1, "the README must mark exactly one live-update session"
    found = re.match(r"\n```sh\n(.*?)```\n", text[text.index(MARK) + len(MARK):], re.S)
    assert found, "the marker must be followed by a ```sh block"
    return found.group(1)


def require_reference() -> None:
    try:
        launcher.check_available("c")
        missing = [tool for tool in C_TOOLS if not os.access(tool, os.X_OK)]
        if missing:
            raise launcher.ReferenceUnavailable(
                f"{', '.join(missing)} missing: install xenstore-utils and xen-utils-4.17")
    except launcher.ReferenceUnavailable as exc:
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"reference daemon required but unavailable: {exc}")
        pytest.skip(f"reference daemon unavailable: {exc}")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, which only waits for its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop(pid: int, grace: float = 5.0) -> bool:
    """SIGTERM to ``pid`` if it runs, SIGKILL after ``grace``; False if it needed that."""
    if not _alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return False


def test_readme_live_update_session_runs() -> None:
    require_reference()
    block = session()
    assert block.count(LOCAL_LINE) == 1, f"the block must begin with {LOCAL_LINE!r}"
    directory = Path(short_tempdir("xsrm"))
    script = block.replace(
        LOCAL_LINE, f"PY={shlex.quote(sys.executable)} D={shlex.quote(str(directory))}")
    pids = directory / "pids"
    script = (f"trap 'echo \"launcher=$LAUNCHER watch=$WATCH\" > {shlex.quote(str(pids))}' EXIT\n"
              + script)
    env = {name: value for name, value in os.environ.items()
           if name not in ("XENSTORED_PATH", "XENSTORED_RUNDIR", "LD_PRELOAD")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out_path, err_path = directory / "out", directory / "err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # Files, not pipes: a background job left running must not hold up the test.
        shell = subprocess.Popen(["bash", "-c", script], cwd=REPO, env=env,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 start_new_session=True)
    clean = False
    try:
        try:
            status = shell.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            shell.terminate()  # bash runs the EXIT trap, so the PIDs are known
            try:
                shell.wait(5)
            except subprocess.TimeoutExpired:
                shell.kill()
                shell.wait()
            pytest.fail(f"the session did not end within {TIMEOUT:g} s: "
                        f"{out_path.read_text()!r} {err_path.read_text()!r}")
        printed, said = out_path.read_text(), err_path.read_text()
        assert status == 0, printed + said
        lines = printed.splitlines()
        assert len(lines) == 8, printed + said
        served_by, events, watch = lines[:3], lines[3:7], lines[7]
        # The daemon's one PID: cxenstored, then ours (python), then cxenstored again.
        assert served_by[0] == "xenstored", printed
        assert served_by[1].startswith("python"), printed
        assert served_by[2] == "xenstored", printed
        # The watch fired once on being set (no second registration: no reconnection),
        # then once for each write, in order, whoever served it.
        assert events == ["/demo", "/demo/1", "/demo/2", "/demo/3"], printed
        assert watch == "xenstore-watch", printed  # the process started first, still running
        # Nothing else on stderr (no failed command, no daemon dying) but the launcher's goodbye.
        assert said.strip() == "stopped cxenstored", said
        # Ours, for its part, handed cxenstored the watch's connection and the control tool's.
        log = (directory / launcher.STATE_DIRNAME / "stderr").read_text()
        assert f"live update: 2 connection(s) to {directory}/to-c.sh -N -P -U" in log, log
        clean = True  # the block's own `wait` saw both jobs end
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
        if not clean:
            _stop_leftovers(directory, pids)
        shutil.rmtree(directory, ignore_errors=True)


def _stop_leftovers(directory: Path, pids: Path) -> None:
    """Stop by PID what the block started and may have left running."""
    started = dict(re.findall(r"(\w+)=(\d+)", pids.read_text())) if pids.exists() else {}
    if "watch" in started:
        _stop(int(started["watch"]))
    if "launcher" in started and not _stop(int(started["launcher"])):
        # Killed before it could stop its daemon, which runs in a session of its own.
        said = (directory / "launcher").read_text() if (directory / "launcher").exists() else ""
        daemon = re.search(r"\(pid (\d+)\)", said)
        if daemon:
            _stop(int(daemon.group(1)), grace=0)
