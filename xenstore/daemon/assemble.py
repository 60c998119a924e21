"""Build a daemon from parsed flags: shared by ``pyxenstored`` and ``xenstore.testing``."""

from __future__ import annotations

import argparse

from xenstore.daemon.config import Config
from xenstore.daemon.core import Server
from xenstore.daemon.shell import BACKLOG_MAX, Shell, ShellOptions
from xenstore.daemon.trace import Tracer

#: ``-Q NAME=VALUE`` quotas this daemon applies, and the Config field each sets.
QUOTAS = {"transaction-nodes": "transaction_nodes_max"}
#: Quotas of cxenstored that a later part of this daemon brings (a warning for now).
QUOTAS_NOT_YET = ("memory", "outstanding", "nodes", "watches", "node-size", "permissions")


def config_from(args: argparse.Namespace) -> Config:
    """The core's settings from the flags; ValueError for a malformed or unknown quota."""
    config = Config()
    if args.path_max is not None:
        config.path_max = args.path_max
    if args.transaction is not None:
        config.transactions_max = args.transaction
    for quota in args.quota or ():
        name, _, value = quota.partition("=")
        if not value.isdigit():
            raise ValueError(f"-Q {quota}: expected NAME=NUMBER")
        if name in QUOTAS:
            setattr(config, QUOTAS[name], int(value))
        elif name not in QUOTAS_NOT_YET:
            raise ValueError(f"-Q {quota}: unknown quota {name!r}")
    return config


def quotas_not_yet(args: argparse.Namespace) -> list[str]:
    """The ``-Q`` quotas given whose effect this daemon does not have yet."""
    return [q for q in args.quota or () if q.partition("=")[0] in QUOTAS_NOT_YET]


def build_shell(args: argparse.Namespace) -> Shell:
    """The Server and its trio Shell as the flags describe them."""
    tracer = Tracer(args.trace_file) if args.trace_file else None
    return Shell(
        Server(config_from(args)),
        ShellOptions(
            socket_path=args.socket,
            socket_mode=args.socket_mode,
            backlog_max=args.backlog_max or BACKLOG_MAX,
        ),
        tracer,
    )
