"""`pyxl lab`: one command for the daemon, the host and the page; Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from tests.conftest import short_tempdir
from tests.lab.test_cli import pyxl

DEADLINE = 30


def test_one_command_starts_the_lab_and_stops_it() -> None:
    directory = short_tempdir("xslab")
    lab = subprocess.Popen([sys.executable, "-m", "xenstore.lab.cli", "lab", "--dir",
                            directory, "--port", "0"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        assert lab.stdout is not None
        banner = ""
        deadline = time.monotonic() + DEADLINE
        while "Ctrl-C here stops the lab." not in banner:
            assert time.monotonic() < deadline and lab.poll() is None, banner
            banner += lab.stdout.readline()
        url = re.search(r"page:\s+(http://127\.0\.0\.1:\d+/)", banner)
        assert url, banner
        socket_path = os.path.join(directory, "socket")
        assert f"export XENSTORED_PATH={socket_path}" in banner
        assert f"pyxl create {directory}/examples/debian-pv.cfg" in banner
        with urllib.request.urlopen(url.group(1), timeout=DEADLINE) as page:
            assert b"<html" in page.read()
        listed = pyxl(socket_path, "list")
        assert listed.code == 0 and "Domain-0" in listed.out
        created = pyxl(socket_path, "create", f"{directory}/examples/debian-pv.cfg")
        assert created.code == 0, created
        lab.send_signal(signal.SIGINT)
        assert lab.wait(DEADLINE) == 0
        assert not os.path.exists(socket_path)  # the daemon went with it
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        shutil.rmtree(directory, ignore_errors=True)
