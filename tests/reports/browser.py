"""Headless Chromium driven over the DevTools protocol with aiohttp's websocket client.

Chromium is started with remote debugging on a port of its choosing
(``--remote-debugging-port=0``); the port and the browser target's path are read from the
``DevToolsActivePort`` file it writes into its user data directory. Commands go over one
websocket; pages are attached with flat sessions. Every event is kept, so a test can assert
on console messages, exceptions and network requests after the fact.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Event:
    method: str
    params: dict[str, Any]
    session_id: str | None


class DevToolsError(RuntimeError):
    pass


@dataclass
class Browser:
    """One Chromium process and its DevTools websocket."""

    process: asyncio.subprocess.Process
    ws: aiohttp.ClientWebSocketResponse
    events: list[Event] = field(default_factory=list)
    _pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _next_id: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def read_forever(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(DevToolsError(str(data["error"])))
                    else:
                        future.set_result(data.get("result", {}))
                continue
            async with self._changed:
                self.events.append(
                    Event(data["method"], data.get("params", {}), data.get("sessionId"))
                )
                self._changed.notify_all()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DevToolsError("DevTools connection closed"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        await self.ws.send_str(json.dumps(message))
        async with asyncio.timeout(30):
            return await future

    async def wait_for(self, method: str, session_id: str | None, after: int = 0) -> Event:
        """The first ``method`` event for the session at or after index ``after``."""
        async with asyncio.timeout(30), self._changed:
            while True:
                for event in self.events[after:]:
                    if event.method == method and event.session_id == session_id:
                        return event
                await self._changed.wait()

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.send(f"{domain}.enable")
        return page


@dataclass
class Page:
    browser: Browser
    session_id: str

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session_id)

    def events(self, method: str) -> list[Event]:
        return [
            e for e in self.browser.events if e.method == method and e.session_id == self.session_id
        ]

    async def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": width,
                "height": height,
                "deviceScaleFactor": 2 if mobile else 1,
                "mobile": mobile,
            },
        )

    async def load(self, url: str) -> None:
        mark = len(self.browser.events)
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise DevToolsError(f"navigation to {url} failed: {result['errorText']}")
        await self.browser.wait_for("Page.loadEventFired", self.session_id, mark)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise DevToolsError(str(result["exceptionDetails"]))
        return result["result"].get("value")

    async def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": clip is not None}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        result = await self.send("Page.captureScreenshot", params)
        return base64.b64decode(result["data"])

    async def pdf(self) -> bytes:
        result = await self.send("Page.printToPDF", {"printBackground": True})
        return base64.b64decode(result["data"])


async def _devtools_port(profile: Path, process: asyncio.subprocess.Process) -> tuple[int, str]:
    port_file = profile / "DevToolsActivePort"
    async with asyncio.timeout(30):
        while True:
            if process.returncode is not None:
                raise DevToolsError(f"chromium exited with status {process.returncode}")
            with contextlib.suppress(FileNotFoundError):
                lines = port_file.read_text().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
                    return int(lines[0]), lines[1].strip()
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def chromium(executable: str, workdir: Path) -> AsyncIterator[Browser]:
    """Start headless Chromium with a fresh profile in ``workdir``; stop it on exit."""
    profile = workdir / "profile"
    profile.mkdir(parents=True)
    log = (workdir / "chromium.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        executable,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env={**os.environ, "HOME": str(workdir)},
    )
    try:
        port, path = await _devtools_port(profile, process)
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as ws,
        ):
            browser = Browser(process, ws)
            reader = asyncio.create_task(browser.read_forever())
            try:
                yield browser
            finally:
                with contextlib.suppress(DevToolsError, aiohttp.ClientError, TimeoutError):
                    await browser.send("Browser.close")
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()
