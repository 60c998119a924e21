"""The xenstore-* tools against a daemon: stdout, stderr, exit status, store.

Every expected value here was taken from Debian's xenstore-utils 4.17 (the C
tools) on Xen's C xenstored, and is checked against them again whenever
``XS_TEST_C_TOOLS`` is set (see conftest.py). Each tool runs with argv[0] set
to its bare name, so the usage lines read ``Usage: xenstore-read ...``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.tools import helpers
from tests.tools.conftest import Tools
from xenstore.client import Client

TOOLS = ("read", "write", "rm", "exists", "list", "ls", "chmod")

BASIC = (
    ("/tt/a", b"1"),
    ("/tt/a/b", b"2"),
    ("/tt/c", b"3"),
    ("/tt/e", b""),
    ("/tt/e/f", b""),
)
BASIC_STATE = {
    "/tt": (b"", ["n0"]),
    "/tt/a": (b"1", ["n0"]),
    "/tt/a/b": (b"2", ["n0"]),
    "/tt/c": (b"3", ["n0"]),
    "/tt/e": (b"", ["n0"]),
    "/tt/e/f": (b"", ["n0"]),
}

USAGE = {
    "read": b"[-h] [-p] [-s] [-R] key [...]",
    "write": b"[-h] [-s] [-R] key value [...]",
    "rm": b"[-h] [-s] [-t] key [...]",
    "exists": b"[-h] [-p] [-s] key [...]",
    "list": b"[-h] [-p] [-s] key [...]",
    "ls": b"[-h] [-f] [-p] [-s] [path]",
    "chmod": b"[-h] [-u] [-r] [-s] key <mode [modes...]>",
    "watch": b"[-h] [-n NR] key",
}

# Every byte, as the C tools escape it (taken from xenstore-read).
ALL_BYTES_ESCAPED = (
    rb"\000\001\002\003\004\005\006\007\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14"
    rb"\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"
    rb""" !"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"""
    rb"abcdefghijklmnopqrstuvwxyz{|}~\x7f"
    + b"".join(b"\\x%02x" % byte for byte in range(0x80, 0x100))
)


def usage(tool: str) -> bytes:
    name = helpers.command(tool).encode()
    return name + b": Usage: " + name + b" " + USAGE[tool] + b"\n"


# -- usage and option parsing -------------------------------------------------


@pytest.mark.parametrize("tool", [t for t in TOOLS if t != "ls"])
@pytest.mark.parametrize("args", [(), ("-h",), ("--help",), ("-s",), ("--he",), ("--",)])
def test_usage_without_operands(tools: Tools, tool: str, args: tuple[str, ...]) -> None:
    # 4.17 exits 1 even for -h, and still advertises the obsolete -s.
    assert tools.run(tool, *args) == (1, b"", usage(tool))


@pytest.mark.parametrize("tool", TOOLS)
def test_help_wins_over_operands_and_later_options(tools: Tools, tool: str) -> None:
    tools.reset(*BASIC)
    # -h exits before -x is parsed, so getopt never complains about it.
    assert tools.run(tool, "/tt/a", "-h", "-x") == (1, b"", usage(tool))
    assert tools.dump() == BASIC_STATE


def test_ls_help(tools: Tools) -> None:
    assert tools.run("ls", "-h") == (1, b"", usage("ls"))
    assert tools.run("ls", "--help=3", "/tt/nope") == (
        1,
        b"",
        b"xenstore-ls: option '--help' doesn't allow an argument\n"
        b"xenstore-ls: xs_directory (/tt/nope): No such file or directory\n",
    )


@pytest.mark.parametrize(
    ("tool", "flag"),
    [
        ("read", "-t"),
        ("read", "-f"),
        ("read", "-u"),
        ("read", "--recurse"),
        ("read", "-n5"),
        ("write", "-p"),
        ("write", "--prefix"),
        ("rm", "-p"),
        ("rm", "-R"),
        ("exists", "-p"),
        ("exists", "-R"),
        ("list", "-R"),
        ("list", "-t"),
        ("ls", "-t"),
        ("ls", "-R"),
        ("ls", "-u"),
        ("chmod", "-p"),
        ("chmod", "-t"),
        ("chmod", "--flat"),
        ("chmod", "--number=1"),
    ],
)
def test_flag_of_another_mode_is_a_usage_error(tools: Tools, tool: str, flag: str) -> None:
    tools.reset(*BASIC)
    assert tools.run(tool, flag, "/tt/a", "n0") == (1, b"", usage(tool))
    assert tools.dump() == BASIC_STATE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-x",), b"invalid option -- 'x'"),
        (("-:",), b"invalid option -- ':'"),
        (("-W",), b"invalid option -- 'W'"),
        (("--bogus",), b"unrecognized option '--bogus'"),
        (("--bogus=3",), b"unrecognized option '--bogus=3'"),
        (("---",), b"unrecognized option '---'"),
        (("--r",), b"option '--r' is ambiguous; possibilities: '--recurse' '--raw'"),
        (
            ("--=x",),
            b"option '--=x' is ambiguous; possibilities: '--help' '--flat' '--prefix' '--tidy'"
            b" '--upto' '--recurse' '--number' '--raw'",
        ),
        (("--raw=1",), b"option '--raw' doesn't allow an argument"),
        (("--ra=1",), b"option '--raw' doesn't allow an argument"),
    ],
)
def test_getopt_complaints_are_not_fatal(
    tools: Tools, args: tuple[str, ...], message: bytes
) -> None:
    tools.reset(*BASIC)
    result = tools.run("read", *args, "/tt/a")
    assert result == (0, b"1\n", b"xenstore-read: " + message + b"\n")


def test_getopt_complaints_name_argv0_unshortened(tools: Tools) -> None:
    tools.reset(*BASIC)
    result = tools.run("read", "-x", "/tt/a", argv0="/sbin/xenstore-read")
    # getopt prints argv[0]; err(3) its basename.
    assert result == (0, b"1\n", b"/sbin/xenstore-read: invalid option -- 'x'\n")
    result = tools.run("read", "-x", argv0="/sbin/xenstore-read")
    assert result == (
        1,
        b"",
        b"/sbin/xenstore-read: invalid option -- 'x'\n"
        b"xenstore-read: Usage: /sbin/xenstore-read [-h] [-p] [-s] [-R] key [...]\n",
    )


def test_missing_option_argument(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("read", "/tt/a", "-n") == (
        0,
        b"1\n",
        b"xenstore-read: option requires an argument -- 'n'\n",
    )
    assert tools.run("read", "/tt/a", "--number") == (
        0,
        b"1\n",
        b"xenstore-read: option '--number' requires an argument\n",
    )
    # -n takes the next word, whatever it is; then it is a usage error in read.
    assert tools.run("read", "-n", "/tt/a") == (1, b"", usage("read"))


def test_options_are_permuted_and_dashdash_ends_them(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("read", "/tt/c", "-p") == (0, b"/tt/c: 3\n", b"")
    assert tools.run("read", "/tt/c", "--", "-p") == (
        1,
        b"3\n",
        b"xenstore-read: couldn't read path -p\n",
    )
    assert tools.run("read", "-pR", "/tt/a", "-s", "/tt/c") == (0, b"/tt/a: 1/tt/c: 3", b"")
    assert tools.run("read", "--pre", "--ra", "/tt/a") == (0, b"/tt/a: 1", b"")
    assert tools.run("read", "-", "/tt/a") == (1, b"", b"xenstore-read: couldn't read path -\n")


def test_posixly_correct_stops_at_the_first_operand(tools: Tools) -> None:
    tools.reset(*BASIC)
    for value in ("", "1"):
        result = tools.run("read", "/tt/c", "-p", env={"POSIXLY_CORRECT": value})
        assert result == (1, b"3\n", b"xenstore-read: couldn't read path -p\n")
    result = tools.run("read", "-p", "/tt/c", env={"POSIXLY_CORRECT": "1"})
    assert result == (0, b"/tt/c: 3\n", b"")


# -- read ----------------------------------------------------------------------


def test_read(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("read", "/tt/a") == (0, b"1\n", b"")
    assert tools.run("read", "/tt/a", "/tt/c", "/tt/e") == (0, b"1\n3\n\n", b"")
    assert tools.run("read", "-p", "/tt/a", "/tt/e") == (0, b"/tt/a: 1\n/tt/e: \n", b"")
    assert tools.run("read", "--prefix", "--raw", "/tt/a", "/tt/c") == (0, b"/tt/a: 1/tt/c: 3", b"")
    assert tools.run("read", "-R", "/tt/e") == (0, b"", b"")


def test_read_failure_keeps_earlier_output(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("read", "/tt/a", "/tt/nope", "/tt/c") == (
        1,
        b"1\n",
        b"xenstore-read: couldn't read path /tt/nope\n",
    )
    assert tools.run("read", "") == (1, b"", b"xenstore-read: couldn't read path \n")


def test_read_escapes_every_byte(tools: Tools) -> None:
    tools.reset(("/tt/all", bytes(range(256))))
    assert tools.run("read", "/tt/all") == (0, ALL_BYTES_ESCAPED + b"\n", b"")
    assert tools.run("read", "-R", "/tt/all") == (0, bytes(range(256)), b"")
    assert tools.run("read", "-p", "/tt/all") == (0, b"/tt/all: " + ALL_BYTES_ESCAPED + b"\n", b"")


def test_read_non_utf8_path_is_passed_through(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("read", b"/tt/\xff") == (
        1,
        b"",
        b"xenstore-read: couldn't read path /tt/\xff\n",
    )
    assert tools.run("read", b"-\xff", "/tt/a") == (
        0,
        b"1\n",
        b"xenstore-read: invalid option -- '\xff'\n",
    )


def test_read_too_long_a_request_fails_locally(tools: Tools) -> None:
    tools.reset(*BASIC)
    # 4095 bytes + NUL fit XENSTORE_PAYLOAD_MAX (the daemon then refuses the path).
    longest = "/" + "v" * 4094
    assert tools.run("read", longest) == (
        1,
        b"",
        f"xenstore-read: couldn't read path {longest}\n".encode(),
    )
    too_long = "/" + "v" * 4095
    assert tools.run("read", too_long) == (
        1,
        b"",
        f"xenstore-read: couldn't read path {too_long}\n".encode(),
    )


# -- write -----------------------------------------------------------------------


def test_write(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("write", "/tt/x", "1") == (0, b"", b"")
    assert tools.run("write", "/tt/y/z", "2", "/tt/c", "", "/tt/a", "one") == (0, b"", b"")
    assert tools.dump() == {
        **BASIC_STATE,
        "/tt/x": (b"1", ["n0"]),
        "/tt/y": (b"", ["n0"]),
        "/tt/y/z": (b"2", ["n0"]),
        "/tt/c": (b"", ["n0"]),
        "/tt/a": (b"one", ["n0"]),
    }


@pytest.mark.parametrize(
    ("arg", "stored"),
    [
        (r"plain", b"plain"),
        (r"a\tb\nc\rd\\e", b"a\tb\nc\rd\\e"),
        (r"\000\001\x41\101\7\08", b"\0\x01AA\x07\x008"),
        (r"abc\\", b"abc\\"),
        # A trailing lone backslash stores the string's NUL terminator.
        ("abc\\", b"abc\0"),
        (r"\777\8\9\q", b"\xff89q"),
        # \x reads with sscanf("%2x"): blanks skipped, a sign, 0x is 0.
        (r"\x\xg\x-1\x 5\x+f\x0x1\xfff", b"xxg\xff\x05\x0f\x001\xfff"),
        ("\\x\t\n41", b"A"),
        (r"\x1", b"\x01"),
    ],
)
def test_write_unescapes_as_c_does(tools: Tools, arg: str, stored: bytes) -> None:
    tools.reset(*BASIC)
    assert tools.run("write", "/tt/x", arg) == (0, b"", b"")
    assert tools.dump()["/tt/x"] == (stored, ["n0"])


def test_write_every_byte(tools: Tools) -> None:
    tools.reset(*BASIC)
    escaped = "".join(f"\\x{byte:02x}" for byte in range(256))
    assert tools.run("write", "/tt/x", escaped) == (0, b"", b"")
    assert tools.dump()["/tt/x"] == (bytes(range(256)), ["n0"])
    # -R stores the argument's bytes as they are (all but NUL can be passed).
    assert tools.run("write", "-R", "/tt/x", bytes(range(1, 256))) == (0, b"", b"")
    assert tools.dump()["/tt/x"] == (bytes(range(1, 256)), ["n0"])
    assert tools.run("write", "--raw", "/tt/x", r"a\x41") == (0, b"", b"")
    assert tools.dump()["/tt/x"] == (rb"a\x41", ["n0"])


def test_write_usage(tools: Tools) -> None:
    for args in ((), ("/tt/x",), ("/tt/x", "1", "/tt/y")):
        assert tools.run("write", *args) == (1, b"", usage("write"))


def test_write_failure_aborts_the_transaction(tools: Tools) -> None:
    tools.reset(*BASIC)
    result = tools.run("write", "/tt/x", "1", "/tt/bad path", "2")
    assert result == (1, b"", b"xenstore-write: could not write path /tt/bad path\n")
    assert tools.dump() == BASIC_STATE


def test_write_too_long_fails_locally(tools: Tools) -> None:
    tools.reset(*BASIC)
    # "/tt/x\0" and 4090 bytes fill XENSTORE_PAYLOAD_MAX exactly; one more is E2BIG.
    result = tools.run("write", "/tt/x", "v" * 4091)
    assert result == (1, b"", b"xenstore-write: could not write path /tt/x\n")
    result = tools.run("write", "/tt/y", "1", "/tt/x", "v" * 5000)
    assert result == (1, b"", b"xenstore-write: could not write path /tt/x\n")
    assert tools.dump() == BASIC_STATE


# -- rm ----------------------------------------------------------------------------


def test_rm(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("rm", "/tt/c", "/tt/a") == (0, b"", b"")
    assert tools.dump() == {
        "/tt": (b"", ["n0"]),
        "/tt/e": (b"", ["n0"]),
        "/tt/e/f": (b"", ["n0"]),
    }
    # A missing node whose parent exists is no error.
    assert tools.run("rm", "/tt/nope") == (0, b"", b"")


def test_rm_failure_undoes_the_others(tools: Tools) -> None:
    tools.reset(*BASIC)
    result = tools.run("rm", "/tt/a", "/tt/nope/x", "/tt/c")
    assert result == (1, b"", b"xenstore-rm: could not remove path /tt/nope/x\n")
    assert tools.dump() == BASIC_STATE


def test_rm_tidy(tools: Tools) -> None:
    tools.reset(*BASIC)
    # f goes, then e (empty value, no children left); /tt keeps a and c.
    assert tools.run("rm", "-t", "/tt/e/f") == (0, b"", b"")
    assert tools.dump() == {k: v for k, v in BASIC_STATE.items() if not k.startswith("/tt/e")}
    # Up to the top: /tt goes too, then "" cannot be read and it stops.
    tools.reset(("/tt/x/y/z", b"1"))
    assert tools.run("rm", "--tidy", "/tt/x/y/z") == (0, b"", b"")
    assert tools.dump() == {}


def test_rm_tidy_keeps_parents_with_a_value_or_children(tools: Tools) -> None:
    # The value test is by length: "\0x" is not empty.
    tools.reset(("/tt/p", b"\0x"), ("/tt/p/q", b"1"), ("/tt/a/b", b"1"), ("/tt/a/c", b"1"))
    assert tools.run("rm", "-t", "/tt/p/q", "/tt/a/b") == (0, b"", b"")
    assert tools.dump() == {
        "/tt": (b"", ["n0"]),
        "/tt/p": (b"\0x", ["n0"]),
        "/tt/a": (b"", ["n0"]),
        "/tt/a/c": (b"1", ["n0"]),
    }


def test_rm_errors(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("rm", "-t", "/tt/nope/x") == (
        1,
        b"",
        b"xenstore-rm: could not remove path /tt/nope/x\n",
    )
    assert tools.run("rm", "/") == (1, b"", b"xenstore-rm: could not remove path /\n")
    assert tools.dump() == BASIC_STATE


# -- exists --------------------------------------------------------------------------


def test_exists(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("exists", "/tt/a") == (0, b"", b"")
    assert tools.run("exists", "/tt/a", "/tt/e/f", "-s") == (0, b"", b"")
    assert tools.run("exists", "/tt/a", "/tt/nope") == (1, b"", b"")
    assert tools.run("exists", "") == (1, b"", b"")


# -- list ------------------------------------------------------------------------------


def test_list(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("list", "/tt") == (0, b"a\nc\ne\n", b"")
    assert tools.run("list", "/tt/a/b") == (0, b"", b"")
    assert tools.run("list", "-p", "/tt", "/tt/a") == (0, b"/tt/a\n/tt/c\n/tt/e\n/tt/a/b\n", b"")
    assert tools.run("list", "/tt", "/tt/nope", "/tt/a") == (
        1,
        b"a\nc\ne\n",
        b"xenstore-list: could not list path /tt/nope\n",
    )


def test_list_prefix_of_root_doubles_the_slash(tools: Tools) -> None:
    tools.reset(*BASIC)
    result = tools.run("list", "-p", "/")
    assert result.rc == 0
    assert b"//tt\n" in result.out.splitlines(keepends=True)


# -- ls --------------------------------------------------------------------------------


def test_ls(tools: Tools) -> None:
    tools.reset(*BASIC)
    tree = b'a = "1"\n b = "2"\nc = "3"\ne = ""\n f = ""\n'
    assert tools.run("ls", "/tt") == (0, tree, b"")
    assert tools.run("ls", "/tt/") == (
        1,
        b"",
        b"xenstore-ls: xs_directory (/tt/): Invalid argument\n",
    )
    assert tools.run("ls", "/tt/a", "/tt/e") == (0, b'b = "2"\nf = ""\n', b"")
    assert tools.run("ls", "/tt/a/b") == (0, b"", b"")


def test_ls_perms(tools: Tools) -> None:
    tools.reset(*BASIC, perms={"/tt/c": ["b0", "r0", "w0", "n0"]})
    assert tools.run("ls", "-p", "/tt") == (
        0,
        b'a = "1"  . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n'
        b' b = "2" . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n'
        b'c = "3"  . . . . . . . . . . . . . . . . . . . . . . . . . .  (b0,r0,w0,n0)\n'
        b'e = "" . . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n'
        b' f = ""  . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n',
        b"",
    )


def test_ls_full_paths(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("ls", "-f", "/tt") == (
        0,
        b'/tt/a = "1"\n/tt/a/b = "2"\n/tt/c = "3"\n/tt/e = ""\n/tt/e/f = ""\n',
        b"",
    )
    # No dot leader with -f, but the space before it stays.
    assert tools.run("ls", "--flat", "--prefix", "/tt/a") == (0, b'/tt/a/b = "2"   (n0)\n', b"")


def test_ls_errors(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("ls", "/tt/nope") == (
        1,
        b"",
        b"xenstore-ls: xs_directory (/tt/nope): No such file or directory\n",
    )
    assert tools.run("ls", "") == (1, b"", b"xenstore-ls: xs_directory (): Invalid argument\n")
    # The first tree is printed before the second fails.
    assert tools.run("ls", "/tt/a", "/tt/nope") == (
        1,
        b'b = "2"\n',
        b"xenstore-ls: xs_directory (/tt/nope): No such file or directory\n",
    )
    too_long = "/" + "v" * 4095
    assert tools.run("ls", too_long) == (
        1,
        b"",
        f"xenstore-ls: xs_directory ({too_long}): Argument list too long\n".encode(),
    )


def test_ls_without_path_lists_root(tools: Tools) -> None:
    tools.reset(*BASIC)
    everything = tools.run("ls")
    assert everything == tools.run("ls", "/")
    assert everything.rc == 0
    assert b'tt = ""\n a = "1"\n  b = "2"\n c = "3"\n e = ""\n  f = ""\n' in everything.out


def test_ls_truncates_to_80_columns(tools: Tools) -> None:
    tools.reset(
        ("/tt/" + "n" * 75, b"x"),
        ("/tt/" + "m" * 71, b"v" * 100),
        ("/tt/long", b"w" * 200),
        ("/tt/esc", b"\x01" * 70),
        ("/tt/fits", b"y" * 68),
        ("/tt/over", b"y" * 69),
    )
    assert tools.run("ls", "/tt") == (
        0,
        # The name is cut to 72 columns, then the value gets none.
        b"n" * 72
        + b' = "\\..."\n'
        + b"m" * 71
        + b' = "v\\..."\n'
        + b'long = "'
        + b"w" * 68
        + b'\\..."\n'
        # The raw length decides; the cut may split an escape.
        + b'esc = "'
        + b"\\001" * 17
        + b'\\\\..."\n'
        # 80 columns exactly still fit.
        + b'fits = "'
        + b"y" * 68
        + b'"\n'
        + b'over = "'
        + b"y" * 68
        + b'\\..."\n',
        b"",
    )
    # A cut value gets no dot leader, but still its permissions.
    result = tools.run("ls", "-p", "/tt/long", "/tt")
    assert b'long = "' + b"w" * 68 + b'\\..."  (n0)' in result.out.splitlines()
    assert tools.run("ls", "-f", "/tt")[1].splitlines()[2] == b'/tt/long = "' + b"w" * 200 + b'"'


def test_ls_escapes_values(tools: Tools) -> None:
    tools.reset(("/tt/nul", b"a\0b\\"), ("/tt/all", bytes(range(256))))
    assert tools.run("ls", "/tt") == (
        0,
        b'nul = "a\\000b\\\\"\n' + b'all = "' + ALL_BYTES_ESCAPED[:69] + b'\\..."\n',
        b"",
    )
    assert tools.run("ls", "-f", "/tt") == (
        0,
        b'/tt/nul = "a\\000b\\\\"\n' + b'/tt/all = "' + ALL_BYTES_ESCAPED + b'"\n',
        b"",
    )


def test_ls_deep_tree(tools: Tools) -> None:
    deep = "/tt/" + "/".join(f"d{i}" for i in range(100))
    tools.reset((deep, b"leaf"))
    result = tools.run("ls", "/tt")
    lines = result.out.split(b"\n")
    assert result.rc == 0
    assert len(lines) == 101
    assert lines[0] == b'd0 = ""'
    assert lines[69] == b" " * 69 + b'd69 = ""'
    # The name is cut to 80 - 8 - indent columns: "d7", "d", then nothing...
    assert lines[70] == b" " * 70 + b'd7 = ""'
    assert lines[71] == b" " * 71 + b'd = ""'
    assert lines[72] == b" " * 72 + b' = ""'
    # ...then the precision is negative: no limit at all, for names and values.
    assert lines[73] == b" " * 73 + b'd73 = "\\..."'
    assert lines[99] == b" " * 99 + b'd99 = "leaf\\..."'


def test_ls_on_a_terminal_uses_its_width(tools: Tools, xs_socket: str) -> None:
    tools.reset(("/tt/" + "m" * 31, b"v" * 10), ("/tt/s", b"\x01" * 30))
    wide = b"m" * 31 + b' = "' + b"v" * 10 + b'"'
    cases = {
        # ws_col - 2 = 38 columns.
        40: (b"", b"m" * 30 + b' = "\\..."\r\ns = "' + b"\\001" * 7 + b'\\\\..."\r\n'),
        # 0 and 1 column make the width negative: C then cuts nothing.
        0: (b"", wide + b'\r\ns = "' + b"\\001" * 30 + b'"\r\n'),
        1: (b"-p", wide + b'   (n0)\r\ns = "' + b"\\001" * 30 + b'"   (n0)\r\n'),
        # 2 columns: width 0, names uncut, values cut to nothing.
        2: (
            b"",
            b"m" * 31 + b' = "' + b"v" * 10 + b'\\..."\r\ns = "' + b"\\001" * 30 + b'\\..."\r\n',
        ),
    }
    for columns, (flag, expected) in cases.items():
        args = [flag.decode(), "/tt"] if flag else ["/tt"]
        assert run_on_terminal(tools.impl, xs_socket, columns, "ls", *args) == expected


def run_on_terminal(impl: str, socket_path: str, columns: int, tool: str, *args: str) -> bytes:
    """Run a tool with stdout on a pseudo-terminal ``columns`` wide; return what it printed."""
    import fcntl
    import pty
    import struct
    import termios

    argv, executable = helpers.tool_argv(impl, tool, args)
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        proc = subprocess.run(
            argv,
            executable=executable,
            env=helpers.tool_env(socket_path),
            stdout=slave,
            stderr=subprocess.PIPE,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        os.close(slave)
        slave = -1
        output = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the slave side is closed and drained
                break
            if not chunk:
                break
            output += chunk
        return output
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


# -- chmod -------------------------------------------------------------------------------


def test_chmod(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("chmod", "/tt/a", "n0", "r0", "w0", "b0") == (0, b"", b"")
    # A missing id is atoi("") = 0; atoi stops at the first non-digit.
    assert tools.run("chmod", "/tt/c", "r", "b0x", "w+0") == (0, b"", b"")
    assert tools.dump() == {
        **BASIC_STATE,
        "/tt/a": (b"1", ["n0", "r0", "w0", "b0"]),
        "/tt/c": (b"3", ["r0", "b0", "w0"]),
    }


def test_chmod_recurse_and_upto(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("chmod", "-r", "/tt/e", "r0") == (0, b"", b"")
    assert tools.run("chmod", "--upto", "/tt/a/b", "w0") == (0, b"", b"")
    assert tools.dump() == {
        **BASIC_STATE,
        "/tt": (b"", ["w0"]),
        "/tt/a": (b"1", ["w0"]),
        "/tt/a/b": (b"2", ["w0"]),
        "/tt/e": (b"", ["r0"]),
        "/tt/e/f": (b"", ["r0"]),
    }
    assert tools.run("chmod", "-ur", "/tt/a", "b0") == (0, b"", b"")
    state = tools.dump()
    assert [state[p][1] for p in ("/tt", "/tt/a", "/tt/a/b", "/tt/c")] == [
        ["b0"],
        ["b0"],
        ["b0"],
        ["n0"],
    ]


def test_chmod_recurse_cuts_paths_at_255_bytes(tools: Tools) -> None:
    # 25 levels of 10-byte names: the 24th child path is 268 bytes, cut to 255.
    deep = "/tt/" + "/".join(["abcdefghij"] * 25)
    tools.reset((deep, b"x"))
    cut = ("/tt/" + "/".join(["abcdefghij"] * 24))[:255]
    assert tools.run("chmod", "-r", "/tt", "b0") == (
        1,
        b"",
        f"xenstore-chmod: Error occurred setting permissions on '{cut}':"
        " No such file or directory\n".encode(),
    )
    # The transaction was not committed.
    assert {perms[0] for _, perms in tools.dump().values()} == {"n0"}


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (("/tt/a", "x1"), b"Invalid permission specification: 'x'"),
        (("/tt/a", "n0", "N0"), b"Invalid permission specification: 'N'"),
        (("/tt/a", "r", "1"), b"Invalid permission specification: '1'"),
        # "%c" of the empty string's terminator: a NUL byte.
        (("/tt/a", ""), b"Invalid permission specification: '\0'"),
        (("/tt/a",), b"Error occurred setting permissions on '/tt/a': Invalid argument"),
        (
            ("/tt/nope", "n0"),
            b"Error occurred setting permissions on '/tt/nope': No such file or directory",
        ),
        (
            ("-u", "tt/a", "n0"),
            b"Error occurred setting permissions on 'tt/a': No such file or directory",
        ),
    ],
)
def test_chmod_errors(tools: Tools, args: tuple[str, ...], stderr: bytes) -> None:
    tools.reset(*BASIC)
    assert tools.run("chmod", *args) == (1, b"", b"xenstore-chmod: " + stderr + b"\n")
    assert tools.dump() == BASIC_STATE


def test_chmod_upto_relative_path_runs_out_of_slashes(tools: Tools, xs_socket: str) -> None:
    tools.reset(*BASIC)
    relative = "tt-tools-test"
    with Client(xs_socket) as client:
        home = client.get_domain_path(0)
        client.write(f"{home}/{relative}/x", b"1")
    try:
        assert tools.run("chmod", "-u", f"{relative}/x", "r0") == (
            1,
            b"",
            f"xenstore-chmod: Unable to locate path separator '/' in '{relative}'\n".encode(),
        )
    finally:
        with Client(xs_socket) as client:
            client.rm(f"{home}/{relative}")


def test_chmod_empty_path_does_nothing(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("chmod", "", "r0") == (0, b"", b"")
    assert tools.run("chmod", "", "x0") == (
        1,
        b"",
        b"xenstore-chmod: Invalid permission specification: 'x'\n",
    )


# -- the multiplexer ---------------------------------------------------------------------


def test_multiplexer_dispatches_on_its_first_argument(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("xenstore", "read", "/tt/a") == (0, b"1\n", b"")
    assert tools.run("xenstore", "ls", "-f", "/tt/a") == (0, b'/tt/a/b = "2"\n', b"")
    assert tools.run("xenstore", "write", "/tt/x", "1") == (0, b"", b"")
    assert tools.run("xenstore", "exists", "/tt/x") == (0, b"", b"")
    assert tools.run("xenstore", "list", "/tt/a") == (0, b"b\n", b"")
    assert tools.run("xenstore", "chmod", "/tt/x", "r0") == (0, b"", b"")
    assert tools.run("xenstore", "rm", "/tt/x") == (0, b"", b"")
    assert tools.dump() == BASIC_STATE


def test_multiplexer_usage(tools: Tools) -> None:
    assert tools.run("xenstore") == (1, b"", b"xenstore: Usage: xenstore <mode> [-h] [...]\n")
    for mode in USAGE:
        line = b"xenstore: Usage: xenstore " + mode.encode() + b" " + USAGE[mode] + b"\n"
        assert tools.run("xenstore", mode, "-h") == (1, b"", line)
    # getopt names the mode word, not the program.
    assert tools.run("xenstore", "read", "-x") == (
        1,
        b"",
        b"read: invalid option -- 'x'\n"
        b"xenstore: Usage: xenstore read [-h] [-p] [-s] [-R] key [...]\n",
    )
    assert tools.run("xenstore", "watch", "-n") == (
        1,
        b"",
        b"watch: option requires an argument -- 'n'\n"
        b"xenstore: Usage: xenstore watch [-h] [-n NR] key\n",
    )


@pytest.mark.parametrize("word", ["-h", "--", "foo", "", "xenstore-read", "READ"])
def test_multiplexer_unknown_mode(tools: Tools, word: str) -> None:
    # The C format ends in "\n" and errx() adds another.
    expected = (1, b"", b"xenstore: unknown mode " + word.encode() + b"\n\n")
    assert tools.run("xenstore", word, "/tt/a") == expected


def test_multiplexer_dispatches_on_its_name(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("xenstore", "-p", "/tt/a", argv0="/opt/xenstore-read") == (
        0,
        b"/tt/a: 1\n",
        b"",
    )
    assert tools.run("xenstore", argv0="xenstore-read") == (1, b"", usage("read"))
    assert tools.run("xenstore", "/tt/a", argv0="xenstore-foo") == (
        1,
        b"",
        b"xenstore-foo: unknown mode foo\n\n",
    )
    # Any other name dispatches on the first argument.
    assert tools.run("xenstore", "read", "/tt/a", argv0="xs") == (0, b"1\n", b"")


def test_multiplexer_watch(tools: Tools) -> None:
    tools.reset(*BASIC)
    # A new watch fires once at once.
    assert tools.run("xenstore", "watch", "-n", "1", "/tt/a") == (0, b"/tt/a\n", b"")
    assert tools.run("xenstore", "watch", "--number=0", "/tt/a") == (0, b"", b"")
    assert tools.run("xenstore", "watch", "-n2", "/tt/a", "/tt/c") == (0, b"/tt/a\n/tt/c\n", b"")


# -- connecting ---------------------------------------------------------------------------


def test_xs_open_failures(tools: Tools, tmp_path: object) -> None:
    result = tools.run("read", "/tt/a", env={"XENSTORED_PATH": "/nonexistent/socket"})
    assert result == (1, b"", b"xenstore-read: xs_open: No such file or directory\n")
    # Set but empty still counts as set.
    assert tools.run("ls", env={"XENSTORED_PATH": ""}) == (
        1,
        b"",
        b"xenstore-ls: xs_open: No such file or directory\n",
    )
    # Not a socket: opened as a xenbus device, which a directory cannot be.
    assert tools.run("exists", "/", env={"XENSTORED_PATH": "/"}) == (
        1,
        b"",
        b"xenstore-exists: xs_open: Is a directory\n",
    )
    # sun_path holds 107 bytes and a NUL.
    assert tools.run("list", "/", env={"XENSTORED_PATH": "/" + "x" * 107}) == (
        1,
        b"",
        b"xenstore-list: xs_open: No such file or directory\n",
    )


def test_xs_open_refused(tools: Tools) -> None:
    import socket
    import tempfile

    directory = tempfile.mkdtemp(dir="/tmp")
    path = os.path.join(directory, "socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)  # bound, never listening
    try:
        assert tools.run("read", "/", env={"XENSTORED_PATH": path}) == (
            1,
            b"",
            b"xenstore-read: xs_open: Connection refused\n",
        )
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def test_rundir_is_honoured(tools: Tools, xs_socket: str) -> None:
    if os.path.basename(xs_socket) != "socket":
        pytest.skip("the daemon's socket is not named 'socket'")
    tools.reset(*BASIC)
    env = {"XENSTORED_PATH": None, "XENSTORED_RUNDIR": os.path.dirname(xs_socket)}
    assert tools.run("read", "/tt/a", env=env) == (0, b"1\n", b"")
    env = {"XENSTORED_PATH": None, "XENSTORED_RUNDIR": "/nonexistent"}
    assert tools.run("read", "/tt/a", env=env) == (
        1,
        b"",
        b"xenstore-read: xs_open: No such file or directory\n",
    )


# -- our own packaging --------------------------------------------------------------------


@pytest.mark.parametrize(
    "module", ["multiplexer", "ls", "read", "write", "list", "rm", "exists", "chmod", "control"]
)
def test_tools_import_neither_trio_nor_construct(module: str) -> None:
    code = (
        f"import sys; import xenstore.tools.{module} as m; m.main; "
        "from xenstore.tools import common; [common.load_perform(x) for x in common.MODES]; "
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('trio', 'construct')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_module_entry_point(xs_socket: str) -> None:
    helpers.reset(xs_socket, BASIC)
    proc = subprocess.run(
        [sys.executable, "-m", "xenstore.tools.read", "/tt/a"],
        env=helpers.tool_env(xs_socket),
        capture_output=True,
        timeout=30,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"1\n", b"")


def test_main_in_process(xs_socket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from xenstore.tools import exists

    helpers.reset(xs_socket, BASIC)
    monkeypatch.setenv("XENSTORED_PATH", xs_socket)
    assert exists.main(["/tt/a"], prog="xenstore-exists") == 0
    assert exists.main(["/tt/nope"], prog="xenstore-exists") == 1
    with pytest.raises(SystemExit) as exit_info:
        exists.main([], prog="xenstore-exists")
    assert exit_info.value.code == 1
