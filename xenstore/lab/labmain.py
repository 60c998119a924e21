"""``pyxl lab``: the whole Xen lab in one command: the daemon, the host and the live page.

It starts ``pyxenstored`` (guest sockets and a monitor feed in the lab's
directory), runs the simulated host against it as dom0, serves the page on
127.0.0.1, writes the course's two example configs (and the disk images they
name) into the directory, and prints what to do next. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import trio

from xenstore.aclient import open_client
from xenstore.daemon.spawn import DaemonProcess, spawn
from xenstore.lab.commands import Commands, Server, domain_row
from xenstore.lab.host import Host, HostOptions

#: Sparse disk images the example configs name (created if missing).
IMAGES = {"debian.img": 2 << 30, "debian.iso": 600 << 20, "win.qcow2": 4 << 30,
          "win.iso": 5 << 30}

PV_CONFIG = """\
# A paravirtualised guest, as in the course: a raw disk, a CD image, a vif on Br0.
name = "debian-pv"
type = "pv"
kernel = "/boot/vmlinuz-guest"
ramdisk = "/boot/initrd-guest"
extra = "root=/dev/xvda1 console=hvc0"
memory = 1024
vcpus = 2
disk = [ 'phy:{dir}/images/debian.img,xvda,w',
         'file:{dir}/images/debian.iso,xvdc:cdrom,r' ]
vif = [ 'bridge=Br0,mac=00:16:3e:12:34:56' ]
on_reboot = "restart"
"""

HVM_CONFIG = """\
# A fully virtualised guest, as in the course: a qcow2 disk, a CD, boot from it, VNC.
name = "win-hvm"
type = "hvm"
memory = 4096
vcpus = 2
disk = [ 'format=qcow2, vdev=hda, access=rw, target={dir}/images/win.qcow2',
         '{dir}/images/win.iso,raw,hdc,r,devtype=cdrom' ]
boot = "d"
vnc = 1
vif = [ 'bridge=Br0,model=e1000' ]
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyxl lab", description=__doc__.split("\n")[0])
    p.add_argument("--dir", default=f"/tmp/pyxl-lab-{os.getuid()}",
                   help="the lab's directory: sockets, images, examples (default %(default)s)")
    p.add_argument("--port", type=int, default=8080,
                   help="the page's port on 127.0.0.1 (default 8080; 0: any free one)")
    p.add_argument("--name", default="lab", help="the host's name (default lab)")
    return p


def prepare(directory: str) -> str:
    """The lab's directory with its images and example configs; returns the examples'."""
    images = os.path.join(directory, "images")
    examples = os.path.join(directory, "examples")
    os.makedirs(images, exist_ok=True)
    os.makedirs(examples, exist_ok=True)
    for name, size in IMAGES.items():
        path = os.path.join(images, name)
        if not os.path.exists(path):
            with open(path, "wb") as image:
                image.truncate(size)  # sparse: takes no room
    for name, text in (("debian-pv.cfg", PV_CONFIG), ("win-hvm.cfg", HVM_CONFIG)):
        with open(os.path.join(examples, name), "w") as config:
            config.write(text.replace("{dir}", directory))
    return examples


def start_daemon(directory: str) -> tuple[DaemonProcess, str]:
    """pyxenstored on the lab's directory (guest sockets, monitor feed); and its monitor."""
    monitor = os.path.join(directory, "monitor")
    try:
        daemon = spawn(os.path.join(directory, "socket"),
                       ["--domain-dir", directory, "--monitor", monitor],
                       stderr_path=os.path.join(directory, "daemon.log"))
    except RuntimeError:
        raise RuntimeError(f"the daemon did not start: see {directory}/daemon.log") from None
    return daemon, monitor


async def run(args: argparse.Namespace, socket_path: str, monitor: str, examples: str) -> None:
    from xenstore.lab.web import serve_page

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_client(socket_path) as xs, trio.open_nursery() as nursery:
            host = Host(xs, HostOptions(args.dir, args.name))
            await nursery.start(host.run)
            await nursery.start(Server(Commands(host),
                                       os.path.join(args.dir, "pyxl-host.sock")).run)

            def domains() -> list[dict[str, Any]]:
                now = host.xen.clock()
                return [domain_row(d, now) for d in sorted(host.xen.domains.values(),
                                                           key=lambda d: d.domid)]

            url = await nursery.start(functools.partial(
                serve_page, socket_path, monitor, port=args.port, domains=domains))
            print(textwrap.dedent(f"""\
                Xen lab ready: a XenStore daemon, a host "{args.name}" and its page.

                  page:    {url}
                  in another terminal:
                    export XENSTORED_PATH={socket_path}
                    pyxl create {examples}/debian-pv.cfg
                    pyxl list
                    xenstore-ls -p /local/domain
                    pyxl console debian-pv          (Ctrl-] to leave)
                    pyxl shutdown -w debian-pv

                Ctrl-C here stops the lab."""), flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.dir = os.path.abspath(args.dir)
    if len(os.path.join(args.dir, "pyxl-host.sock")) > 100:
        print(f"pyxl lab: {args.dir}: too long for Unix socket paths; choose a shorter "
              "--dir", file=sys.stderr)
        return 2
    examples = prepare(args.dir)
    try:
        daemon, monitor = start_daemon(args.dir)
    except RuntimeError as exc:
        print(f"pyxl lab: {exc}", file=sys.stderr)
        return 1
    try:
        trio.run(run, args, daemon.socket_path, monitor, examples)
    except OSError as exc:
        print(f"pyxl lab: {exc}", file=sys.stderr)
        return 1
    finally:
        daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
