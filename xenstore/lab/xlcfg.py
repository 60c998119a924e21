"""xl's configuration file grammar: ``KEY = VALUE`` settings, as libxlutil reads them.

The same grammar serves a domain's ``xl.cfg`` and ``/etc/xen/xl.conf``
(``libxlu_cfg_l.l``, ``libxlu_cfg_y.y``, ``libxlu_cfg.c`` in Xen's
``tools/libs/util``)::

    file:  { [KEY = VALUE | KEY += VALUE] (NEWLINE | ';') } [KEY = VALUE]
    KEY:   [a-z][._0-9a-z]*                     memory, vif.default.bridge
    VALUE: '...' | "..." | NUMBER | [ VALUE, VALUE, ..., ]

A number is any ``[0-9][0-9a-fx]*`` kept as its text: a value is a string or
a list, and each key's reader decides what the text must be (``strtol`` with
base 0: decimal, ``0x`` hex, ``0`` octal). Lists nest and may span lines;
``#`` starts a comment to the end of its line. The last setting of a key
wins; ``+=`` appends to the one before (two strings, or two lists).

Errors are reported with xl's own words and line numbers, quirks included
(a syntax error at a line's end names the line before; a stray character
at the very end of a file without a final newline passes unnoticed), so
that a student sees here what xl would print. The parser is the bison
automaton of ``libxlu_cfg_y.y`` written out by hand, with bison's default
reductions and error recovery, because both decide which errors are
reported and with which "expecting" list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast

from xenstore.lab.cnumbers import c_strtol
from xenstore.lab.xllex import Lexer, Token

__all__ = ["ConfigError", "ParsedConfig", "Setting", "Value", "parse_file", "parse_text",
           "with_overrides"]

#: A value: a string, or a (possibly nested) list of values.
Value: TypeAlias = "str | tuple[Value, ...]"

#: Token names in bison's order, which is the order of an "expecting" list.
_TOKEN_ORDER = ("$end", "IDENT", "STRING", "NUMBER", "NEWLINE", "+=", "'='", "';'", "'['",
                "']'", "','")
_PYTHON_WARNING = ("warning: Config file looks like it contains Python code.\n"
                   "warning:  Arbitrary Python is no longer supported.\n"
                   "warning:  See https://wiki.xen.org/wiki/PythonInXlConfig")
#: bison's YYMAXDEPTH: a deeper stack (a list nested 5000 deep) ends the parse
#: with "memory exhausted".
_MAX_DEPTH = 10000


class ConfigError(Exception):
    """A configuration xl would refuse: ``message`` is what it prints; the command
    fails with ``exit_code``. ``source``, ``line`` and ``key`` locate it (``line`` is
    the line xl names, which at a line's end is the line before)."""

    exit_code = 1

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line
        self.key = key


@dataclass(frozen=True, slots=True)
class Setting:
    """One ``KEY = VALUE`` (or ``KEY += VALUE``) statement."""

    key: str
    #: For ``+=``, the value after appending to the previous setting of the key.
    value: Value
    #: The line of the value's first token, which xl names in its messages.
    line: int
    added: bool = False
    #: For a list, the line of each item's first token.
    item_lines: tuple[int, ...] = ()


# --- the automaton of libxlu_cfg_y.y -------------------------------------------------------
# Rules: name -> (left-hand side, length of the right-hand side).
_RULES = {
    "file": ("file", 1), "file+assignment": ("file", 2),
    "stmts0": ("stmts", 0), "stmts+stmt": ("stmts", 2),
    "stmt:assignment": ("stmt", 2), "stmt:end": ("stmt", 1), "stmt:error": ("stmt", 2),
    "assign": ("assignment", 3), "add": ("assignment", 3),
    "end": ("endstmt", 1),
    "value:atom": ("value", 1), "value:list": ("value", 4), "atom": ("atom", 1),
    "valuelist0": ("valuelist", 0), "valuelist": ("valuelist", 1),
    "valuelist,": ("valuelist", 3),
    "values1": ("values", 2), "values+": ("values", 5),
    "nlok0": ("nlok", 0), "nlok+": ("nlok", 2),
}
_VALUE_START = {"STRING": 13, "NUMBER": 13, "'['": 15}
# state -> (shifts, default reduction, gotos). bison gives a state that shifts
# `error` no default reduction, so state 2 is the one that reads its lookahead.
_STATES: dict[int, tuple[dict[str, int], str | None, dict[str, int]]] = {
    0: ({}, "stmts0", {"file": 1, "stmts": 2}),
    1: ({"$end": -1}, None, {}),
    2: ({"error": 3, "IDENT": 4, "NEWLINE": 5, "';'": 5}, None,
        {"assignment": 12, "stmt": 11, "endstmt": 10}),
    3: ({"NEWLINE": 7}, None, {}),
    4: ({"'='": 8, "+=": 9}, None, {}),
    5: ({}, "end", {}),
    7: ({}, "stmt:error", {}),
    8: (_VALUE_START, None, {"value": 18, "atom": 16}),
    9: (_VALUE_START, None, {"value": 19, "atom": 16}),
    10: ({}, "stmt:end", {}),
    11: ({}, "stmts+stmt", {}),
    12: ({"NEWLINE": 5, "';'": 5}, "file+assignment", {"endstmt": 17}),
    13: ({}, "atom", {}),
    15: ({}, "nlok0", {"nlok": 21}),
    16: ({}, "value:atom", {}),
    17: ({}, "stmt:assignment", {}),
    18: ({}, "assign", {}),
    19: ({}, "add", {}),
    21: ({"NEWLINE": 22, **_VALUE_START}, "valuelist0",
         {"valuelist": 23, "values": 24, "value": 25, "atom": 16}),
    22: ({}, "nlok+", {}),
    23: ({"']'": 26}, None, {}),
    24: ({"','": 27}, "valuelist", {}),
    25: ({}, "nlok0", {"nlok": 28}),
    26: ({}, "value:list", {}),
    27: ({}, "nlok0", {"nlok": 29}),
    28: ({"NEWLINE": 22}, "values1", {}),
    29: ({"NEWLINE": 22, **_VALUE_START}, "valuelist,", {"value": 30, "atom": 16}),
    30: ({}, "nlok0", {"nlok": 31}),
    31: ({"NEWLINE": 22}, "values+", {}),
}
# An explicit reduction on a lookahead, where a state has no default one.
_REDUCE_ON = {(2, "$end"): "file"}


@dataclass(frozen=True, slots=True)
class _Val:
    value: Value
    line: int
    item_lines: tuple[int, ...] = ()


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.messages: list[str] = []
        self.first_line: int | None = None
        self.failed = False
        self.lexerr_line = -1
        self.lexer = Lexer(text, self._lexical_error, lambda: self.failed)
        self.settings: list[Setting] = []
        self.latest: dict[str, Setting] = {}
        self._last_line = 1

    def _lexical_error(self, line: int, text: str, message: str) -> None:
        self._error(line, text, message)
        self.lexerr_line = line

    def _error(self, line: int, text: str, message: str) -> None:
        """``xlu__cfg_yyerror``: nothing on a line at or before a lexical error."""
        if line <= self.lexerr_line:
            return
        length, newline = len(text), ""
        if text.endswith("\n"):
            length -= 1
            line -= 1
            newline = "" if length else "<newline>"
        shown = text[:length].rstrip(" \t")
        quoted = f"`{shown.split(chr(0))[0]}'" if shown else ""
        self.messages.append(f"{self.source}:{line}: config parsing error near "
                             f"{quoted}{newline}: {message}")
        if self.first_line is None:
            self.first_line = line
        self.failed = True

    def parse(self) -> None:
        """Run the automaton over the whole text (``yyparse``)."""
        states: list[int] = [0]
        values: list[object] = [None]  # the semantic value under each state
        lookahead: Token | None = None
        have_lookahead = False
        errstatus = 0
        while True:
            state = states[-1]
            shifts, default, _ = _STATES[state]
            if shifts and not have_lookahead:
                lookahead, have_lookahead = self._next(), True
            kind = lookahead.kind if lookahead is not None else "$end"
            target = shifts.get(kind)
            if target == -1:
                return
            if target is not None:
                states.append(target)
                values.append(lookahead)
                have_lookahead = False
                errstatus = max(errstatus - 1, 0)
                if len(states) >= _MAX_DEPTH:
                    return self._exhausted()
                continue
            rule = default or _REDUCE_ON.get((state, kind))
            if rule is not None:
                self._reduce(rule, states, values)
                if len(states) >= _MAX_DEPTH:
                    return self._exhausted()
                continue
            # A syntax error: report it (unless recovering), then pop to the state
            # that takes `error`, skipping tokens until a NEWLINE.
            if errstatus == 0:
                self._syntax_error(state, lookahead)
            elif errstatus == 3:
                if lookahead is None:
                    return self._abort()
                have_lookahead = False
            errstatus = 3
            while "error" not in _STATES[states[-1]][0]:
                if len(states) == 1:
                    return self._abort()
                states.pop()
                values.pop()
            states.append(3)
            values.append(None)

    def _abort(self) -> None:
        # every way here has reported an error (or a lexical one that hid it)
        self.failed = True

    def _exhausted(self) -> None:
        """bison's stack is full: the message quotes what flex read last."""
        text = self.lexer.eof_text if self.lexer.at_end else self.lexer.last_text
        self._error(self._last_line, text, "memory exhausted")
        self.failed = True

    def _next(self) -> Token | None:
        token = self.lexer.next()
        if token is not None:
            self._last_line = token.line
        return token

    def _line_of(self, token: Token | None) -> int:
        # bison's yylloc: the end of the text leaves the last token's line in place
        return token.line if token is not None else self._last_line

    def _text_of(self, token: Token | None) -> str:
        return token.text if token is not None else self.lexer.eof_text

    def _syntax_error(self, state: int, lookahead: Token | None) -> None:
        kind = lookahead.kind if lookahead is not None else "$end"
        expected = [t for t in _TOKEN_ORDER
                    if t in _STATES[state][0] or (state, t) in _REDUCE_ON]
        message = f"syntax error, unexpected {kind}"
        if 0 < len(expected) <= 4:
            message += ", expecting " + " or ".join(expected)
        self._error(self._line_of(lookahead), self._text_of(lookahead), message)

    def _reduce(self, rule: str, states: list[int], values: list[object]) -> None:
        lhs, length = _RULES[rule]
        rhs = values[len(values) - length:] if length else []
        del states[len(states) - length:]
        del values[len(values) - length:]
        result: object = None
        if rule in ("assign", "add"):
            key, value = rhs[0], rhs[2]
            assert isinstance(key, Token) and isinstance(value, _Val)
            self._store(key.text, value, added=rule == "add")
        elif rule == "atom":
            token = rhs[0]
            assert isinstance(token, Token)
            result = _Val(token.value, token.line)
        elif rule == "value:atom":
            result = rhs[0]
        elif rule == "value:list":
            bracket, items = rhs[0], cast("list[_Val]", rhs[2])
            assert isinstance(bracket, Token)
            result = _Val(tuple(item.value for item in items), bracket.line,
                          tuple(item.line for item in items))
        elif rule == "valuelist0":
            result = []
        elif rule in ("valuelist", "valuelist,"):
            result = rhs[0]
        elif rule == "values1":
            result = [rhs[0]]
        elif rule == "values+":
            grown = cast("list[_Val]", rhs[0])
            grown.append(cast(_Val, rhs[3]))
            result = grown
        states.append(_STATES[states[-1]][2][lhs])
        values.append(result)

    def _store(self, key: str, value: _Val, *, added: bool) -> None:
        """``xlu__cfg_set_store``: nothing more is kept once anything failed."""
        if self.failed:
            return
        stored, lines = value.value, value.item_lines
        previous = self.latest.get(key) if added else None
        if previous is not None:
            if isinstance(previous.value, str) != isinstance(stored, str):
                self._lexical_error(self.lexer.lineno, self.lexer.last_text,
                                    "can't add [list] to \"string\" or vice versa")
                return
            stored = previous.value + stored  # type: ignore[operator]
            lines = previous.item_lines + lines
        setting = Setting(key, stored, value.line, added, lines)
        self.settings.append(setting)
        self.latest[key] = setting


@dataclass(frozen=True, slots=True)
class ParsedConfig:
    """The settings of one file, in their order, with xl's way of reading them.

    The typed readers (``get_*``) follow ``libxlu_cfg.c``: where xl prints a
    warning and carries on as if the key were absent, they raise
    :class:`ConfigError` with xl's words (without ``warning:``).
    """

    source: str
    settings: tuple[Setting, ...]

    def lookup(self, key: str) -> Setting | None:
        """The setting in force for ``key``: its last one."""
        for setting in reversed(self.settings):
            if setting.key == key:
                return setting
        return None

    def _fail(self, setting: Setting, message: str) -> ConfigError:
        return ConfigError(f"{self.source}:{setting.line}: {message}", source=self.source,
                           line=setting.line, key=setting.key)

    def get_setting_string(self, key: str) -> tuple[str, Setting] | None:
        """A single value (a string or a number's text) and its setting."""
        setting = self.lookup(key)
        if setting is None:
            return None
        if not isinstance(setting.value, str):
            raise self._fail(setting, f"parameter `{key}' is a list but should be a "
                                      "single value")
        return setting.value, setting

    def get_string(self, key: str) -> str | None:
        """``xlu_cfg_get_string``: the value, or None when the key is absent."""
        found = self.get_setting_string(key)
        return found[0] if found is not None else None

    def get_long(self, key: str, low: int | None = None, high: int | None = None) -> int | None:
        """``xlu_cfg_get_long`` (``_bounded_long`` with bounds): C's ``strtol(s, 0)``."""
        found = self.get_setting_string(key)
        if found is None:
            return None
        text, setting = found
        if setting.added:
            raise self._fail(setting, f"can't use += with numbers for parameter `{key}'")
        number, used, out_of_range = c_strtol(text, 0)
        if out_of_range:
            raise self._fail(setting, f"parameter `{key}' could not be parsed as a number: "
                                      "Numerical result out of range")
        if number is None or used != len(text):
            raise self._fail(setting, f"parameter `{key}' is not a valid number")
        if low is not None and number < low:
            raise self._fail(setting, f"value `{number}' is smaller than minimum bound "
                                      f"'{low}'")
        if high is not None and number > high:
            raise self._fail(setting, f"value `{number}' is greater than maximum bound "
                                      f"'{high}'")
        return number

    def get_bool(self, key: str) -> bool | None:
        """``xlu_cfg_get_defbool``: a number, true unless 0."""
        number = self.get_long(key)
        return None if number is None else number != 0

    def get_list(self, key: str) -> tuple[tuple[Value, ...], Setting] | None:
        """``xlu_cfg_get_list``: the items and their setting."""
        setting = self.lookup(key)
        if setting is None:
            return None
        if isinstance(setting.value, str):
            raise self._fail(setting, f"parameter `{key}' is a single value but should be "
                                      "a list")
        return setting.value, setting


def parse_text(text: str, source: str = "<string>", *,
               failure: str = "Failed to parse config") -> ParsedConfig:
    """Parse ``text`` as xl does, naming ``source`` in messages.

    A syntax error raises :class:`ConfigError` whose message is every line xl
    would print, ending with ``failure``'s line (``Failed to parse config:
    Invalid argument`` for a domain's file, ``... config file: ...`` for
    ``xl.conf``).
    """
    parser = _Parser(text, source)
    parser.parse()
    if parser.failed:
        lines = parser.messages
        if parser.lexer.likely_python:
            lines.append(_PYTHON_WARNING)
        lines.append(f"{failure}: Invalid argument")
        raise ConfigError("\n".join(lines), source=source, line=parser.first_line)
    return ParsedConfig(source, tuple(parser.settings))


def with_overrides(text: str, overrides: Sequence[str]) -> str:
    """The text xl parses for ``xl create FILE KEY=VALUE...``: the file, a newline,
    then each override on its own line. Values keep xl's grammar (a string needs
    its quotes: ``'name="web2"'``), and lines are counted on past the file's end.
    """
    if not overrides:
        return text
    return text + "\n" + "".join(f"{item}\n" for item in overrides) + "\n"


def read_text(path: str) -> str:
    """A configuration file's text, with xl's message when it cannot be read."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ConfigError(f"Failed to read config file: {path}: {error.strerror}",
                          source=path) from None
    try:
        return data.decode()
    except UnicodeDecodeError as error:
        # xl reads bytes; text here is UTF-8, and a file that is not is refused
        line = data[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: config file is not UTF-8 text", source=path,
                          line=line) from None


def parse_file(path: str, overrides: Sequence[str] = ()) -> ParsedConfig:
    """Read and parse a domain's config file, with ``xl create``'s overrides."""
    return parse_text(with_overrides(read_text(path), overrides), path)
