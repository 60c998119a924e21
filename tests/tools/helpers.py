"""Running a tool, ours or Xen's, and preparing and reading back the store.

Ours runs in a fresh interpreter with a chosen argv[0] (the C tools print it
in their usage line, so the goldens need a fixed one). Xen's run from
``$XS_TEST_C_TOOLS``, else /usr/bin where Debian's xenstore-utils puts them:
the same goldens then check the C tools, which is how every golden here was
taken.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from xenstore import errors
from xenstore.client import Client

#: The subtree the tests own; every golden is written against it.
ROOT = "/tt"

# Sets argv[0] to the first argument, then runs the tool's main() as the
# console script would.
_LAUNCH = (
    "import sys; sys.argv[0] = sys.argv.pop(1); "
    "from xenstore.tools.{module} import main; sys.exit(main())"
)


class Result(NamedTuple):
    rc: int
    out: bytes
    err: bytes


def c_tools_dir() -> str | None:
    """Where Debian's C tools are: ``$XS_TEST_C_TOOLS``, else /usr/bin if they are there."""
    directory = os.environ.get("XS_TEST_C_TOOLS")
    if directory:
        return directory
    return "/usr/bin" if os.path.exists("/usr/bin/xenstore-ls") else None


def command(tool: str) -> str:
    """The program name of ``tool``: ``xenstore`` or ``xenstore-<tool>``."""
    return "xenstore" if tool == "xenstore" else f"xenstore-{tool}"


def tool_argv(
    impl: str, tool: str, args: Sequence[str | bytes], argv0: str | None = None
) -> tuple[list[str | bytes], str | None]:
    """The argv (and executable) that runs ``tool`` as ``impl`` ("ours" or "c")."""
    argv0 = argv0 or command(tool)
    if impl == "c":
        directory = c_tools_dir()
        assert directory is not None
        return [argv0, *args], os.path.join(directory, command(tool))
    module = "multiplexer" if tool == "xenstore" else tool
    return [sys.executable, "-c", _LAUNCH.format(module=module), argv0, *args], None


def tool_env(
    socket_path: str | None, extra: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("XENSTORED_PATH", "XENSTORED_RUNDIR", "POSIXLY_CORRECT"):
        env.pop(name, None)
    if socket_path is not None:
        env["XENSTORED_PATH"] = socket_path
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_tool(
    impl: str,
    socket_path: str | None,
    tool: str,
    *args: str | bytes,
    argv0: str | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 30,
) -> Result:
    argv, executable = tool_argv(impl, tool, args, argv0)
    proc = subprocess.run(
        argv,
        executable=executable,
        env=tool_env(socket_path, env),
        capture_output=True,
        timeout=timeout,
        cwd="/",
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


# -- the store ---------------------------------------------------------------


def reset(
    socket_path: str,
    nodes: Iterable[tuple[str, bytes]] = (),
    perms: Mapping[str, list[str]] | None = None,
) -> None:
    """Empty :data:`ROOT`, then write ``nodes`` (in order) and set ``perms``."""
    with Client(socket_path, timeout=10) as client:
        with contextlib.suppress(errors.ENOENT):
            client.rm(ROOT)
        for path, value in nodes:
            client.write(path, value)
        for path, entries in (perms or {}).items():
            client.set_perms(path, entries)


def dump(socket_path: str, root: str = ROOT) -> dict[str, tuple[bytes, list[str]]]:
    """Every node under ``root`` (included): path -> (value, perms)."""
    found: dict[str, tuple[bytes, list[str]]] = {}
    with Client(socket_path, timeout=10) as client:
        if not client.exists(root):
            return found
        pending = [root]
        while pending:
            path = pending.pop()
            found[path] = (client.read(path), client.get_perms(path))
            pending.extend(f"{path}/{name}" for name in client.directory(path))
    return found
