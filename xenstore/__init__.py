"""A XenStore in Python: daemon, drop-in clients and client libraries."""

#: The package's version, read by the build (pyproject.toml) and by ``--version``:
#: its one source. A plain string, so that reading it costs the tools nothing.
__version__ = "0.1.0"
