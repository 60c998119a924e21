"""The package as a user installs it: wheel and sdist built, the wheel in a fresh venv.

Every console script of the wheel answers ``--help`` (and ``--version`` where it
has one) from the installed copy, not from this tree; the drop-in ``xenstore-*``
tools answer both exactly as Debian's C tools do (they have no ``--version``).
The metadata carries the license, the author, project URLs, classifiers that
exist on the index, and the version of ``xenstore.__version__``.
"""

from __future__ import annotations

import configparser
import email.parser
import os
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

import xenstore
from tests.packaging import wheelhouse
from tests.tools import helpers

VERSION = xenstore.__version__
#: The console scripts that are ours alone, with --help (exit 0) and --version.
OWN = ("pyxenstored", "xenstore-conformance", "pyxl")
#: The drop-ins whose every byte of output is compared with Debian's C tool.
#: (xenstore-control's C tool looks for a hypervisor before anything else.)
COMPARED = ("xenstore", "xenstore-read", "xenstore-write", "xenstore-ls", "xenstore-list",
            "xenstore-rm", "xenstore-exists", "xenstore-chmod", "xenstore-watch")


@dataclass
class Installed:
    sdist: Path
    wheel: Path
    bindir: Path
    home: Path

    def run(
        self, argv: list[str], executable: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as a user would: the venv first on PATH, outside this tree."""
        env = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONPATH", "XENSTORED_RUNDIR")}
        env["PATH"] = f"{self.bindir}{os.pathsep}{env.get('PATH', os.defpath)}"
        env["XENSTORED_PATH"] = str(self.home / "no-daemon-here")
        return subprocess.run(argv, executable=executable, capture_output=True, text=True,
                              timeout=60, env=env, cwd=self.home, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("packaging")
    source = wheelhouse.copy_sources(root / "src")
    sdist, wheel = wheelhouse.build(source, root / "dist")
    deps = root / "deps"
    deps.mkdir()
    for dist in wheelhouse.requirements_closure(_requirements(wheel)):
        wheelhouse.wheel_from_installed(dist, deps)
    bindir = wheelhouse.fresh_venv(root / "venv")
    wheelhouse.install(bindir, wheel, [wheel.parent, deps])
    home = root / "home"
    home.mkdir()
    yield Installed(sdist, wheel, bindir, home)


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as whl:
        text = whl.read(f"xenstore-{VERSION}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text)


def _requirements(wheel: Path) -> list[str]:
    return [req for req in _metadata(wheel).get_all("Requires-Dist") or []
            if "extra ==" not in req]


def _console_scripts(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as whl:
        text = whl.read(f"xenstore-{VERSION}.dist-info/entry_points.txt").decode()
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return list(parser["console_scripts"])


def test_the_sdist_carries_the_sources_and_the_license(installed: Installed) -> None:
    with tarfile.open(installed.sdist) as sdist:
        names = set(sdist.getnames())
    top = f"xenstore-{VERSION}"
    for name in ("LICENSE", "README.md", "pyproject.toml", "PKG-INFO", "xenstore/__init__.py",
                 "xenstore/py.typed", "xenstore/lab/cli.py"):
        assert f"{top}/{name}" in names, name
    assert any(name.startswith(f"{top}/xenstore/conformance/corpus/") for name in names)


def test_the_metadata_names_license_author_urls_and_real_classifiers(installed: Installed) -> None:
    import trove_classifiers

    meta = _metadata(installed.wheel)
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    with zipfile.ZipFile(installed.wheel) as whl:
        license_text = whl.read(f"xenstore-{VERSION}.dist-info/licenses/LICENSE").decode()
    assert license_text.startswith("MIT License")
    assert meta["Author"]
    assert meta.get_all("Project-URL")
    classifiers = meta.get_all("Classifier") or []
    assert [c for c in classifiers if c not in trove_classifiers.classifiers] == []
    for wanted in ("Operating System :: POSIX :: Linux", "Framework :: Trio", "Typing :: Typed",
                   "Programming Language :: Python :: 3.11"):
        assert wanted in classifiers
    assert any(c.startswith("Topic :: System ::") for c in classifiers)


def test_the_installed_package_is_the_wheels(installed: Installed) -> None:
    result = installed.run(["python", "-c", "import xenstore; print(xenstore.__file__)"])
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installed.bindir.parent)


def test_every_console_script_answers_help(installed: Installed) -> None:
    scripts = _console_scripts(installed.wheel)
    assert set(OWN) | set(COMPARED) | {"xenstore-control"} == set(scripts)
    for name in scripts:
        result = installed.run([name, "--help"])
        assert "Traceback" not in result.stderr, (name, result.stderr)
        if name in OWN:
            assert result.returncode == 0, (name, result.stderr)
            assert "usage" in result.stdout.lower(), (name, result.stdout)
        else:  # the C tools print their usage on stderr and exit 1, even for --help
            assert result.returncode == 1, (name, result.stderr)
            assert result.stderr, name


@pytest.mark.parametrize("name", OWN)
def test_our_own_commands_tell_their_version(installed: Installed, name: str) -> None:
    result = installed.run([name, "--version"])
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{name} {VERSION}\n", "")


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_the_drop_ins_answer_help_and_version_as_the_c_tools(
    installed: Installed, flag: str
) -> None:
    c_tools = helpers.c_tools_dir()
    if c_tools is None:
        reason = "Debian's C tools are not installed (apt install xenstore-utils)"
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    for name in COMPARED:
        ours = installed.run([name, flag])
        theirs = installed.run([name, flag], executable=os.path.join(c_tools, name))
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode, theirs.stdout, theirs.stderr), name
