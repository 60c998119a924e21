"""atheris (libFuzzer) harness: hostile byte streams and requests against the core.

Run from the repository's root (see fuzz/README.md)::

    python fuzz/core_atheris.py -max_total_time=600 fuzz/corpus

Each input is one script of :mod:`fuzz.driver` over a fresh server, its
choices taken from the input's bytes. A finding raises
:class:`fuzz.driver.Finding`; libFuzzer then writes the input to a
``crash-<sha1>`` file, which replays with ``python fuzz/core_atheris.py FILE``.
"""

from __future__ import annotations

import os
import sys

import atheris

# Run as a script, the repository's root is not on the path: the harness
# imports the driver as the package it is.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

with atheris.instrument_imports(include=["xenstore", "fuzz"]):
    from fuzz.driver import run


class Provided:
    """The driver's choices, from libFuzzer's bytes."""

    def __init__(self, data: bytes) -> None:
        self.fdp = atheris.FuzzedDataProvider(data)

    def integer(self, low: int, high: int) -> int:
        return int(self.fdp.ConsumeIntInRange(low, high))

    def data(self, most: int) -> bytes:
        return bytes(self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, most)))

    def more(self) -> bool:
        return bool(self.fdp.remaining_bytes())


def TestOneInput(data: bytes) -> None:  # atheris's name for the entry point
    run(Provided(data))


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
