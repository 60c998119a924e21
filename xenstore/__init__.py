"""A XenStore in Python: daemon, drop-in clients and client libraries."""

__version__ = "0.1.0"
