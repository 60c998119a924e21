"""What the tools send, against a scripted daemon (tests/tools/fakexs.py).

These pin the conversation itself: which requests go in a transaction, ``T``
or ``F`` at its end, the retry after EAGAIN, the DIRECTORY_PART fallback, the
permission strings, requests refused locally for length. The expected
conversations were recorded from Xen's C tools (run them with
``XS_TEST_C_TOOLS`` set to check again); they need no real daemon.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import cast

import pytest

from tests.tools import helpers
from tests.tools.fakexs import FakeXenstored, Reply, Request, error
from xenstore.protocol.ops import Op

START, END, READ, WRITE, RM = (
    Op.TRANSACTION_START,
    Op.TRANSACTION_END,
    Op.READ,
    Op.WRITE,
    Op.RM,
)
DIRECTORY, DIRECTORY_PART, GET_PERMS, SET_PERMS = (
    Op.DIRECTORY,
    Op.DIRECTORY_PART,
    Op.GET_PERMS,
    Op.SET_PERMS,
)

#: An answer: a payload (sent with the request's op), a Reply, or None to hang up.
Scripted = bytes | Reply | None


class Script:
    """Answers by (op, payload); a list answers in turn, its last item then repeats.

    Unscripted requests get what a daemon would say to a missing node, except
    that transactions start (as id 7) and end fine.
    """

    def __init__(self, rules: Mapping[tuple[Op, bytes], object]) -> None:
        self.rules: dict[tuple[Op, bytes], list[Scripted]] = {
            key: list(value) if isinstance(value, list) else [cast(Scripted, value)]
            for key, value in rules.items()
        }

    def __call__(self, request: Request) -> Reply | None:
        answers = self.rules.get((request.op, request.payload))
        if answers is None:
            if request.op == START:
                return Reply(START, b"7\0")
            if request.op == END:
                return Reply(END, b"OK\0")
            return error("ENOENT")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, bytes):
            return Reply(request.op, answer)
        return answer


@pytest.fixture
def daemon() -> Iterator[list[FakeXenstored]]:
    """A factory list: tests append (via ``serve``) and everything is closed after."""
    started: list[FakeXenstored] = []
    yield started
    for fake in started:
        fake.close()


def serve(daemon: list[FakeXenstored], rules: Mapping[tuple[Op, bytes], object]) -> FakeXenstored:
    fake = FakeXenstored(Script(rules))
    daemon.append(fake)
    return fake


def trace(fake: FakeXenstored) -> list[tuple[Op, int, bytes]]:
    return [(r.op, r.tx, r.payload) for r in fake.requests]


def run(impl: str, fake: FakeXenstored, tool: str, *args: str | bytes) -> helpers.Result:
    return helpers.run_tool(impl, fake.path, tool, *args)


TX = [(START, 0, b"\0")]


def test_single_read_needs_no_transaction(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(daemon, {(READ, b"/a\0"): b"v1"})
    assert run(impl, fake, "read", "/a") == (0, b"v1\n", b"")
    assert trace(fake) == [(READ, 0, b"/a\0")]


def test_reads_share_a_committed_transaction(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(daemon, {(READ, b"/a\0"): b"v1", (READ, b"/b\0"): b"v2"})
    assert run(impl, fake, "read", "/a", "/b") == (0, b"v1\nv2\n", b"")
    assert trace(fake) == [*TX, (READ, 7, b"/a\0"), (READ, 7, b"/b\0"), (END, 7, b"T\0")]


def test_eagain_at_commit_repeats_everything(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(
        daemon,
        {
            (READ, b"/a\0"): [b"old", b"new"],
            (READ, b"/b\0"): b"v2",
            (END, b"T\0"): [error("EAGAIN"), error("EAGAIN"), b"OK\0"],
        },
    )
    # Only the last round's output is printed.
    assert run(impl, fake, "read", "/a", "/b") == (0, b"new\nv2\n", b"")
    round_ = [*TX, (READ, 7, b"/a\0"), (READ, 7, b"/b\0"), (END, 7, b"T\0")]
    assert trace(fake) == round_ * 3


def test_failure_aborts_the_transaction(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(daemon, {(READ, b"/a\0"): b"v1", (READ, b"/c\0"): b"v3"})
    assert run(impl, fake, "read", "/a", "/b", "/c") == (
        1,
        b"v1\n",
        b"xenstore-read: couldn't read path /b\n",
    )
    assert trace(fake) == [*TX, (READ, 7, b"/a\0"), (READ, 7, b"/b\0"), (END, 7, b"F\0")]


def test_eagain_on_abort_is_not_retried(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(daemon, {(READ, b"/a\0"): b"v1", (END, b"F\0"): error("EAGAIN")})
    assert run(impl, fake, "read", "/a", "/b") == (
        1,
        b"",
        b"xenstore-read: couldn't read path /b\nxenstore-read: couldn't end transaction\n",
    )
    assert trace(fake) == [*TX, (READ, 7, b"/a\0"), (READ, 7, b"/b\0"), (END, 7, b"F\0")]


def test_commit_error_discards_the_output(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(daemon, {(DIRECTORY, b"/a\0"): b"x\0", (END, b"T\0"): error("EINVAL")})
    assert run(impl, fake, "list", "/a") == (1, b"", b"xenstore-list: couldn't end transaction\n")


@pytest.mark.parametrize("reply", [error("EQUOTA"), Reply(START, b"0\0"), Reply(START, b"junk\0")])
def test_transaction_start_failure(impl: str, daemon: list[FakeXenstored], reply: Reply) -> None:
    fake = serve(daemon, {(START, b"\0"): reply})
    assert run(impl, fake, "exists", "/a") == (
        1,
        b"",
        b"xenstore-exists: couldn't start transaction\n",
    )
    assert trace(fake) == TX


def test_transaction_id_is_read_with_strtoul_base_0(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(daemon, {(START, b"\0"): b"0x10\0", (READ, b"/a\0"): b""})
    assert run(impl, fake, "exists", "/a") == (0, b"", b"")
    assert trace(fake) == [*TX, (READ, 16, b"/a\0"), (END, 16, b"T\0")]


def test_each_mode_transaction(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(
        daemon, {(DIRECTORY, b"/d\0"): b"x\0", (READ, b"/d/x\0"): b"1", (RM, b"/d\0"): b"OK\0"}
    )
    assert run(impl, fake, "list", "/d") == (0, b"x\n", b"")
    assert run(impl, fake, "ls", "/d") == (0, b'x = "1"\n', b"")
    assert run(impl, fake, "rm", "/d") == (0, b"", b"")
    assert run(impl, fake, "write", "/w", "1") == (
        1,
        b"",
        b"xenstore-write: could not write path /w\n",
    )
    assert trace(fake) == [
        *TX,
        (DIRECTORY, 7, b"/d\0"),
        (END, 7, b"T\0"),
        (DIRECTORY, 0, b"/d\0"),
        (READ, 0, b"/d/x\0"),
        (DIRECTORY, 0, b"/d/x\0"),
        *TX,
        (RM, 7, b"/d\0"),
        (END, 7, b"T\0"),
        (WRITE, 0, b"/w\0" + b"1"),
    ]


def test_directory_part_fallback(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(
        daemon,
        {
            (DIRECTORY, b"/d\0"): error("E2BIG"),
            # The generation changes after the first part: start again.
            (DIRECTORY_PART, b"/d\0" + b"0\0"): [b"5\0aa\0bb\0", b"6\0aa\0bb\0"],
            (DIRECTORY_PART, b"/d\0" + b"6\0"): [b"6\0cc\0\0"],
        },
    )
    assert run(impl, fake, "list", "/d") == (0, b"aa\nbb\ncc\n", b"")
    assert trace(fake) == [
        *TX,
        (DIRECTORY, 7, b"/d\0"),
        (DIRECTORY_PART, 7, b"/d\0" + b"0\0"),
        (DIRECTORY_PART, 7, b"/d\0" + b"6\0"),
        (DIRECTORY_PART, 7, b"/d\0" + b"0\0"),
        (DIRECTORY_PART, 7, b"/d\0" + b"6\0"),
        (END, 7, b"T\0"),
    ]


def test_directory_part_unsupported_is_e2big(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(
        daemon,
        {(DIRECTORY, b"/d\0"): error("E2BIG"), (DIRECTORY_PART, b"/d\0" + b"0\0"): error("ENOSYS")},
    )
    assert run(impl, fake, "ls", "/d") == (
        1,
        b"",
        b"xenstore-ls: xs_directory (/d): Argument list too long\n",
    )


def test_ls_perms_round_trip(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(
        daemon,
        {
            (DIRECTORY, b"/\0"): b"a\0b\0c\0",
            (READ, b"/a\0"): b"1",
            (READ, b"/b\0"): b"2",
            (READ, b"/c\0"): b"3",
            # Read by strtol(..., 0), printed as an int cut to 10 characters.
            (GET_PERMS, b"/a\0"): b"r0x10\0w4294967295\0b 010\0n\t7\0w-2147483648\0",
            (GET_PERMS, b"/b\0"): b"q1\0",
            (GET_PERMS, b"/c\0"): b"r1x\0",
        },
    )
    leader = b"  " + b". " * 25 + b"."  # from column 8 to column 59
    assert run(impl, fake, "ls", "-p") == (
        0,
        b'a = "1"' + leader + b"  (r16,w-1,b8,n7,w-214748364)\n"
        b'b = "2"' + leader + b"\n"
        b'c = "3"' + leader + b"\n",
        b"xenstore-ls: \ncould not access permissions for b: Invalid argument\n"
        b"xenstore-ls: \ncould not access permissions for c: Invalid argument\n",
    )
    assert [r for r in trace(fake) if r[0] == GET_PERMS] == [
        (GET_PERMS, 0, b"/a\0"),
        (GET_PERMS, 0, b"/b\0"),
        (GET_PERMS, 0, b"/c\0"),
    ]


def test_ls_unreadable_node_and_vanishing_children(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(daemon, {(DIRECTORY, b"/\0"): b"a\0", (GET_PERMS, b"/a\0"): b"n0\0"})
    # READ /a fails: the line is "a:" then its own newline; DIRECTORY /a
    # fails with ENOENT below the top: skipped silently.
    assert run(impl, fake, "ls", "-p") == (0, b"a:\n  (n0)\n", b"")


def test_ls_errors_below_the_top_are_fatal(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(
        daemon,
        {
            (DIRECTORY, b"/\0"): b"a\0b\0",
            (READ, b"/a\0"): b"1",
            (DIRECTORY, b"/a\0"): error("EWHATEVER"),  # unknown names are EINVAL
        },
    )
    assert run(impl, fake, "ls") == (
        1,
        b'a = "1"\n',
        b"xenstore-ls: xs_directory (/a): Invalid argument\n",
    )


def test_hang_up_is_ebadf(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(daemon, {(DIRECTORY, b"/x\0"): None})
    assert run(impl, fake, "ls", "/x") == (
        1,
        b"",
        b"xenstore-ls: xs_directory (/x): Bad file descriptor\n",
    )


@pytest.mark.parametrize(
    ("spec", "sent"),
    [
        ("r-1", b"r-1"),
        ("n4294967295", b"n-1"),
        ("b99999999999999999999", b"b-1"),
        ("w2147483648", b"w-214748364"),
        ("w-999999999", b"w-999999999"),
        ("w2147483647", b"w2147483647"),
        ("n", b"n0"),
        ("w 7", b"w7"),
        ("r0x10", b"r0"),
        ("b+3z", b"b3"),
    ],
)
def test_chmod_sends_atoi_ids_as_signed_ints(
    impl: str, daemon: list[FakeXenstored], spec: str, sent: bytes
) -> None:
    fake = serve(daemon, {(SET_PERMS, b"/a\0n0\0" + sent + b"\0"): b"OK\0"})
    assert run(impl, fake, "chmod", "/a", "n0", spec) == (0, b"", b"")
    assert trace(fake) == [*TX, (SET_PERMS, 7, b"/a\0n0\0" + sent + b"\0"), (END, 7, b"T\0")]


def test_chmod_upto_and_recurse_order(impl: str, daemon: list[FakeXenstored]) -> None:
    perms = b"b0\0"
    fake = serve(
        daemon,
        {
            (SET_PERMS, b"/a/b\0" + perms): b"OK\0",
            (SET_PERMS, b"/a\0" + perms): b"OK\0",
            (SET_PERMS, b"/a/b/c\0" + perms): b"OK\0",
            (SET_PERMS, b"/a/b/d\0" + perms): b"OK\0",
            (DIRECTORY, b"/a/b\0"): b"c\0d\0",
            (DIRECTORY, b"/a/b/c\0"): b"",
        },
    )
    assert run(impl, fake, "chmod", "-ur", "/a/b", "b0") == (0, b"", b"")
    assert trace(fake) == [
        *TX,
        (SET_PERMS, 7, b"/a/b\0" + perms),
        (SET_PERMS, 7, b"/a\0" + perms),
        (DIRECTORY, 7, b"/a/b\0"),
        (SET_PERMS, 7, b"/a/b/c\0" + perms),
        (DIRECTORY, 7, b"/a/b/c\0"),
        (SET_PERMS, 7, b"/a/b/d\0" + perms),
        (DIRECTORY, 7, b"/a/b/d\0"),  # ENOENT: ignored
        (END, 7, b"T\0"),
    ]


def test_rm_tidy_walks_up(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(
        daemon,
        {
            (RM, b"/a/b/c\0"): b"OK\0",
            (RM, b"/a/b\0"): b"OK\0",
            (READ, b"/a/b\0"): b"",
            (DIRECTORY, b"/a/b\0"): b"",
            (READ, b"/a\0"): b"x",
        },
    )
    assert run(impl, fake, "rm", "-t", "/a/b/c") == (0, b"", b"")
    assert trace(fake) == [
        *TX,
        (RM, 7, b"/a/b/c\0"),
        (READ, 7, b"/a/b\0"),
        (DIRECTORY, 7, b"/a/b\0"),
        (RM, 7, b"/a/b\0"),
        (READ, 7, b"/a\0"),
        (END, 7, b"T\0"),
    ]


def test_write_payloads(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(
        daemon,
        {
            (WRITE, b"/a\0" + b"\x00\x01A\\"): b"OK\0",
            (WRITE, b"/b\0" + rb"\x41"): b"OK\0",
        },
    )
    assert run(impl, fake, "write", "/a", r"\000\001\x41\\") == (0, b"", b"")
    assert run(impl, fake, "write", "-R", "/b", r"\x41") == (0, b"", b"")
    assert trace(fake) == [(WRITE, 0, b"/a\0\x00\x01A\\"), (WRITE, 0, b"/b\0\\x41")]


def test_oversized_requests_are_never_sent(impl: str, daemon: list[FakeXenstored]) -> None:
    fake = serve(
        daemon, {(WRITE, b"/a\0" + b"v" * 4093): b"OK\0", (WRITE, b"/b\0" + b"1"): b"OK\0"}
    )
    # 3 + 4093 bytes: the largest payload there is.
    assert run(impl, fake, "write", "/a", "v" * 4093) == (0, b"", b"")
    assert run(impl, fake, "write", "/a", "v" * 4094) == (
        1,
        b"",
        b"xenstore-write: could not write path /a\n",
    )
    assert run(impl, fake, "write", "/b", "1", "/a", "v" * 4094) == (
        1,
        b"",
        b"xenstore-write: could not write path /a\n",
    )
    assert trace(fake) == [
        (WRITE, 0, b"/a\0" + b"v" * 4093),
        *TX,
        (WRITE, 7, b"/b\0" + b"1"),
        (END, 7, b"F\0"),
    ]
