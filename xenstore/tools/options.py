"""glibc's ``getopt_long``, as the C tools see it.

The tools must accept exactly the command lines the C ones accept and print the
same diagnostics for the others, so this follows glibc rather than
:mod:`argparse`: options and operands may be mixed (operands are permuted to
the end) unless ``POSIXLY_CORRECT`` is set, ``--`` ends the options, short
flags combine (``-pR``), ``-nARG``/``-n ARG`` and ``--name=ARG``/``--name ARG``
both work, a long option may be abbreviated to any unambiguous prefix, and an
unknown option is reported and returned as ``?`` (the tools then carry on).

Everything is bytes: argv strings may hold any byte but NUL, and the messages
echo them back unchanged.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and collections.abc would cost the tools' start-up
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["LongOption", "Parser"]


class LongOption:
    """One ``struct option``: its name, whether it takes an argument, its code.

    (A plain class: a typing.NamedTuple would import typing at start-up.)
    """

    __slots__ = ("has_arg", "name", "val")

    def __init__(self, name: bytes, has_arg: bool, val: int) -> None:
        self.name = name
        self.has_arg = has_arg
        self.val = val


#: The code returned for anything getopt rejects.
UNKNOWN = ord("?")


class Parser:
    """Walk ``argv`` (``argv[0]`` is the name used in messages) as getopt_long.

    Iterating yields ``(code, optarg)`` pairs one at a time, printing each
    diagnostic through ``warn`` just before its ``?`` is yielded, so a caller
    that stops early (``-h``) prints no message for what follows, as in C.
    When the iteration ends, :attr:`operands` holds the non-option arguments in
    their original order.
    """

    def __init__(
        self,
        argv: Sequence[bytes],
        shortopts: bytes,
        longopts: Sequence[LongOption],
        warn: Callable[[bytes], None],
    ) -> None:
        self.argv = list(argv)
        self.shortopts = shortopts
        self.longopts = list(longopts)
        self.warn = warn
        # Any value, even empty, switches glibc to stopping at the first operand.
        self.require_order = os.environ.get("POSIXLY_CORRECT") is not None
        self.operands: list[bytes] = []

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        argv = self.argv
        argc = len(argv)
        optind = 1
        while optind < argc:
            arg = argv[optind]
            if arg == b"--":
                self.operands.extend(argv[optind + 1 :])
                return
            if not arg.startswith(b"-") or arg == b"-":
                if self.require_order:
                    self.operands.extend(argv[optind:])
                    return
                # Permuted to the end, keeping the operands' relative order.
                self.operands.append(arg)
                optind += 1
                continue
            optind += 1
            if arg.startswith(b"--"):
                code, optarg, optind = self._long(arg[2:], optind)
                yield code, optarg
                continue
            cluster = arg[1:]
            pos = 0
            while pos < len(cluster):
                char = cluster[pos : pos + 1]
                pos += 1
                spec = self.shortopts.find(char)
                if spec < 0 or char in b":;":
                    self._message(b"invalid option -- '" + char + b"'")
                    yield UNKNOWN, None
                    continue
                if self.shortopts[spec + 1 : spec + 2] != b":":
                    yield char[0], None
                    continue
                # Takes an argument: the rest of the cluster, else the next word.
                if pos < len(cluster):
                    yield char[0], cluster[pos:]
                elif optind < argc:
                    optind += 1
                    yield char[0], argv[optind - 1]
                else:
                    self._message(b"option requires an argument -- '" + char + b"'")
                    yield UNKNOWN, None
                break

    def _long(self, text: bytes, optind: int) -> tuple[int, bytes | None, int]:
        """Handle ``--text``; return the code, its argument and the new optind."""
        name, equals, value = text.partition(b"=")
        found = [opt for opt in self.longopts if opt.name == name]
        if not found:
            found = [opt for opt in self.longopts if opt.name.startswith(name)]
            if len(found) > 1:
                # Every option has its own code, so any two candidates clash;
                # glibc lists them in table order.
                listing = b"".join(b" '--" + opt.name + b"'" for opt in found)
                self._message(b"option '--" + text + b"' is ambiguous; possibilities:" + listing)
                return UNKNOWN, None, optind
        if not found:
            self._message(b"unrecognized option '--" + text + b"'")
            return UNKNOWN, None, optind
        option = found[0]
        if equals:
            if not option.has_arg:
                self._message(b"option '--" + option.name + b"' doesn't allow an argument")
                return UNKNOWN, None, optind
            return option.val, value, optind
        if option.has_arg:
            if optind < len(self.argv):
                return option.val, self.argv[optind], optind + 1
            self._message(b"option '--" + option.name + b"' requires an argument")
            return UNKNOWN, None, optind
        return option.val, None, optind

    def _message(self, text: bytes) -> None:
        # getopt names argv[0] of the vector it was given, unshortened.
        self.warn(self.argv[0] + b": " + text + b"\n")
