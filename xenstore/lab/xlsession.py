"""One ``pyxl`` command's view of the world: its options, its host, its messages.

A command gets an :class:`Invocation`: the options and operands xl's getopt
left it, a lazily opened connection to the host (found through the store, see
:mod:`.rpc`), and xl's way of naming domains (:meth:`Invocation.find_domain`).
A command that has said why it fails raises :class:`Exit` with xl's status.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from xenstore.errors import XenStoreError
from xenstore.lab.rpc import HOST_WAIT, HostClient, HostError, NoHost, find_host

#: xl's EXIT_FAILURE, and what a usage error returns.
FAILURE = 1
USAGE = 2
#: libxl's ERROR_INVAL, shown by find_domain's message.
ERROR_INVAL = -6
#: How long ``shutdown -w`` and ``create -F`` wait for the host to report (xl waits
#: for ever; a guest that has not gone in this long is not going to).
LONG_WAIT = 600.0
#: How long any other answer may take.
CALL_TIMEOUT = 120.0


class Exit(Exception):
    """End the command with ``code``; what went wrong has been printed already."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class ShowHelp(Exit):
    """End the command with its help on stdout (xl's ``help(cmd)``), then ``code``."""


def err(text: str) -> None:
    """A line on stderr, at once (stderr and stdout interleave as in C)."""
    sys.stdout.flush()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def out(text: str) -> None:
    sys.stdout.write(text + "\n")


def host_wait() -> float:
    """How long to wait for a host coming up: ``$PYXL_HOST_WAIT`` seconds, else rpc's."""
    try:
        return float(os.environ.get("PYXL_HOST_WAIT", HOST_WAIT))
    except ValueError:
        return HOST_WAIT


def is_domid(qualifier: str) -> bool:
    """libxl's test: only decimal digits (an empty string too) is a domid."""
    return all(ch in "0123456789" for ch in qualifier)


class Invocation:
    """A command's options (``-w`` twice is counted), operands, and host."""

    def __init__(self, prog: str, name: str, options: Sequence[tuple[str, str]],
                 args: Sequence[str]) -> None:
        self.prog = prog
        self.name = name
        self.options = list(options)
        self.args = list(args)
        self._client: HostClient | None = None

    # -- options -------------------------------------------------------------------

    def count(self, *flags: str) -> int:
        """How often any of ``flags`` ("-w", "--wait") was given."""
        return sum(1 for flag, _ in self.options if flag in flags)

    def has(self, *flags: str) -> bool:
        return self.count(*flags) > 0

    def value(self, *flags: str) -> str | None:
        """The last value given to any of ``flags``, else None."""
        found = None
        for flag, value in self.options:
            if flag in flags:
                found = value
        return found

    # -- the host ------------------------------------------------------------------

    def client(self) -> HostClient:
        """The host's connection, found (and waited for) on first use; NoHost if none."""
        if self._client is None:
            try:
                path = find_host(wait=host_wait())
            except (OSError, XenStoreError) as exc:  # the daemon went away while we asked
                raise NoHost(f"lost the XenStore daemon: {exc}") from None
            self._client = HostClient(path, timeout=CALL_TIMEOUT)
        return self._client

    def call(self, cmd: str, **args: Any) -> Any:
        """One request; its result, :class:`HostError` with xl's message, or
        :class:`NoHost` if the host stops answering."""
        client = self.client()
        try:
            return client.call(cmd, **args)
        except TimeoutError:
            raise NoHost("the pyxl host did not answer in time") from None
        except (OSError, ValueError) as exc:  # reset, refused, or a garbled answer
            raise NoHost(f"lost the pyxl host: {exc}") from None

    def call_waiting(self, seconds: float, cmd: str, **args: Any) -> Any:
        """A request the host answers only when something happened (up to ``seconds``)."""
        client = self.client()
        client.sock.settimeout(seconds + 30)
        try:
            return self.call(cmd, **args)
        finally:
            client.sock.settimeout(CALL_TIMEOUT)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def domains(self) -> list[dict[str, Any]]:
        """Every domain's row, by domid (Domain-0 first), as libxl lists them."""
        rows: list[dict[str, Any]] = self.call("list")
        return sorted(rows, key=lambda row: int(row["domid"]))

    def qualifier_to_domid(self, qualifier: str) -> int | None:
        """libxl_domain_qualifier_to_domid: digits are a domid (unchecked, as libxl),
        anything else a name the host must know; None if it does not."""
        if is_domid(qualifier):
            return int(qualifier or "0") % (1 << 32)
        try:
            return int(self.call("domid", name=qualifier))
        except HostError:
            return None

    def find_domain(self, qualifier: str) -> int:
        """xl's find_domain: the domid, or its message and EXIT_FAILURE."""
        domid = self.qualifier_to_domid(qualifier)
        if domid is None:
            err(f"{qualifier} is an invalid domain identifier (rc={ERROR_INVAL})")
            raise Exit(FAILURE)
        return domid

    def fail(self, error: HostError | str, *more: str) -> Exit:
        """Print the host's message (and xl's own lines after it); the Exit to raise."""
        err(str(error))
        for line in more:
            err(line)
        return Exit(FAILURE)
