"""The scripted session: Debian's C tools and ours, on our daemon and on cxenstored.

The transcript of Debian's C tools against the reference C daemon is the oracle;
the other three pairings must reproduce it byte for byte (stdout, stderr, exit
status of every step).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import OurDaemon, reference_daemon
from tests.interop.session import STEPS

C_TOOLS = Path("/usr/bin")
OUR_TOOLS = Path(sys.executable).parent

Step = tuple[str | bytes, ...]
Transcript = list[tuple[Step, int, bytes, bytes]]


def c_tools_available() -> None:
    if not (C_TOOLS / "xenstore-ls").exists():
        reason = "Debian's xenstore-utils is not installed (apt install xenstore-utils)"
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def tool_path(tools: Path, step: Step) -> tuple[Path, list[str | bytes]]:
    name, *args = step
    assert isinstance(name, str)
    program = tools / ("xenstore" if name == "xenstore" else f"xenstore-{name}")
    return program, args


def run_session(tools: Path, socket_path: str) -> Transcript:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "XENSTORED_PATH": socket_path,
           "LC_ALL": "C"}
    transcript: Transcript = []
    for step in STEPS:
        program, args = tool_path(tools, step)
        assert program.exists(), f"{program} missing"
        proc = subprocess.run(
            [str(program), *(os.fsencode(a) for a in args)],
            capture_output=True, env=env, timeout=30,
        )
        # Usage texts print argv[0]: the same program at a different path.
        shown = os.fsencode(str(program))
        name = os.fsencode(program.name)
        transcript.append((
            step,
            proc.returncode,
            proc.stdout.replace(shown, name),
            proc.stderr.replace(shown, name),
        ))
    return transcript


def differences(expected: Transcript, got: Transcript) -> list[str]:
    out = []
    for (step, rc, so, se), (_, rc2, so2, se2) in zip(expected, got, strict=True):
        if (rc, so, se) != (rc2, so2, se2):
            out.append(
                f"{step!r:.80}:\n  expected rc={rc} out={so[:300]!r} err={se[:200]!r}"
                f"\n  got      rc={rc2} out={so2[:300]!r} err={se2[:200]!r}"
            )
    return out


@pytest.fixture(scope="module")
def oracle() -> Iterator[Transcript]:
    """Debian's C tools against Xen's C xenstored."""
    c_tools_available()
    for ref in reference_daemon("c"):
        yield run_session(C_TOOLS, ref.socket_path)


def test_session_is_long_and_varied(oracle: Transcript) -> None:
    assert len(STEPS) >= 40
    assert {step[0] for step in STEPS} >= {"ls", "read", "write", "list", "rm", "exists",
                                           "chmod", "xenstore"}
    # The oracle itself exercises failures as well as successes.
    assert {rc for _, rc, _, _ in oracle} >= {0, 1}


@pytest.mark.parametrize(
    ("tools", "daemon"),
    [("c", "ours"), ("ours", "cxenstored"), ("ours", "ours")],
)
def test_session_matches_c_tools_on_cxenstored(oracle: Transcript, tools: str,
                                               daemon: str) -> None:
    tool_dir = C_TOOLS if tools == "c" else OUR_TOOLS
    if daemon == "ours":
        ours = OurDaemon()
        try:
            got = run_session(tool_dir, ours.socket_path)
        finally:
            ours.stop()
    else:
        got = []
        for ref in reference_daemon("c"):
            got = run_session(tool_dir, ref.socket_path)
    assert differences(oracle, got) == []


def test_our_tools_are_installed_next_to_python() -> None:
    missing = [name for name in ("xenstore", "xenstore-ls", "xenstore-read")
               if not shutil.which(name, path=str(OUR_TOOLS))]
    assert missing == [], f"console scripts missing from {OUR_TOOLS}: pip install -e ."
