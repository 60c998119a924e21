"""``pyxl``: xl's command line for the simulated host (``pyxl host``), for the LPIC-3 lab.

``pyxl [-vftTN] <subcommand> [args]`` takes what xl 4.17 takes and answers as
it does (xl.c, xl_cmdtable.c, xl_utils.c): a subcommand may be shortened to any
unambiguous prefix; options and operands mix (glibc's getopt); ``-h`` prints
the subcommand's help and exits 0; an unknown option is "option `x' not
supported." and too few operands "'xl cmd' requires at least N argument(s).",
both exit 2 after the help; a failure exits 1 (EXIT_FAILURE). The name in the
messages is the one the command was run as, so a link named ``xl`` reads as xl.

Two subcommands are pyxl's own: ``pyxl host`` runs the simulated host
(:mod:`.hostmain`) and ``pyxl lab`` the whole lab (:mod:`.labmain`).

Commands find the host through the store (``$XENSTORED_PATH``), waiting a
while for one that is coming up (``$PYXL_HOST_WAIT`` seconds, default 15).
This module, like every command-line tool here, imports neither trio nor
construct: scripts run it in loops.
"""

from __future__ import annotations

import getopt
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from xenstore import __version__
from xenstore.lab import xlcommands as xc
from xenstore.lab import xlconsole, xldevices, xltop
from xenstore.lab.rpc import HostError, NoHost
from xenstore.lab.xlsession import FAILURE, USAGE, Exit, Invocation, ShowHelp, err

Run = Callable[[Invocation], int]


class Command(NamedTuple):
    """One row of xl's command table, with the getopt it runs ("h" is implied)."""

    name: str
    run: Run
    desc: str
    usage: str
    options: str = ""
    shortopts: str = ""
    longopts: tuple[str, ...] = ()
    required: int = 0
    dryrun: bool = False
    modifies: bool = False


def _table() -> tuple[Command, ...]:
    # xl_cmdtable.c's order and flags; the descriptions are the lab's own words.
    return (
        Command("create", xc.cmd_create, "Create a domain from the config file <ConfigFile>",
                "<ConfigFile> [options] [KEY=VALUE ...]",
                "-c                      Attach to the console once the domain exists.\n"
                "-f FILE, --defconfig=FILE\n"
                "                        Read the configuration from FILE.\n"
                "-F                      Stay until the domain is gone.\n"
                "-h                      Show this help.\n"
                "-p                      Leave the new domain paused.\n"
                "-q, --quiet             Do not say which file is parsed.\n"
                "-d, -e, -i, -n, -V, -A  Accepted as xl does; no effect in the lab.",
                "AFVcdef:inpq", ("defconfig=", "dryrun", "ignore-global-affinity-masks",
                                 "quiet", "vncviewer", "vncviewer-autopass"),
                dryrun=True, modifies=True),
        Command("list", xc.cmd_list, "List the domains, or the ones named",
                "[options] [Domain ...]",
                "-l, --long              Print each domain's configuration (JSON).\n"
                "-v, --verbose           Add the UUID, the shutdown reason and the label.\n"
                "-Z, --context           Add the security label.\n"
                "-c, --cpupool           Add the CPU pool.\n"
                "-n, --numa              Add the NUMA node affinity.",
                "lvZcn", ("long", "verbose", "context", "cpupool", "numa")),
        Command("destroy", xc.cmd_destroy, "Stop a domain at once, without asking its kernel",
                "[options] <Domain>",
                "-f                      Allow destroying domain 0 (never on this host).",
                "f", required=1, modifies=True),
        Command("shutdown", xc.cmd_shutdown, "Ask a domain's kernel to power off",
                "[options] <-a|Domain>",
                "-a, --all               Every guest domain.\n"
                "-h                      Show this help.\n"
                "-F                      Without PV drivers, press the ACPI power button.\n"
                "-w, --wait              Wait until the domain(s) shut down (-ww: are gone).",
                "awF", ("all", "wait"), modifies=True),
        Command("reboot", xc.cmd_reboot, "Ask a domain's kernel to reboot",
                "[options] <-a|Domain>",
                "-a, --all               Every guest domain.\n"
                "-h                      Show this help.\n"
                "-F                      Without PV drivers, press the ACPI reset button.\n"
                "-w, --wait              Wait until the domain(s) shut down (-ww: are gone).",
                "awF", ("all", "wait"), modifies=True),
        Command("pause", xc.cmd_pause, "Stop scheduling a domain's vCPUs", "<Domain>",
                required=1, modifies=True),
        Command("unpause", xc.cmd_unpause, "Schedule a paused domain's vCPUs again",
                "<Domain>", required=1, modifies=True),
        Command("console", xlconsole.cmd_console,
                "Attach this terminal to a domain's console (Ctrl-] detaches)",
                "[options] <Domain>\n"
                "-t <type>       console type: pv, serial or vuart\n"
                "-n <number>     console number",
                "", "n:t:", required=1),
        Command("save", xc.cmd_save, "Save a domain's state to a file, to restore later",
                "[options] <Domain> <CheckpointFile> [<ConfigFile>]",
                "-h  Show this help.\n"
                "-c  Keep the domain running after saving it.\n"
                "-p  Keep the domain, paused, after saving it.\n"
                "-D  Keep the domain id in the saved configuration.",
                "cpD", required=2, modifies=True),
        Command("migrate", xc.cmd_migrate, "Move a domain to another host",
                "[options] <Domain> <host>",
                "-h              Show this help.\n"
                "-C <config>     Send <config> instead of the domain's own.\n"
                "-s <sshcommand> Accepted as xl does; the lab's hosts talk directly.\n"
                "-e, -F, -p, -D, --debug, --live\n"
                "                Accepted as xl does.",
                "FC:s:epD", ("debug", "live"), required=2, modifies=True),
        Command("restore", xc.cmd_restore, "Start a domain again from a saved state",
                "[options] [<ConfigFile>] <CheckpointFile>",
                "-h                       Show this help.\n"
                "-p                       Leave the domain paused.\n"
                "-c                       Attach to the console once it runs.\n"
                "-e, -d, -F, -V, -A       Accepted as xl does.",
                "FcpdeVA", ("vncviewer", "vncviewer-autopass"), required=1, modifies=True),
        Command("mem-max", xc.cmd_mem_max, "Set the most memory a domain may be given",
                "<Domain> <Memory[b|k|m|g|t]> (MiB without a unit)", required=2,
                modifies=True),
        Command("mem-set", xc.cmd_mem_set, "Set a domain's memory target (its balloon)",
                "<Domain> <Memory[b|k|m|g|t]> (MiB without a unit)", required=2,
                modifies=True),
        Command("vcpu-set", xc.cmd_vcpu_set, "Set how many vCPUs a domain has online",
                "[option] <Domain> <vCPUs>",
                "-i, --ignore-host  Allow more vCPUs than the host has CPUs",
                "i", ("ignore-host",), required=2, modifies=True),
        Command("info", xc.cmd_info, "Show the host: CPUs, memory, Xen", "[-n] [name]",
                "-n, --numa         Add the CPU and NUMA topology", "n", ("numa",)),
        Command("domid", xc.cmd_domid, "Print the domid of a domain name", "<DomainName>",
                required=1),
        Command("domname", xc.cmd_domname, "Print the name of a domid", "<DomainId>",
                required=1),
        Command("top", xltop.cmd_top, "Watch the domains, refreshed every second (q quits)",
                "[-b] [-i N] [-d SECONDS] [-f]",
                "-b, --batch             Print the table each time; no terminal control.\n"
                "-i, --iterations=N      Stop after N refreshes.\n"
                "-d, --delay=SECONDS     Seconds between refreshes (default 1).\n"
                "-f, --full-name         Do not cut names to 10 characters.",
                "bd:i:fnxrv", ("batch", "delay=", "iterations=", "full-name", "networks",
                               "vbds", "repeat-header", "vcpus")),
        Command("network-attach", xldevices.cmd_network_attach,
                "Plug a new virtual network interface into a domain",
                "<Domain> [type=<type>] [mac=<mac>] [bridge=<bridge>] [ip=<ip>] "
                "[script=<script>] [backend=<BackDomain>] [vifname=<name>] [rate=<rate>] "
                "[model=<model>] [mtu=<mtu>]", required=1, dryrun=True, modifies=True),
        Command("network-list", xldevices.cmd_network_list,
                "List a domain's virtual network interfaces", "<Domain(s)>", required=1),
        Command("network-detach", xldevices.cmd_network_detach,
                "Unplug a virtual network interface from a domain", "<Domain> <DevId|mac>",
                required=2, modifies=True),
        Command("block-attach", xldevices.cmd_block_attach,
                "Plug a new virtual disk into a domain",
                "<Domain> <disk-spec-component(s)>...", required=2, dryrun=True,
                modifies=True),
        Command("block-list", xldevices.cmd_block_list, "List a domain's virtual disks",
                "<Domain(s)>", required=1),
        Command("block-detach", xldevices.cmd_block_detach,
                "Unplug a virtual disk from a domain", "[option] <Domain> <DevId|vdev>",
                "-f, --force        Do not wait for the guest to let the disk go",
                "f", ("force",), required=2, modifies=True),
        Command("uptime", xc.cmd_uptime, "Show how long the domains have been up",
                "[-s] [Domain ...]", "", "s"),
    )


COMMANDS = _table()
#: pyxl's own subcommands, which take their own arguments.
EXTRA = {"host": "Run the simulated Xen host (see pyxl host --help)",
         "lab": "Run the whole lab: daemon, host and live page (see pyxl lab --help)"}
#: Every subcommand of xl 4.17 (x86), for xl's prefix matching: a prefix that is
#: ambiguous there is ambiguous here too, and the ones the lab lacks are named.
XL_NAMES = (
    "create", "config-update", "list", "destroy", "shutdown", "reboot", "pci-attach",
    "pci-detach", "pci-list", "pci-assignable-add", "pci-assignable-remove",
    "pci-assignable-list", "pause", "unpause", "console", "vncviewer", "save", "migrate",
    "restore", "migrate-receive", "dump-core", "cd-insert", "cd-eject", "mem-max",
    "mem-set", "button-press", "vcpu-list", "vcpu-pin", "vcpu-set", "vm-list", "info",
    "sharing", "sched-credit", "sched-credit2", "sched-rtds", "domid", "domname", "rename",
    "trigger", "sysrq", "debug-keys", "set-parameters", "dmesg", "top", "network-attach",
    "network-list", "network-detach", "channel-list", "block-attach", "block-list",
    "block-detach", "vtpm-attach", "vtpm-list", "vtpm-detach", "vkb-attach", "vkb-list",
    "vkb-detach", "vdispl-attach", "vdispl-list", "vdispl-detach", "vsnd-attach",
    "vsnd-list", "vsnd-detach", "uptime", "claims", "cpupool-create", "cpupool-list",
    "cpupool-destroy", "cpupool-rename", "cpupool-cpu-add", "cpupool-cpu-remove",
    "cpupool-migrate", "cpupool-numa-split", "getenforce", "setenforce", "loadpolicy",
    "remus", "devd", "psr-hwinfo", "psr-cmt-attach", "psr-cmt-detach", "psr-cmt-show",
    "psr-cat-set", "psr-cat-show", "psr-mba-set", "psr-mba-show", "usbctrl-attach",
    "usbctrl-detach", "usbdev-attach", "usbdev-detach", "usb-list", "qemu-monitor-command",
)


def lookup(word: str) -> str | None:
    """xl's cmdtable_lookup: an exact name, else the one name ``word`` begins."""
    names = [*XL_NAMES, *EXTRA]
    if word in names:
        return word
    found = [name for name in names if name.startswith(word)]
    return found[0] if len(found) == 1 else None


def command(name: str) -> Command | None:
    return next((c for c in COMMANDS if c.name == name), None)


# -- help --------------------------------------------------------------------------


def help_text(prog: str, word: str | None = None) -> str:
    """xl's help(): the full list, or one subcommand's usage, description and options."""
    if word is None or word == "help":
        lines = [f"Usage {prog} [-vfNtT] <subcommand> [args]", "",
                 f"{prog} full list of subcommands:", ""]
        entries = [(c.name, c.desc) for c in COMMANDS] + list(EXTRA.items())
        for name, desc in entries:
            wrap = f"\n {'':<19} " if len(name) > 19 else ""
            lines.append(f" {name:<19} {wrap}{desc}")
        return "\n".join(lines) + "\n"
    found = lookup(word)
    spec = command(found) if found else None
    if spec is None:
        return f'command "{word}" not implemented\n'
    flags = ("f" if spec.modifies else "") + ("N" if spec.dryrun else "")
    text = f"Usage: {prog} [-vtT{flags}] {spec.name} {spec.usage}\n\n{spec.desc}.\n\n"
    if spec.options:
        text += f"Options:\n\n{spec.options}\n"
    return text


def print_help(prog: str, word: str | None = None) -> None:
    sys.stdout.write(help_text(prog, word))
    sys.stdout.flush()


# -- parsing and running -----------------------------------------------------------


def parse(prog: str, spec: Command, argv: Sequence[str]) -> Invocation:
    """xl's def_getopt for ``spec``: options, then at least ``required`` operands."""
    words = list(argv)
    options: list[tuple[str, str]] = []
    if spec.name == "create" and words and not words[0].startswith("-") and "=" not in words[0]:
        options.append(("-f", words.pop(0)))  # xl takes a leading operand as the config
    try:
        found, operands = getopt.gnu_getopt(words, "h" + spec.shortopts,
                                            [*spec.longopts, "help"])
    except getopt.GetoptError as exc:
        if exc.opt == "h":
            raise ShowHelp(0) from None
        err(f"option `{exc.opt if len(exc.opt) == 1 else '--' + exc.opt}' not supported.")
        raise Exit(USAGE) from None
    options += found
    if any(flag in ("-h", "--help") for flag, _ in options):
        raise ShowHelp(0)
    if len(operands) < spec.required:
        plural = "s" if spec.required > 1 else ""
        err(f"'{prog} {spec.name}' requires at least {spec.required} argument{plural}.\n")
        raise ShowHelp(USAGE)
    return Invocation(prog, spec.name, options, operands)


def run(prog: str, spec: Command, argv: Sequence[str], dryrun: bool) -> int:
    """Run one subcommand; xl's exit status, every failure said in words."""
    inv: Invocation | None = None
    try:
        inv = parse(prog, spec, argv)
        if dryrun or (spec.name == "create" and inv.has("-n", "--dryrun")):
            err(f"{prog}: the lab does not simulate dry runs (-N)")
            return FAILURE
        return spec.run(inv)
    except ShowHelp as exc:
        print_help(prog, spec.name)
        return exc.code
    except Exit as exc:
        return exc.code
    except (NoHost, HostError) as exc:
        err(str(exc))
        return FAILURE
    finally:
        if inv is not None:
            inv.close()


def extra(name: str, argv: list[str]) -> int:
    """``pyxl host`` and ``pyxl lab``, imported only when asked for (they need trio)."""
    if name == "host":
        from xenstore.lab import hostmain

        return hostmain.main(argv)
    try:
        labmain = importlib.import_module("xenstore.lab.labmain")
    except ModuleNotFoundError as exc:
        if exc.name != "xenstore.lab.labmain":
            raise
        err("pyxl lab: not available yet in this version (xenstore.lab.labmain is "
            "missing); start the parts by hand: pyxenstored --domain-dir DIR, then "
            "pyxl host --domain-dir DIR")
        return FAILURE
    code: int = labmain.main(argv)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``pyxl [-vftTN] <subcommand> [args]``."""
    words = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) if argv is None else "pyxl"
    prog = "pyxl" if prog in ("", "cli.py", "__main__.py", "-c") else prog
    dryrun = False
    while words and words[0].startswith("-") and len(words[0]) > 1:
        word = words.pop(0)
        if word == "--":
            break
        if word in ("--help", "--version"):  # pyxl's own (xl has neither)
            if word == "--help":
                print_help(prog)
            else:
                print(f"pyxl {__version__}")
            return 0
        for letter in word[1:]:
            if letter not in "vftTN":
                err(f"{prog}: invalid option -- '{letter}'")
                err("unknown global option")
                return FAILURE
            dryrun = dryrun or letter == "N"
    if not words:
        print_help(prog)
        return FAILURE
    word, rest = words[0], words[1:]
    if word == "help":
        print_help(prog, rest[0] if rest else None)
        return 0
    name = lookup(word)
    if name in EXTRA:
        return extra(name, rest)
    spec = command(name) if name else None
    if spec is None:
        err("command not implemented")
        return FAILURE
    if dryrun and not spec.dryrun:
        err("command does not implement -N (dryrun) option")
        return FAILURE
    try:
        code = run(prog, spec, rest, dryrun)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout's reader went away (pyxl list | head): die as C
        from xenstore.tools.streams import SIGPIPE, die_of

        die_of(SIGPIPE)


if __name__ == "__main__":
    sys.exit(main())
