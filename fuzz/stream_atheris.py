"""atheris (libFuzzer) harness: arbitrary bytes as a migration stream (``--restore``).

Run from the repository's root (see fuzz/README.md)::

    python fuzz/stream_atheris.py --seeds fuzz/stream-corpus   # real streams to start from
    python fuzz/stream_atheris.py -runs=100000 fuzz/stream-corpus

(``python -m fuzz.stream_atheris`` works the same.) Each input goes through
:func:`fuzz.stream_check.check`: read, write back, restore into a fresh server,
check its invariants, dump and restore again. A finding raises
:class:`fuzz.stream_check.Finding`; libFuzzer writes the input to a
``crash-<sha1>`` file, which replays with ``python fuzz/stream_atheris.py FILE``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

if __package__ in (None, ""):  # run as a script: make the repository's root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["xenstore", "fuzz"]):
    from fuzz.stream_check import check, write_seeds


def TestOneInput(data: bytes) -> None:  # atheris's name for the entry point
    check(data)


def main() -> None:
    if "--seeds" in sys.argv[1:-1]:  # --seeds DIR: write the seeds, no fuzzing
        for path in write_seeds(Path(sys.argv[sys.argv.index("--seeds") + 1])):
            print(path)
        return
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
