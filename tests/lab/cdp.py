"""Chromium headless, driven live through the DevTools protocol over a pipe: stdlib
and trio only, no webdriver.

``--remote-debugging-pipe`` makes Chromium read commands on its fd 3 and write
replies and events on its fd 4, each a JSON object ended by a NUL byte. We
give it two pipes there (``os.posix_spawn`` puts them at 3 and 4) and speak
the protocol: a page target is created and attached to (flattened sessions),
then ``Runtime.evaluate`` reads what the page shows and
``Page.captureScreenshot`` takes its picture.

The flags keep a browser on a machine without network quiet and fast: no
sandbox (CI runs as root), no GPU, no first-run, sync, component updates or
background traffic, a throwaway profile.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
CALL_TIMEOUT = 20.0


class DevToolsError(Exception):
    """The browser answered a command with an error, or a script threw."""


def _high(fd: int) -> int:
    """``fd`` moved above 4, so that putting the pipes at 3 and 4 cannot clobber one
    (and so that a dup2 onto itself, which would keep close-on-exec, cannot happen)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Browser:
    """One Chromium process and its DevTools pipe."""

    def __init__(self, process: Process, commands: int, replies: int,
                 stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self._send = trio.lowlevel.FdStream(commands)
        self._receive = trio.lowlevel.FdStream(replies)
        self._send_lock = trio.Lock()
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._arrived = trio.Event()
        self._gone = False

    async def read_replies(self) -> None:
        """Route replies to their callers until the browser closes its end."""
        pending = b""
        try:
            while data := await self._receive.receive_some(1 << 16):
                pending += data
                *messages, pending = pending.split(b"\0")
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:  # events (no id) are not needed here
                        self._replies[message["id"]] = message
                        self._arrived.set()
                        self._arrived = trio.Event()
        finally:
            self._gone = True
            self._arrived.set()

    async def call(self, method: str, params: dict[str, Any] | None = None,
                   session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result (bounded by CALL_TIMEOUT)."""
        self._next_id += 1
        call_id = self._next_id
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        with trio.fail_after(CALL_TIMEOUT):
            async with self._send_lock:
                await self._send.send_all(json.dumps(message).encode() + b"\0")
            while call_id not in self._replies:
                if self._gone:
                    raise DevToolsError(f"the browser went away during {method}: "
                                        f"{self.stderr_tail()}")
                await self._arrived.wait()
        reply = self._replies.pop(call_id)
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def open(self, url: str) -> Page:
        """A new tab at ``url``, once its document has loaded."""
        target = await self.call("Target.createTarget", {"url": url})
        attached = await self.call("Target.attachToTarget",
                                   {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        await page.wait_for("document.readyState === 'complete'", "the page to load", 20)
        return page

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no output)"

    async def close(self) -> None:
        with contextlib.suppress(DevToolsError, trio.TooSlowError, trio.BrokenResourceError,
                                 trio.ClosedResourceError):
            with trio.move_on_after(5):
                await self.call("Browser.close")
        with trio.move_on_after(5):
            # A child started by posix_spawn has no trio event for its exit: poll.
            while self.process.poll() is None:  # noqa: ASYNC110
                await trio.sleep(0.05)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        await self._send.aclose()


class Page:
    """One tab, through its flattened DevTools session."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = await self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self.session)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, seconds: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; its value. Fails after ``seconds``
        saying ``what`` never showed and what the expression last gave."""
        last: Any = None
        with trio.move_on_after(seconds):
            while True:
                last = await self.evaluate(expression)
                if last:
                    return last
                await trio.sleep(0.1)
        raise AssertionError(f"the page never showed {what} within {seconds} s "
                             f"(last: {last!r})")

    async def screenshot(self, path: Path) -> Path:
        shot = await self.browser.call("Page.captureScreenshot", {"format": "png"},
                                       self.session)
        await trio.Path(path).write_bytes(base64.b64decode(shot["data"]))
        return path


class Process:
    """A child started with :func:`os.posix_spawn` (which can put fds where we want)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


@contextlib.asynccontextmanager
async def open_browser(chromium: str, workdir: Path, width: int = 1440,
                       height: int = 1000) -> AsyncIterator[Browser]:
    """Chromium headless with a profile in ``workdir``, closed (or killed) after."""
    profile = workdir / "profile"
    profile.mkdir(parents=True, exist_ok=True)
    stderr_path = workdir / "chromium.log"
    commands_r, commands_w = (_high(fd) for fd in os.pipe())
    replies_r, replies_w = (_high(fd) for fd in os.pipe())
    argv = [chromium, *FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}",
            "--remote-debugging-pipe", "about:blank"]
    # posix_spawn returns once the child exists: it does not wait for the browser.
    process = Process(os.posix_spawn(chromium, argv, os.environ, file_actions=[  # noqa: ASYNC221
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(stderr_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
        # dup2 clears close-on-exec on the copies: the browser gets exactly these two.
        (os.POSIX_SPAWN_DUP2, commands_r, 3),
        (os.POSIX_SPAWN_DUP2, replies_w, 4),
    ]))
    os.close(commands_r)  # the browser's ends now
    os.close(replies_w)
    browser = Browser(process, commands_w, replies_r, stderr_path)
    failure: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(browser.read_replies)
            try:
                await browser.call("Browser.getVersion")
                yield browser
            except BaseException as exc:
                # Raised again below, outside the nursery: as itself, not in a group.
                failure = exc
            finally:
                with trio.CancelScope(shield=True):
                    await browser.close()
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
