"""Canonical paths: the rules, and the memo of paths already found valid.

The memo must change no answer: a path is refused for its length by the
limit of each call, whatever an earlier call allowed; an invalid path is never
remembered; the memo stays bounded whatever clients send.
"""

from __future__ import annotations

import pytest

from xenstore import paths
from xenstore.errors import EINVAL


@pytest.mark.parametrize(("given", "domid", "expected"), [
    ("/", 0, "/"),
    ("/a/b-c_d@e", 0, "/a/b-c_d@e"),
    ("name", 5, "/local/domain/5/name"),
    ("device/vif/0", 7, "/local/domain/7/device/vif/0"),
])
def test_valid(given: str, domid: int, expected: str) -> None:
    assert paths.canonical(given, domid) == expected
    assert paths.canonical(given, domid) == expected  # and again, from the memo


@pytest.mark.parametrize("given", ["", "@introduceDomain", "/a/", "//a", "/a//b", "/a b",
                                   "/a/\u00e9", "a/", "/a\0b"])
def test_invalid_twice(given: str) -> None:
    for _ in range(2):
        with pytest.raises(EINVAL):
            paths.canonical(given, 3)
    assert "/local/domain/3/" + given not in paths._valid_seen
    assert given not in paths._valid_seen


def test_the_length_limit_is_each_calls_own() -> None:
    path = "/long/" + "x" * 100
    assert paths.canonical(path, 0, path_max=200) == path
    with pytest.raises(EINVAL):
        paths.canonical(path, 0, path_max=50)
    # Below a domain's home the prefix is not counted, as cxenstored counts.
    home = "/local/domain/12/" + "y" * 40
    assert paths.canonical(home, 0, path_max=45) == home
    with pytest.raises(EINVAL):
        paths.canonical(home, 0, path_max=30)


def test_the_memo_is_bounded() -> None:
    for n in range(3 * paths._VALID_SEEN_MAX):
        paths.canonical(f"/many/{n}", 0)
    assert 0 < len(paths._valid_seen) <= paths._VALID_SEEN_MAX
