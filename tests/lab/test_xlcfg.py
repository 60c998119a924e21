"""xl's config grammar: what parses, and the exact messages of what does not.

Every expected message here was checked against Xen's own parser
(libxlu_cfg_{l,y,}.c built from Xen's tree) fed the same text.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenstore.lab.xlcfg import ConfigError, Setting, parse_file, parse_text, with_overrides

FAILED = "Failed to parse config: Invalid argument"
PYTHON = ("warning: Config file looks like it contains Python code.\n"
          "warning:  Arbitrary Python is no longer supported.\n"
          "warning:  See https://wiki.xen.org/wiki/PythonInXlConfig")

# text -> the settings, in order: (key, value, line, added)
GRAMMAR = [
    ('name = "debian"\n', [("name", "debian", 1, False)]),
    ("name = 'debian'", [("name", "debian", 1, False)]),  # no final newline
    ("a = 'it\\'s'\n", [("a", "it's", 1, False)]),
    ('a = "it\'s"; b = \'say "hi"\'\n', [("a", "it's", 1, False), ("b", 'say "hi"', 1, False)]),
    ('a = "t\\tn\\nq\\"b\\\\r\\r"\n', [("a", 't\tn\nq"b\\r\r', 1, False)]),
    ('a = "\\a\\b\\f\\v"\n', [("a", "\a\b\f\v", 1, False)]),
    # xl's octal escapes swallow their digits and yield nothing
    ('a = "a\\101b"\n', [("a", "ab", 1, False)]),
    ("memory = 1024\nhex = 0x400\noct = 0755\n",
     [("memory", "1024", 1, False), ("hex", "0x400", 2, False), ("oct", "0755", 3, False)]),
    ("a = 1; b = 2 ;c=3;\n", [("a", "1", 1, False), ("b", "2", 1, False), ("c", "3", 1, False)]),
    ("# top\na = 1 # trailing\n\n   # indented\nb = 2\n",
     [("a", "1", 2, False), ("b", "2", 5, False)]),
    ('disk = [ "a",\n         "b",\n       ]\n', [("disk", ("a", "b"), 1, False)]),
    ("a = [\n\n1\n\n,\n2]\n", [("a", ("1", "2"), 1, False)]),
    ("a = [1,]\nb = []\n", [("a", ("1",), 1, False), ("b", (), 2, False)]),
    ('x = [1, [2, "3"], []]\n', [("x", ("1", ("2", "3"), ()), 1, False)]),
    ('extra = "a"\nextra += " b"\n', [("extra", "a", 1, False), ("extra", "a b", 2, True)]),
    ('disk = ["x"]\ndisk += ["y", "z"]\n',
     [("disk", ("x",), 1, False), ("disk", ("x", "y", "z"), 2, True)]),
    ('a += "x"\n', [("a", "x", 1, True)]),
    ('vif.default.bridge = "br0"\nx_1.y = 2\n',
     [("vif.default.bridge", "br0", 1, False), ("x_1.y", "2", 2, False)]),
    ("", []),
    ("\n;\n", []),
    # a stray character at the very end of a file without a newline is not seen
    ("a = 1 #", [("a", "1", 1, False)]),
]


@pytest.mark.parametrize(("text", "expected"), GRAMMAR)
def test_grammar(text: str, expected: list[tuple[object, ...]]) -> None:
    config = parse_text(text, "f.cfg")
    assert [(s.key, s.value, s.line, s.added) for s in config.settings] == expected


def test_last_setting_wins_and_list_items_keep_their_lines() -> None:
    config = parse_text('a = 1\ndisk = ["x",\n  "y"]\na = 2\n')
    assert config.lookup("a") == Setting("a", "2", 4)
    assert config.lookup("disk") == Setting("disk", ("x", "y"), 2, item_lines=(2, 3))
    assert config.lookup("nothing") is None


def _lines(*lines: str) -> str:
    return "\n".join(lines)


# text -> xl's output (every line it prints before it gives up)
SYNTAX_ERRORS = [
    ("a = 1\nb = = 2\n", "f.cfg:2: config parsing error near `=': syntax error, "
     "unexpected '=', expecting STRING or NUMBER or '['"),
    # at a line's end xl names the line before (here: line 0)
    ("a =\nb = 2\n", "f.cfg:0: config parsing error near <newline>: syntax error, "
     "unexpected NEWLINE, expecting STRING or NUMBER or '['"),
    ("name = debian\n", "f.cfg:1: config parsing error near `debian': syntax error, "
     "unexpected IDENT, expecting STRING or NUMBER or '['"),
    ('name = "x" type = "pv"\n', "f.cfg:1: config parsing error near `type': syntax error, "
     "unexpected IDENT, expecting $end"),
    ("a = 1 2\n", "f.cfg:1: config parsing error near `2': syntax error, "
     "unexpected NUMBER, expecting $end"),
    ("a = [1 2]\n", "f.cfg:1: config parsing error near `2': syntax error, "
     "unexpected NUMBER, expecting ']'"),
    ('disk = [ "a",\n "b"\n "c" ]\n', "f.cfg:3: config parsing error near `\"c\"': "
     "syntax error, unexpected STRING, expecting ']'"),
    ("a = [,]\n", "f.cfg:1: config parsing error near `,': syntax error, "
     "unexpected ',', expecting ']'"),
    ("= 1\n", "f.cfg:1: config parsing error near `=': syntax error, "
     "unexpected '=', expecting $end or IDENT or NEWLINE or ';'"),
    ("a 1\n", "f.cfg:1: config parsing error near `1': syntax error, "
     "unexpected NUMBER, expecting += or '='"),
    ("a = ", "f.cfg:1: config parsing error near `': syntax error, "
     "unexpected $end, expecting STRING or NUMBER or '['"),
    ("memory = 1024M\n", "f.cfg:1: config parsing error near `M': lexical error"),
    ('Name = "x"\n', "f.cfg:1: config parsing error near `Name': lexical error"),
    ('kernel = "/boot/vmlinuz\n',
     "f.cfg:1: config parsing error near `\"/boot/vmlinuz': lexical error"),
    ("a = 1\r\n", "f.cfg:1: config parsing error near `\r': lexical error"),
    ("memory = 512 # MiB\nvcpus = 2 # no newline at the end",
     "f.cfg:2: config parsing error near `#': lexical error"),
    ("memory = 1.5\n", "f.cfg:1: config parsing error near `.5': lexical error\n" + PYTHON),
    ('a = "\\x41"\n', "f.cfg:1: config parsing error near `\"\\x41\"': invalid digit after "
     "backslash hexnumerical character escape in quoted string"),
    ('a = "\\1"\n', "f.cfg:1: config parsing error near `\"\\1\"': invalid digit after "
     "backslash octalnumerical character escape in quoted string"),
    ('a = "\\q"\n', "f.cfg:1: config parsing error near `\"\\q\"': invalid character after "
     "backlash in quoted string"),
    ('a = "x"\na += ["y"]\n', "f.cfg:2: config parsing error near `]': can't add [list] "
     'to "string" or vice versa'),
    ("a = = 1\nb = = 2\n", _lines(
        "f.cfg:1: config parsing error near `=': syntax error, unexpected '=', "
        "expecting STRING or NUMBER or '['",
        "f.cfg:2: config parsing error near `=': syntax error, unexpected '=', "
        "expecting STRING or NUMBER or '['")),
    # an error right after recovering is not reported, the next one is
    ("a = = 1\n= 2\nc = = 3\n", _lines(
        "f.cfg:1: config parsing error near `=': syntax error, unexpected '=', "
        "expecting STRING or NUMBER or '['",
        "f.cfg:3: config parsing error near `=': syntax error, unexpected '=', "
        "expecting STRING or NUMBER or '['")),
]


@pytest.mark.parametrize(("text", "printed"), SYNTAX_ERRORS)
def test_syntax_errors(text: str, printed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "f.cfg")
    assert caught.value.message == f"{printed}\n{FAILED}"
    assert caught.value.exit_code == 1
    assert caught.value.source == "f.cfg"
    assert caught.value.line == int(printed.split(":")[1])


def test_xl_conf_says_config_file() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text("a = \n", "/etc/xen/xl.conf", failure="Failed to parse config file")
    assert caught.value.message.endswith("\nFailed to parse config file: Invalid argument")


def test_overrides_are_lines_after_the_file() -> None:
    text = 'name = "a"\nmemory = 512\n'
    assert with_overrides(text, ["memory=1024", 'name="b"']) == (
        text + '\nmemory=1024\nname="b"\n\n')
    assert with_overrides(text, []) == text
    config = parse_text(with_overrides(text, ["memory=1024"]), "f.cfg")
    assert config.lookup("memory") == Setting("memory", "1024", 4)


def test_an_override_keeps_the_grammar() -> None:
    # as with xl, a string on the command line needs its quotes: 'name="web2"'
    with pytest.raises(ConfigError) as caught:
        parse_text(with_overrides('name = "a"\n', ["name=web2"]), "f.cfg")
    assert caught.value.message == (
        "f.cfg:3: config parsing error near `web2': syntax error, unexpected IDENT, "
        "expecting STRING or NUMBER or '['\n" + FAILED)


def test_parse_file(tmp_path: Path) -> None:
    path = tmp_path / "g.cfg"
    path.write_text('name = "g"\nmemory = 256\n')
    config = parse_file(str(path), ["memory=512"])
    assert config.source == str(path)
    assert config.lookup("memory") == Setting("memory", "512", 4)
    with pytest.raises(ConfigError) as caught:
        parse_file(str(path) + ".missing")
    assert caught.value.message == (f"Failed to read config file: {path}.missing: "
                                    "No such file or directory")
    path.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse_file(str(path))


# typed readers: xl's warnings, as errors here
READERS = [
    ("memory = [1]\n", "get_long", "f.cfg:1: parameter `memory' is a list but should be a "
     "single value"),
    ('memory = "lots"\n', "get_long", "f.cfg:1: parameter `memory' is not a valid number"),
    ("memory = 0x\n", "get_long", "f.cfg:1: parameter `memory' is not a valid number"),
    ("memory = 1\nmemory += 2\n", "get_long", "f.cfg:2: can't use += with numbers for "
     "parameter `memory'"),
    ("memory = 99999999999999999999\n", "get_long", "f.cfg:1: parameter `memory' could not "
     "be parsed as a number: Numerical result out of range"),
    ('disk = "phy:/x,xvda,w"\n', "get_list", "f.cfg:1: parameter `disk' is a single value "
     "but should be a list"),
    ('name = ["a"]\n', "get_string", "f.cfg:1: parameter `name' is a list but should be a "
     "single value"),
]


@pytest.mark.parametrize(("text", "reader", "message"), READERS)
def test_typed_reader_errors(text: str, reader: str, message: str) -> None:
    config = parse_text(text, "f.cfg")
    key = text.split()[0]
    with pytest.raises(ConfigError) as caught:
        getattr(config, reader)(key)
    assert caught.value.message == message
    assert caught.value.key == key


def test_numbers_read_as_c_does() -> None:
    config = parse_text('a = 0x400\nb = 010\nc = " 12"\nd = "-3"\ne = 0\n')
    assert [config.get_long(k) for k in "abcde"] == [1024, 8, 12, -3, 0]
    assert config.get_bool("e") is False and config.get_bool("a") is True
    assert config.get_long("missing") is None
    with pytest.raises(ConfigError, match="value `8' is greater than maximum bound '7'"):
        config.get_long("b", 0, 7)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1x=+[],;\n #\"'\\.\t0-:A\r\x00é")), max_size=60))
def test_any_text_parses_or_raises_config_error(text: str) -> None:
    try:
        parse_text(text, "f.cfg")
    except ConfigError as error:
        assert error.message.endswith(FAILED)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_unicode_parses_or_raises_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_text(text)


def test_the_readers_import_neither_trio_nor_construct() -> None:
    code = ("import sys, xenstore.lab.xlcfg, xenstore.lab.xlconf, xenstore.lab.xldisk, "
            "xenstore.lab.xlvif; print(sorted({'trio', 'construct'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
