"""The blocking client and the codec must not pull in construct or trio (start-up time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
import xenstore.client
import xenstore.protocol.codec
heavy = sorted(name for name in ("construct", "trio") if name in sys.modules)
print(",".join(heavy))
"""


def test_client_and_codec_import_neither_construct_nor_trio() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported: {result.stdout.strip()}"
