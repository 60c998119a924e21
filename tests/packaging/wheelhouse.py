"""Build the package as a user gets it, and install it where nothing else is.

The wheel test must run without reaching a package index (CI machines may not
reach it for everything), so the dependencies come from what this interpreter
has installed: each installed distribution is packed back into a wheel from its
RECORD, and a fresh virtual environment installs our wheel with ``--no-index``
and ``--find-links`` to ours and to those.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
#: What the build reads: the package, its metadata and the files it names.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "xenstore")
#: Files of an installed distribution that its installer wrote, not its wheel.
INSTALLER_FILES = ("INSTALLER", "REQUESTED", "direct_url.json", "RECORD")


def copy_sources(destination: Path) -> Path:
    """The files a build reads, copied (no caches, no .egg-info left in the tree)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    destination.mkdir(parents=True)
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    return destination


def build(source: Path, outdir: Path) -> tuple[Path, Path]:
    """``python -m build``: the sdist, then the wheel built from it. Returns both.

    Without isolation, with this interpreter's setuptools (the test extras pin
    one new enough), so that the build downloads nothing.
    """
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(source)])
    (sdist,) = outdir.glob("*.tar.gz")
    (wheel,) = outdir.glob("*.whl")
    return sdist, wheel


def requirements_closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` need, transitively (markers evaluated)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(requirement.name)
        if key in seen:
            continue
        dist = metadata.distribution(requirement.name)
        seen[key] = dist
        todo.extend(dist.requires or [])
    return list(seen.values())


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def wheel_from_installed(dist: metadata.Distribution, outdir: Path) -> Path:
    """Pack an installed distribution back into a wheel, from the files its RECORD lists.

    Scripts (outside site-packages) are left out: pip writes them again from
    the entry points.
    """
    root = Path(str(dist.locate_file("")))
    files = dist.files or []
    info_dir = root / next(file.parts[0] for file in files
                           if file.parts[0].endswith(".dist-info") and file.name == "METADATA")
    wheel_text = (info_dir / "WHEEL").read_text()
    tags = [line.split(":", 1)[1].strip().split("-") for line in wheel_text.splitlines()
            if line.startswith("Tag:")]
    # Several tags (py2-none-any, py3-none-any) compress to one: py2.py3-none-any.
    tag = "-".join(".".join(dict.fromkeys(parts)) for parts in zip(*tags, strict=True))
    name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    path = outdir / f"{name}-{dist.version}-{tag}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for file in files:
            parts = file.parts
            if parts[0] == ".." or "__pycache__" in parts or file.suffix == ".pyc":
                continue
            if parts[0] == info_dir.name and parts[-1] in INSTALLER_FILES:
                continue
            data = (root / file).read_bytes()
            whl.writestr(str(file), data)
            writer.writerow([str(file), _record_hash(data), len(data)])
        record_name = f"{info_dir.name}/RECORD"
        writer.writerow([record_name, "", ""])
        whl.writestr(record_name, record.getvalue())
    return path


def fresh_venv(directory: Path) -> Path:
    """A new virtual environment (with pip, nothing else); returns its bin directory."""
    _run([sys.executable, "-m", "venv", str(directory)])
    return directory / "bin"


def install(bindir: Path, wheel: Path, find_links: list[Path]) -> None:
    """Install ``wheel`` from local files only, with its dependencies."""
    links = [arg for directory in find_links for arg in ("--find-links", str(directory))]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # no index, mirror or constraint of this machine
    _run([str(bindir / "python"), "-m", "pip", "install", "--quiet", "--no-index",
          "--disable-pip-version-check", *links, str(wheel)], env)


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{argv} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
