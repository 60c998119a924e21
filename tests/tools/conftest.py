"""Fixtures for the command-line tools' tests.

``xs_socket`` is the daemon the tools talk to: ours, and Xen's C xenstored
(``XS_TEST_SOCKET`` names another running daemon instead). ``impl`` runs each
test with our tools and with Debian's C tools: the goldens hold for all four
pairings. Each daemon serves a whole module; the tests reset their subtree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import daemon_socket
from tests.tools import helpers


@pytest.fixture(scope="module", params=["pyxenstored", "cxenstored"])
def xs_socket(request: pytest.FixtureRequest) -> Iterator[str]:
    path = os.environ.get("XS_TEST_SOCKET")
    if path:
        yield path
    else:
        yield from daemon_socket(request.param == "pyxenstored")


@pytest.fixture(params=["ours", "c"])
def impl(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "c" and helpers.c_tools_dir() is None:
        reason = "Debian's C tools are not installed (apt install xenstore-utils)"
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return name


class Tools:
    """The tools of one implementation, pointed at one daemon."""

    def __init__(self, impl: str, socket_path: str) -> None:
        self.impl = impl
        self.socket = socket_path

    def run(self, tool: str, *args: str | bytes, **kwargs: object) -> helpers.Result:
        return helpers.run_tool(self.impl, self.socket, tool, *args, **kwargs)  # type: ignore[arg-type]

    def reset(self, *nodes: tuple[str, bytes], perms: dict[str, list[str]] | None = None) -> None:
        helpers.reset(self.socket, nodes, perms)

    def dump(self) -> dict[str, tuple[bytes, list[str]]]:
        return helpers.dump(self.socket)


@pytest.fixture
def tools(impl: str, xs_socket: str) -> Tools:
    return Tools(impl, xs_socket)
