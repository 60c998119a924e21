"""xl's disk specification language (``xl-disk-configuration(5)``), as ``xlu_disk_parse`` reads it.

A disk is one string of comma-separated parameters, in any mix of two forms::

    [<target>[,<format>[,<vdev>[,<access>]]]]           positional
    format=qcow2, vdev=hda, access=rw, target=/srv/vm/win.qcow2
    phy:/dev/vg0/debian,xvda,w                           a deprecated prefix
    /srv/iso/debian.iso,raw,xvdc:cdrom,r                 <vdev>:cdrom, also deprecated

``target=`` takes the rest of the string, commas and all, so it comes last.
A deprecated prefix (``phy:``, ``file:``, ``tap:``, ``aio:``, ...) before the
target is accepted and dropped (``raw:``, ``qcow:``, ``qcow2:``, ``vhd:`` set
the format; ``iscsi:``, ``nbd:``, ``enbd:``, ``drbd:`` the script
``block-<name>``), and with one the second positional parameter is the vdev,
not the format. A cdrom is read-only and removable; one without a target is
empty.

The rules are ``libxlu_disk_l.l``'s, matched as flex does (the longest match,
the earlier rule on a tie, a trailing context counting towards the length),
since that order decides what a parameter is: ``cdrom`` is the cdrom flag but
``cdrom.iso`` a target, and ``foo=bar`` an unknown parameter ``foo=b``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from xenstore.lab.cnumbers import c_strtol

FORMATS = {"": "raw", "raw": "raw", "qcow": "qcow", "qcow2": "qcow2", "vhd": "vhd",
           "empty": "empty", "qed": "qed"}
BACKEND_TYPES = ("phy", "tap", "qdisk", "standalone")
SPECIFICATIONS = ("xen", "virtio")


class DiskSpecError(ValueError):
    """A disk spec xl refuses: ``problems`` are xl's lines, without the file's name."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class ParsedDisk:
    """What the spec says, with ``xlu_disk_parse``'s defaults (raw, read-write)."""

    #: The image, device or file; "" or None for an empty cdrom.
    target: str | None
    format: str
    vdev: str
    readwrite: bool
    cdrom: bool
    removable: bool
    #: ``backendtype=``: phy, tap, qdisk or standalone; None lets libxl choose.
    backendtype: str | None
    #: ``backend=``: a driver domain's name or id; None for the toolstack's own.
    backend: str | None
    script: str | None
    specification: str | None
    direct_io_safe: bool
    discard: bool | None
    trusted: bool | None


class _Context:
    """``DiskParseContext`` and the ``libxl_device_disk`` the rules fill in."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.problems: list[str] = []
        self.strings: dict[str, str | None] = dict.fromkeys(
            ("target", "vdev", "script", "backend", "colo-host", "colo-export",
             "active-disk", "hidden-disk"))
        self.enums: dict[str, str | None] = dict.fromkeys(
            ("format", "backend", "specification"))
        self.readwrite = True
        self.cdrom = False
        self.direct_io_safe = False
        self.flags: dict[str, bool | None] = dict.fromkeys(("discard", "trusted", "colo"))
        self.access_set = False
        self.had_prefix = False

    def error(self, near: str | None, message: str) -> None:
        """``xlu__disk_err``: one line of xl's, naming the spec."""
        where = f": near `{near}'" if near is not None else ""
        self.problems.append(f"config parsing error in disk specification: {message}{where} "
                             f"in `{self.spec}'")

    def save(self, what: str, value: str) -> None:
        """SAVESTRING: a second value is an error, unless the first was empty."""
        if self.strings[what]:
            self.error(value, f"{what} respecified")
        else:
            self.strings[what] = value

    def set_enum(self, member: str, value: str, near: str) -> None:
        """DSET: one value per member, repeating the same one is fine."""
        if self.enums[member] is not None and self.enums[member] != value:
            self.error(near, f"{member} respecified")
        else:
            self.enums[member] = value

    def set_format(self, text: str) -> None:
        """A format, given by ``format=``, a prefix, or its place."""
        if text in FORMATS:
            self.set_enum("format", FORMATS[text], text)
        else:
            self.error(text, "unknown value for format")

    def set_access(self, text: str) -> None:
        """``r``/``ro`` or ``w``/``rw`` (or nothing, which is ``w``)."""
        if text in ("r", "ro"):
            self.readwrite = False
        elif text in ("rw", "w", ""):
            self.readwrite = True
        else:
            self.error(text, "unknown value for access")

    def set_choice(self, member: str, choices: tuple[str, ...], text: str) -> None:
        """``backendtype=`` or ``specification=``: one of ``choices``."""
        if text in choices:
            self.set_enum(member, text, text)
        else:
            label = "backendtype" if member == "backend" else member
            self.error(text, f"unknown value for {label}")

    def vdev_and_devtype(self, text: str) -> bool:
        """A positional ``<vdev>:<devtype>``; False (doing nothing) without a colon."""
        vdev, colon, devtype = text.rpartition(":")
        if not colon:
            return False
        self.save("vdev", vdev)
        if devtype in ("cdrom", "disk"):
            self.cdrom = devtype == "cdrom"
        else:
            self.error(devtype, "unknown deprecated type")
        return True

    def positional(self, text: str) -> bool:
        """The next of target, format, vdev, access; False stops the scan."""
        if self.problems:
            return True  # after an error, xl leaves the rest alone
        if self.strings["target"] is None:
            self.save("target", text)
        elif not self.had_prefix and self.enums["format"] is None:
            if not self.strings["target"] and self.vdev_and_devtype(text):
                self.enums["format"] = "empty"
            else:
                self.set_format(text)
        elif self.strings["vdev"] is None:
            if not self.vdev_and_devtype(text):
                self.save("vdev", text)
        elif not self.access_set:
            self.access_set = True
            self.set_access(text)
        else:
            self.error(text, "too many positional parameters")
            return False
        return True


def _strip(text: str, delim: str) -> str:
    return text[:-1] if text.endswith(delim) else text


def _value(text: str) -> str:
    return _strip(text, ",").split("=", 1)[1]


_Action = Callable[[_Context, str], bool]


def _flag(name: str, value: bool) -> _Action:
    def act(ctx: _Context, text: str) -> bool:
        ctx.flags[name] = value
        return True
    return act


def _saving(what: str) -> _Action:
    def act(ctx: _Context, text: str) -> bool:
        ctx.save(what, _value(text))
        return True
    return act


def _doing(step: Callable[[_Context, str], None]) -> _Action:
    def act(ctx: _Context, text: str) -> bool:
        step(ctx, text)
        return True
    return act


def _set_cdrom(value: bool) -> _Action:
    def act(ctx: _Context, text: str) -> bool:
        ctx.cdrom = value
        return True
    return act


def _prefix(ctx: _Context, text: str) -> bool:
    ctx.had_prefix = True
    name = _strip(text, ":")
    if name in ("raw", "qcow", "qcow2", "vhd"):
        ctx.set_format(name)
    elif name in ("iscsi", "nbd", "enbd", "drbd"):
        ctx.save("script", f"block-{name}")
    return True


def _unknown_prefix(ctx: _Context, text: str) -> bool:
    ctx.error(text, "unknown deprecated disk prefix")
    return False


def _colo_port(ctx: _Context, text: str) -> None:
    if not c_strtol(_value(text), 10)[0]:  # C's atoi: 0 when there is no number
        ctx.error(_value(text), "unknown value for colo_port")


def _direct_io_safe(ctx: _Context, text: str) -> bool:
    ctx.direct_io_safe = True
    return True


# (pattern, trailing context, action). The trailing context is None, "line"
# (flex's "/.*": the rest of the line) or "word" ("/([^a-z0-9].*)?").
_RULES: list[tuple[re.Pattern[str], str | None, _Action]] = [
    (re.compile(p), trail, act) for p, trail, act in [
        (r"format=[^,]*,?", None, _doing(lambda c, t: c.set_format(_value(t)))),
        (r"cdrom,?", None, _set_cdrom(True)),
        (r"devtype=cdrom,?", None, _set_cdrom(True)),
        (r"devtype=disk,?", None, _set_cdrom(False)),
        (r"devtype=[^,]*,?", None, _doing(lambda c, t: c.error(t, "unknown value for type"))),
        (r"access=[^,]*,?", None, _doing(lambda c, t: c.set_access(_value(t)))),
        (r"backend=[^,]*,?", None, _saving("backend")),
        (r"backendtype=[^,]*,?", None,
         _doing(lambda c, t: c.set_choice("backend", BACKEND_TYPES, _value(t)))),
        (r"specification=[^,]*,?", None,
         _doing(lambda c, t: c.set_choice("specification", SPECIFICATIONS, _value(t)))),
        (r"vdev=[^,]*,?", None, _saving("vdev")),
        (r"script=[^,]*,?", None, _saving("script")),
        (r"direct-io-safe,?", None, _direct_io_safe),
        (r"discard,?", None, _flag("discard", True)),
        (r"no-discard,?", None, _flag("discard", False)),
        (r"colo,?", None, _flag("colo", True)),
        (r"no-colo,?", None, _flag("colo", False)),
        (r"colo-host=[^,]*,?", None, _saving("colo-host")),
        (r"colo-port=[^,]*,?", None, _doing(_colo_port)),
        (r"colo-export=[^,]*,?", None, _saving("colo-export")),
        (r"active-disk=[^,]*,?", None, _saving("active-disk")),
        (r"hidden-disk=[^,]*,?", None, _saving("hidden-disk")),
        (r"trusted,?", None, _flag("trusted", True)),
        (r"untrusted,?", None, _flag("trusted", False)),
        (r"grant_usage=[01],?", None, lambda c, t: True),
        (r"target=.*", None, _doing(lambda c, t: c.save("target", _value(t)))),
        (r"[a-z][-a-z0-9]*=[^,],?", None,
         _doing(lambda c, t: c.error(t, "unknown parameter"))),
        (r"(?:raw|qcow2?|vhd):", "line", _prefix),
        (r"(?:iscsi|e?nbd|drbd):", "line", _prefix),
        (r"(?:tapdisk|tap2?|aio|ioemu|file|phy):", "line", _prefix),
        (r"[a-z][a-z0-9]*:", "word", _unknown_prefix),
        (r"[^=,]*,|[^=,]+,?", None, lambda c, t: c.positional(_strip(t, ","))),
    ]
]
_BLANKS = re.compile(r"[ \t\n]+")
_REST_OF_LINE = re.compile(r"[^\n]*")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def _longest(spec: str, pos: int) -> tuple[int, int, _Action | None]:
    """(total length, token length, action) of the rule flex picks at ``pos``."""
    best: tuple[int, int, _Action | None] = (0, 0, None)
    blanks = _BLANKS.match(spec, pos)
    if blanks:  # "[ \t\n]+/([^ \t\n].*)?": blanks, and the line after them
        end = blanks.end()
        rest = 0 if end >= len(spec) or spec[end] in " \t\n" else _line_length(spec, end)
        best = (end - pos + rest, end - pos, None)
    for pattern, trail, action in _RULES:
        match = pattern.match(spec, pos)
        if match is None:
            continue
        end = match.end()
        total = end - pos
        if trail == "line":
            total += _line_length(spec, end)
        elif trail == "word" and _NOT_ALNUM.match(spec, end):
            # a negated class takes a newline too, then the next line's text
            total += 1 + _line_length(spec, end + 1)
        if total > best[0]:
            best = (total, end - pos, action)
    return best


def _line_length(spec: str, pos: int) -> int:
    match = _REST_OF_LINE.match(spec, pos)
    return match.end() - pos if match else 0


def _scan(ctx: _Context) -> None:
    spec, pos = ctx.spec, 0
    while pos < len(spec):
        total, length, action = _longest(spec, pos)
        if total == 0:
            # flex's ".": an error state that takes the rest of the line; at the
            # very end flex stops without a word, and before a newline it jams
            # (xl dies with "flex scanner jammed"): both are reported here
            rest = _line_length(spec, pos + 1)
            if pos + 1 + rest < len(spec) or rest:
                ctx.error(spec[pos:pos + 1 + rest], "bad disk syntax")
            return
        token = spec[pos:pos + length]
        pos += length
        if action is not None and not action(ctx, token):
            return


def parse_disk(spec: str) -> ParsedDisk:
    """Read one disk spec, or raise :class:`DiskSpecError` with xl's messages."""
    ctx = _Context(spec)
    _scan(ctx)
    if ctx.problems:
        raise DiskSpecError(ctx.problems)
    fmt = ctx.enums["format"] or "raw"
    target = ctx.strings["target"]
    readwrite, removable = ctx.readwrite, False
    if ctx.cdrom:
        readwrite, removable = False, True
        if not target:
            fmt = "empty"
    vdev = ctx.strings["vdev"]
    if vdev is None:
        ctx.error(None, "no vdev specified")
    elif target is None and not removable:
        ctx.error(None, "no target specified (and device not removable)")
    if ctx.problems or vdev is None:
        raise DiskSpecError(ctx.problems)
    return ParsedDisk(
        target=target, format=fmt, vdev=vdev, readwrite=readwrite, cdrom=ctx.cdrom,
        removable=removable, backendtype=ctx.enums["backend"],
        backend=ctx.strings["backend"], script=ctx.strings["script"],
        specification=ctx.enums["specification"], direct_io_safe=ctx.direct_io_safe,
        discard=ctx.flags["discard"], trusted=ctx.flags["trusted"])
