"""What must not pull in construct or trio.

The blocking client and the codec: start-up time (scripts call the tools in
loops). The daemon's core: the layering rule, a pure synchronous core that the
trio shell drives and that plain tests and fuzzers use without an event loop
(see also ``tests/test_architecture.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import importlib
import sys
for module in sys.argv[1:]:
    importlib.import_module(module)
heavy = sorted(name for name in ("construct", "trio") if name in sys.modules)
print(",".join(heavy))
"""


@pytest.mark.parametrize(
    "modules",
    [
        pytest.param(["xenstore.client", "xenstore.protocol.codec"], id="client-and-codec"),
        pytest.param(["xenstore.daemon.core"], id="daemon-core"),
    ],
)
def test_imports_neither_construct_nor_trio(modules: list[str]) -> None:
    """Each set is imported in a fresh interpreter, which then lists what it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{modules} imported: {result.stdout.strip()}"


# -- what a command-line tool loads -------------------------------------------------------

#: What the tools use of the standard library themselves; anything else they load
#: comes in through these (and differs between Python versions). typing, re,
#: contextlib, socket (its enums: ~2 ms), random or dataclasses would cost every run
#: of a tool (see README, Performance: CLI start-up).
TOOL_STDLIB = ("__future__", "_socket", "collections", "enum", "errno", "os", "stat", "struct")
#: The package's modules every tool loads, and each tool's own on top.
TOOL_CORE = {
    "xenstore", "xenstore.client", "xenstore.errors", "xenstore.protocol",
    "xenstore.protocol.codec", "xenstore.protocol.ops", "xenstore.protocol.requests",
    "xenstore.retry", "xenstore.sockets", "xenstore.tools", "xenstore.transport",
    "xenstore.tools.cnum",
    "xenstore.tools.common", "xenstore.tools.connection", "xenstore.tools.options",
    "xenstore.tools.streams",
}
TOOLS = {
    "read": (["/n"], {"xenstore.tools.read", "xenstore.tools.escape"}),
    "write": (["/n", "v"], {"xenstore.tools.write", "xenstore.tools.escape"}),
    "ls": (["/"], {"xenstore.tools.ls", "xenstore.tools.escape"}),
    "list": (["/"], {"xenstore.tools.list"}),
    "exists": (["/n"], {"xenstore.tools.exists"}),
    "chmod": (["/n", "n0"], {"xenstore.tools.chmod"}),
    "rm": (["/gone"], {"xenstore.tools.rm"}),
    "watch": (["-n", "1", "/n"], {"xenstore.tools.watch"}),
}

RUN_TOOL = """
import sys
sys.argv = sys.argv[2:]
from xenstore.tools.{tool} import main
try:
    status = main()
except SystemExit as exc:
    status = exc.code
with open(sys.argv[0] + ".modules", "w") as f:
    f.write(repr((status, sorted(sys.modules))))
"""


def _loaded(code: str, *args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter (without site) has loaded after ``code``."""
    result = subprocess.run(
        [sys.executable, "-S", "-c", code + "\nprint(repr(sorted(sys.modules)))", *args],
        capture_output=True, text=True, check=False, env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = eval(result.stdout.splitlines()[-1])
    return set(loaded)


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_a_tool_loads_only_what_it_uses(tool: str, tmp_path: Path) -> None:
    """Each drop-in tool, run for real against a daemon, loads exactly the package's
    modules it needs and nothing of the standard library beyond TOOL_STDLIB's own."""
    from xenstore.testing import xenstored

    args, own = TOOLS[tool]
    out = tmp_path / f"xenstore-{tool}"
    with xenstored(in_process=True) as daemon, daemon.client(timeout=10) as xs:
        xs.write("/n", "v")
        env = {"XENSTORED_PATH": daemon.socket_path, "PATH": os.defpath}
        _loaded(RUN_TOOL.format(tool=tool), "-", str(out), *args, env=env)
    status, modules = eval((tmp_path / f"xenstore-{tool}.modules").read_text())
    assert status == 0
    loaded = set(modules)
    ours = {name for name in loaded if name.split(".")[0] == "xenstore"}
    assert ours == TOOL_CORE | own
    allowed = _loaded(f"import {', '.join(TOOL_STDLIB)}\nimport sys")
    assert sorted(loaded - ours - allowed) == []
