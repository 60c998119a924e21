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


def _tree(root: str, module: str, *, built_before_source: bool) -> None:
    source = compiled.source(module, str(root))
    os.makedirs(os.path.dirname(source), exist_ok=True)
    with open(source, "w") as file:
        file.write("")
    built = source[:-3] + SUFFIX
    with open(built, "wb"):
        pass
    then = os.path.getmtime(source)
    offset = -10 if built_before_source else 10
    os.utime(built, (then + offset, then + offset))


def test_an_extension_older_than_its_source_is_stale(tmp_path: pathlib.Path) -> None:
    root = str(tmp_path)
    _tree(root, "xenstore.store.tree", built_before_source=False)
    _tree(root, "xenstore.paths", built_before_source=True)
    assert compiled.compiled(root) == ["xenstore.paths", "xenstore.store.tree"]
    assert compiled.stale(root) == ["xenstore.paths"]
    assert "xenstore.paths" in compiled.stale_message(["xenstore.paths"])
    assert "scripts/compile" in compiled.stale_message(["xenstore.paths"])


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
