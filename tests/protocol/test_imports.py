"""What must not pull in construct or trio.

The blocking client and the codec: start-up time (scripts call the tools in
loops). The daemon's core: the layering rule, a pure synchronous core that the
trio shell drives and that plain tests and fuzzers use without an event loop
(see also ``tests/test_architecture.py``).
"""

from __future__ import annotations

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
