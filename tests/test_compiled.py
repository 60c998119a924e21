"""The compiled build of the core: which modules, whether they are in use, and that a
stale one is refused (by the daemon and by this suite) rather than run.

``XS_REQUIRE_COMPILED=1`` (scripts/test sets it for its compiled pass) makes it a
failure if the core is not compiled, so that the pass tests what it says it tests.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import pathlib
import subprocess
import sys

import pytest

from xenstore import compiled
from xenstore.daemon import __main__ as daemon_main

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def test_every_compiled_module_has_its_source_and_none_is_the_client_side() -> None:
    for module in compiled.MODULES:
        assert os.path.exists(compiled.source(module)), module
        # The tools import little and start fast: nothing of the client is compiled.
        assert not module.startswith(("xenstore.tools", "xenstore.client")), module


def test_the_core_runs_as_it_says() -> None:
    built = compiled.compiled()
    if os.environ.get("XS_REQUIRE_COMPILED") == "1":
        assert built == list(compiled.MODULES), "scripts/compile has not been run"
    for module in compiled.MODULES:
        origin = importlib.import_module(module).__file__ or ""
        assert origin.endswith(".py") == (module not in built), (module, origin)
    assert compiled.describe() == ("pure Python" if not built
                                   else "compiled by mypyc")


def _compiled_module(root: str, module: str, text: str) -> None:
    """A source with ``text`` and an (empty) extension module beside it."""
    source = compiled.source(module, root)
    os.makedirs(os.path.dirname(source), exist_ok=True)
    with open(source, "w") as file:
        file.write(text)
    with open(source[:-3] + SUFFIX, "wb"):
        pass


def test_a_module_is_stale_unless_built_from_its_source_as_it_is(
        tmp_path: pathlib.Path) -> None:
    root = str(tmp_path)
    for module in ("xenstore.paths", "xenstore.perms", "xenstore.store.tree"):
        _compiled_module(root, module, f"# {module}, as compiled\n")
    assert compiled.compiled(root) == ["xenstore.paths", "xenstore.perms",
                                       "xenstore.store.tree"]
    # No record of the build: nothing compiled can be trusted.
    assert compiled.stale(root) == compiled.compiled(root)
    with open(os.path.join(root, compiled.MANIFEST), "w") as file:
        for module in ("xenstore.paths", "xenstore.store.tree"):
            file.write(f"{module} {compiled.digest(compiled.source(module, root))}\n")
    assert compiled.stale(root) == ["xenstore.perms"]  # not in the record
    # A source changed after the build, even one given back an older time.
    path = compiled.source("xenstore.paths", root)
    then = os.path.getmtime(path)
    with open(path, "w") as file:
        file.write("# xenstore.paths, edited\n")
    os.utime(path, (then - 3600, then - 3600))
    assert compiled.stale(root) == ["xenstore.paths", "xenstore.perms"]
    message = compiled.stale_message(["xenstore.paths"])
    assert "xenstore.paths" in message and "scripts/compile" in message


def test_the_daemon_refuses_to_start_on_a_stale_module(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(compiled, "stale", lambda: ["xenstore.store.tree"])
    assert daemon_main.main(["--socket", "/nonexistent/dir/socket"]) == 1
    err = capsys.readouterr().err
    assert "xenstore.store.tree" in err and "scripts/compile" in err


def test_running_the_daemon_needs_nothing_of_the_build() -> None:
    # mypy and setuptools are the build's: a pure-Python install has neither.
    code = ("import sys, xenstore.daemon.__main__; "
            "print(sorted({'mypy', 'mypyc', 'setuptools'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout == "[]\n", result.stderr
