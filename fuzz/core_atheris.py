"""atheris (libFuzzer) harness: hostile byte streams and requests against the core.

Run as a module from the repository's root (see fuzz/README.md)::

    python -m fuzz.core_atheris -max_total_time=600 fuzz/corpus

Each input is one script of :mod:`fuzz.driver` over a fresh server, its
choices taken from the input's bytes. A finding raises
:class:`fuzz.driver.Finding`; libFuzzer then writes the input to a
``crash-<sha1>`` file, which replays with ``python -m fuzz.core_atheris FILE``.
"""

from __future__ import annotations

import sys

import atheris

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
