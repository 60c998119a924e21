"""The lexer of xl's configuration files (``libxlu_cfg_l.l``), as flex runs it.

Tokens are matched longest first: ``IDENT`` (``[a-z][._0-9a-z]*``), ``NUMBER``
(``[0-9][0-9a-fx]*``, kept as text), ``STRING`` (quoted with ``'`` or ``"``,
on one line, with C's escapes), ``NEWLINE`` (a comment runs to it), and
``, [ ] = += ;``. Any other character is a lexical error that takes the
rest of its word with it; one of ``+-.():`` also marks the file as likely
Python (xm's old format), which xl mentions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from xenstore.lab.cnumbers import c_strtol

_IDENT = re.compile(r"[a-z][._0-9a-z]*")
_NUMBER = re.compile(r"[0-9][0-9a-fx]*")
# NUL is left out of strings on purpose: xl's dequoting measures the token with
# strlen and asserts on what it finds, so a NUL in a string aborts xl.
_STRING = {q: re.compile(rf"{q}(?:[^{q}\\\n\x00]|\\[^\n\x00])*{q}") for q in "'\""}
_COMMENT = re.compile(r"#[^\n]*\n")
_NOT_BLANK = re.compile(r"[^ \t\n]+")
_SIMPLE_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b", "f": "\f",
                   "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_PYTHONISH = "+-.():"  # the lexer's [+-.():] (its ',' goes to the ',' rule first)
_PUNCT = {",": "','", "[": "'['", "]": "']'", "=": "'='", ";": "';'"}


@dataclass(frozen=True, slots=True)
class Token:
    """One token, with what the parser and its messages need."""

    kind: str  # bison's name for it: IDENT, STRING, NUMBER, NEWLINE, "+=", "'='"
    text: str  # as matched (xl quotes it in messages)
    line: int  # bison's location: a NEWLINE's is the line it ends
    value: str = ""


class Lexer:
    """``libxlu_cfg_l.l``: longest match, and its error state that swallows a word."""

    def __init__(self, text: str, report: Callable[[int, str, str], None],
                 failed: Callable[[], bool]) -> None:
        self.text = text
        self.pos = 0
        self.lineno = 1
        self.last_text = ""  # flex's yytext, quoted by "can't add" errors
        # yytext at the end: the buffer's NUL, one character long, or a pending stray
        self.eof_text = "\0"
        self.at_end = False
        self.likely_python = False
        self._report = report  # (line, yytext, message)
        self._failed = failed

    def _lexical_error(self, text: str, message: str) -> None:
        self._report(self.lineno, text, message)

    def next(self) -> Token | None:
        """The next token; None at the end (the parser makes it ``$end``)."""
        token = self._next()
        self.at_end = token is None
        return token

    def _next(self) -> Token | None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            pos, c = self.pos, self.text[self.pos]
            if c in " \t":
                self.pos += 1
                continue
            match = None
            if "a" <= c <= "z":
                match, kind = _IDENT.match(text, pos), "IDENT"
            elif "0" <= c <= "9":
                match, kind = _NUMBER.match(text, pos), "NUMBER"
            elif c in "'\"":
                match, kind = _STRING[c].match(text, pos), "STRING"
            elif c == "#":
                match, kind = _COMMENT.match(text, pos), "NEWLINE"
            elif c == "\n":
                self.pos += 1
                self.lineno += 1
                return self._got("NEWLINE", "\n", self.lineno - 1)
            elif c == "+" and text.startswith("+=", pos):
                self.pos += 2
                return self._got("+=", "+=", self.lineno)
            elif c in _PUNCT:
                self.pos += 1
                return self._got(_PUNCT[c], c, self.lineno)
            if match is not None:
                return self._matched(kind, match.group())
            self.likely_python |= c in _PYTHONISH
            self.pos += 1
            if not self._swallow(c):
                return None
            if self.text[self.pos - 1] == "\n":  # the error state's own NEWLINE
                return self._got("NEWLINE", self.last_text, self.lineno)
        return None

    def _matched(self, kind: str, matched: str) -> Token:
        self.pos += len(matched)
        if kind == "NEWLINE":  # a comment, with the newline ending it
            self.lineno += 1
            return self._got(kind, matched, self.lineno - 1)
        token = self._got(kind, matched, self.lineno)
        if kind == "STRING":
            # after any error xl stops decoding strings, and with it their complaints
            value = "" if self._failed() else self._dequote(matched)
            return Token(kind, matched, token.line, value)
        return Token(kind, matched, token.line, matched)

    def _swallow(self, first: str) -> bool:
        """The error state after a stray character: report it with the word (or one
        blank, or the newline) that follows. False at the end of the text, where flex
        ends in this state without reporting anything."""
        if self.pos >= len(self.text):
            self.eof_text = first  # what flex's yytext holds at the end, unreported
            return False
        c = self.text[self.pos]
        if c in " \t\n":
            taken = c
        else:
            match = _NOT_BLANK.match(self.text, self.pos)
            assert match is not None
            taken = match.group()
        self.pos += len(taken)
        if taken == "\n":
            self.lineno += 1
        self.last_text = first + taken
        self._lexical_error(self.last_text, "lexical error")
        return True

    def _got(self, kind: str, matched: str, line: int) -> Token:
        self.last_text = matched
        return Token(kind, matched, line, matched)

    def _dequote(self, token: str) -> str:
        """The string's value, decoding escapes as ``xlu__cfgl_dequote`` does.

        Its numeric escapes are broken and followed here as they are: ``\\x``
        is always refused, and an octal escape swallows the digit and up to
        three following characters (as a decimal number) and yields nothing.
        """
        out: list[str] = []
        body, i = token[1:-1], 0
        while i < len(body):
            c = body[i]
            i += 1
            if c != "\\":
                out.append(c)
                continue
            nc = body[i]
            i += 1
            if nc in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[nc])
            elif nc == "x":
                self._lexical_error(token, "invalid digit after backslash hexnumerical "
                                    "character escape in quoted string")
                break
            elif "0" <= nc <= "7":
                # strtoul(base 10) over the next three characters, the quote included
                _, used, _ = c_strtol((body + token[-1])[i:i + 3], 10)
                if used <= 1:
                    self._lexical_error(token, "invalid digit after backslash octalnumerical "
                                        "character escape in quoted string")
                    break
                i += used
            else:
                self._lexical_error(token, "invalid character after backlash in quoted string")
                break
        return "".join(out)
