"""Which modules of the daemon may be compiled, and whether they are.

The daemon is pure Python and runs as such. ``scripts/compile`` compiles the
modules below with mypyc (the package is mypy-strict, which is what mypyc
needs) into extension modules beside their sources, which Python then imports
instead of the sources: a request costs ~30 % less daemon CPU (bench/README.md).
``scripts/compile --clean`` removes them again. The test suite runs both ways.

An extension module built from other source than what is there now is stale:
Python would still import it and run the old code. :func:`build` records a hash
of each source it compiled (:data:`MANIFEST`); the daemon refuses to start on a
stale module, and so does the test suite (:func:`stale`), rather than run what is
not written. A hash, not the files' times: a checkout, a copy or an archive may
give a changed source an old time.

The modules are what every request runs through: the pure core (paths and perms,
the store, transactions, the request handlers) and the shell's serving of a
request (the hot loop, reading, writing, carrying out effects). Compiling the core
alone saves about half of what compiling both does: the rest is the shell's
Python. Left out: what runs once or rarely (start-up, options, live update, the
monitor, listeners), and the client side (the tools must start fast and import
little).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.machinery
import os
import sys

#: The compiled modules, in the order ``scripts/compile`` names them.
MODULES = (
    "xenstore.paths",
    "xenstore.perms",
    "xenstore.changes",
    "xenstore.store.node",
    "xenstore.store.tree",
    "xenstore.store.versions",
    "xenstore.store.sound",
    "xenstore.transactions.view",
    "xenstore.transactions.conflict",
    "xenstore.daemon.core",
    "xenstore.daemon.nodes",
    "xenstore.daemon.tx_ops",
    "xenstore.daemon.access",
    "xenstore.daemon.quotas",
    "xenstore.daemon.watch_ops",
    "xenstore.daemon.watches",
    "xenstore.daemon.effects",
    "xenstore.daemon.state",
    "xenstore.daemon.domain_ops",
    "xenstore.daemon.output",
    "xenstore.daemon.carry",
    "xenstore.daemon.hotloop",
    "xenstore.daemon.shell",
)

#: The shared library mypyc builds for all of them, inside the package (so that it
#: is found wherever the package is, as the modules import it by this name).
GROUP = "xenstore._native"

#: What :func:`build` compiled: ``module sha256-of-its-source`` a line, beside the package.
MANIFEST = "xenstore/_native.sha256"

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source(module: str, root: str = _ROOT) -> str:
    """The path of ``module``'s source file (``root``: the directory above the package)."""
    return os.path.join(root, *module.split(".")) + ".py"


def extensions(module: str, root: str = _ROOT) -> list[str]:
    """The extension modules built for ``module`` that Python could import."""
    base = os.path.join(root, *module.split("."))
    return [base + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES
            if os.path.exists(base + suffix)]


def compiled(root: str = _ROOT) -> list[str]:
    """The modules that have an extension module (Python imports it, not the source)."""
    return [module for module in MODULES if extensions(module, root)]


def digest(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def built_from(root: str = _ROOT) -> dict[str, str]:
    """The hash of each source :func:`build` compiled, by module (empty: no record)."""
    try:
        with open(os.path.join(root, MANIFEST)) as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return {}
    return dict(line.split(" ", 1) for line in lines if " " in line)


def stale(root: str = _ROOT) -> list[str]:
    """The compiled modules whose source is not the one they were compiled from."""
    recorded = built_from(root)
    return [module for module in MODULES if extensions(module, root)
            and recorded.get(module) != digest(source(module, root))]


def describe() -> str:
    """How the core runs, in a few words (the daemon's log, the tests' and benchmarks'
    reports)."""
    done = compiled()
    if not done:
        return "pure Python"
    if len(done) == len(MODULES):
        return "compiled by mypyc"
    return f"partly compiled by mypyc ({len(done)} of {len(MODULES)} modules)"


def stale_message(modules: list[str]) -> str:
    """What to tell whoever would run stale compiled modules."""
    return (f"compiled modules not built from their sources as they are now: "
            f"{', '.join(modules)}; "
            "run scripts/compile again, or scripts/compile --clean to run pure Python")


def build() -> None:
    """Compile :data:`MODULES` in place (needs mypy, setuptools and a C compiler)."""
    from mypyc.build import mypycify  # only here: neither is needed to run
    from setuptools import setup

    os.chdir(_ROOT)
    sources = [os.path.relpath(source(module)) for module in MODULES]
    hashes = {module: digest(source(module)) for module in MODULES}
    setup(name="xenstore-core", ext_modules=mypycify(sources, group_name=GROUP),
          script_args=["build_ext", "--inplace"])
    # What was compiled: read before the build, a source changed meanwhile is stale.
    with open(MANIFEST, "w") as file:
        file.writelines(f"{module} {hashes[module]}\n" for module in MODULES)


def clean() -> list[str]:
    """Remove every extension module :func:`build` made; the paths removed."""
    removed = []
    for module in (*MODULES, GROUP + "__mypyc"):
        base = os.path.join(_ROOT, *module.split("."))
        for path in glob.glob(glob.escape(base) + ".*"):
            if path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
                os.unlink(path)
                removed.append(path)
    if os.path.exists(os.path.join(_ROOT, MANIFEST)):
        os.unlink(os.path.join(_ROOT, MANIFEST))
    return removed


if __name__ == "__main__":
    if sys.argv[1:] == ["clean"]:
        print(f"removed {len(clean())} compiled modules: the core runs as pure Python")
    elif sys.argv[1:] == ["build"]:
        build()
        print(f"the daemon's core: {describe()}")
    else:
        sys.exit("usage: python -m xenstore.compiled build|clean")
