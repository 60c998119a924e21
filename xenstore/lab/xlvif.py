"""xl's vif specification (``xl-network-configuration(5)``), as ``parse_nic_config`` reads it.

A vif is one string of comma-separated ``key=value`` parameters, any of them
optional: ``'bridge=Br0,mac=00:16:3e:12:34:56,model=e1000'``. Empty items are
skipped and leading blanks dropped (xl's ``strtok``); ``trusted`` and
``untrusted`` take no value. ``rate=`` is ``<n>[GMK](B|b)/s[@<n>[m|u]s]``
(``xlu_vif_parse_rate``), 50 ms by default.

xl prints "unrecognized argument", "Invalid parameter `mac'." and the like and
goes on with the vif half-read; here any such parameter is an error (the
rate's, and a number that is not one, end xl too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from xenstore.lab.cnumbers import ULONG_MAX, c_strtoul

UINT32_MAX = (1 << 32) - 1
UINT64_MAX = (1 << 64) - 1
#: The replenishment interval when the rate names none, in microseconds.
DEFAULT_RATE_INTERVAL = 50_000
_RATE = re.compile(r"[0-9]+[GMK]?[Bb]/s\Z")
_INTERVAL = re.compile(r"[0-9]+[mu]?s?\Z")
_STRING_KEYS = ("bridge", "ip", "script", "backend", "vifname", "model", "gatewaydev")
#: Parameters xl takes and pyxl has no use for: COLO's, and the VLAN.
_IGNORED_KEYS = ("forwarddev", "vlan", "colo_")


class VifSpecError(ValueError):
    """A vif spec xl refuses: ``problems`` are xl's lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class ParsedVif:
    """What the spec says; None where it says nothing (the defaults come later)."""

    bridge: str | None = None
    mac: str | None = None
    model: str | None = None
    script: str | None = None
    ip: str | None = None
    vifname: str | None = None
    type: Literal["vif", "ioemu"] | None = None
    #: (bytes per interval, interval in microseconds).
    rate: tuple[int, int] | None = None
    backend: str | None = None
    gatewaydev: str | None = None
    devid: int | None = None
    mtu: int | None = None
    trusted: bool | None = None


def _parse_mac(text: str) -> str:
    """Six hex numbers, each followed by any one character (xl reads no further)."""
    octets, pos = [], 0
    for index in range(6):
        value, used, _ = c_strtoul(text[pos:], 16)
        if value is None or value > 255 or (index < 5 and pos + used >= len(text)):
            raise VifSpecError(["Invalid parameter `mac'."])
        octets.append(value)
        pos += used + 1
    return ":".join(f"{octet:02x}" for octet in octets)


def _parse_ulong(text: str) -> int:
    value, _, _ = c_strtoul(text, 10)
    if value is None or value == ULONG_MAX:
        raise VifSpecError([f'xl: failed to convert "{text}" to number'])
    return value


def _rate_error(message: str, text: str) -> VifSpecError:
    return VifSpecError([f"config parsing error in vif: {message} in `{text}'"])


def parse_rate(rate: str) -> tuple[int, int]:
    """``rate=``: (bytes per interval, interval in microseconds)."""
    amount, at, interval_text = rate.partition("@")
    if not amount:
        raise _rate_error("no rate specified", rate)
    if not _RATE.match(amount):
        raise _rate_error("invalid rate", amount)
    per_sec, used, _ = c_strtoul(amount, 0)  # base 0: a leading 0 reads octal, as in xl
    if not per_sec or per_sec > UINT32_MAX:
        raise _rate_error("rate overflow", amount)
    unit = amount[used:]
    per_sec *= {"G": 10**9, "M": 10**6, "K": 10**3}.get(unit[:1], 1)
    if unit[:1] == "b" or unit[1:2] == "b":
        per_sec //= 8
    interval = DEFAULT_RATE_INTERVAL
    if at:
        if not _INTERVAL.match(interval_text):
            raise _rate_error("invalid replenishment interval", interval_text)
        count, used, _ = c_strtoul(interval_text, 0)
        if not count or count > UINT32_MAX:
            raise _rate_error("replenishment interval overflow", interval_text)
        suffix = interval_text[used:used + 1]
        interval = count * (10**6 if suffix in ("s", "") else 10**3 if suffix == "m" else 1)
        if interval > UINT32_MAX:
            raise _rate_error("replenishment interval overflow", interval_text)
    if per_sec > UINT64_MAX // interval:
        raise _rate_error("rate overflow", rate)
    return per_sec * interval // 10**6, interval


def parse_vif(spec: str, warnings: list[str] | None = None) -> ParsedVif:
    """Read one vif spec; xl's notes on deprecated parameters go to ``warnings``."""
    found: dict[str, object] = {}
    notes = warnings if warnings is not None else []
    for item in spec.split(","):
        if not item:
            continue
        token = item.lstrip(" ")
        key, equals, value = token.partition("=")
        if not equals:
            if token not in ("trusted", "untrusted"):
                raise VifSpecError([f"unrecognized argument `{token}'"])
            found["trusted"] = token == "trusted"
        elif key in _STRING_KEYS:
            found[key] = value
        elif key == "netdev":
            notes.append("the netdev parameter is deprecated, please use gatewaydev instead")
            found["gatewaydev"] = value
        elif key == "type":
            if value not in ("vif", "ioemu"):
                raise VifSpecError(["Invalid parameter `type'."])
            found["type"] = value
        elif key == "mac":
            found["mac"] = _parse_mac(value)
        elif key == "rate":
            found["rate"] = parse_rate(value)
        elif key in ("devid", "mtu"):
            found[key] = _parse_ulong(value)
        elif key == "accel":
            notes.append("the accel parameter for vifs is currently not supported")
        elif not key.startswith(_IGNORED_KEYS):
            raise VifSpecError([f"unrecognized argument `{token}'"])
    return ParsedVif(**found)  # type: ignore[arg-type]
