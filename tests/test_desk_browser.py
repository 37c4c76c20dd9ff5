"""The desk in a real headless browser (Debian's chromium, driven over its DevTools
protocol with aiohttp's websocket client: no new dependency, no driver binary to match).

What a reader sees: a two-outlet story listed once with both outlets, a hostile title shown
as text (and the Content-Security-Policy refusing a script the page did not ship), the
retry button re-queueing a failed alert, the playground showing a match and its explanation.
Skipped, with the reason, only when no chromium is installed.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_desk import FEED_A, FEED_B, HOSTILE_TITLE, NOW, Maker, World, entry, record_story
from test_desk import make_world as make_world  # the fixture: a desk on a real store

BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions",
                 "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                 "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def skip_reason() -> str | None:
    if find_chromium() is None:
        return ("no chromium: install Debian's `chromium` package (scripts/test does when "
                "run as root) to run the browser tests")
    return None


class CdpError(Exception):
    """The browser answered a DevTools command with an error."""


class Browser:
    """One headless chromium and one page in it, driven over the DevTools protocol."""

    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="desk-chromium-"))
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.page: str = ""  # the attached page's session id
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._event_added = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30.0) -> Browser:
        binary = find_chromium()
        assert binary, skip_reason()
        self.proc = await asyncio.create_subprocess_exec(
            binary, *BROWSER_FLAGS, f"--user-data-dir={self.profile}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        async with asyncio.timeout(timeout):
            while not (port_file.exists() and len(port_file.read_text().split()) == 2):
                if self.proc.returncode is not None:
                    raise RuntimeError(f"chromium exited with {self.proc.returncode}")
                await asyncio.sleep(0.05)
        port, path = port_file.read_text().split()
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send("Target.attachToTarget", targetId=target["targetId"],
                                   flatten=True)
        self.page = attached["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            await self.send(domain, session=self.page)
        return self

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._replies:
                self._replies.pop(data["id"]).set_result(data)
            elif "method" in data:
                async with self._event_added:
                    self._events.append((data["method"], data.get("params", {})))
                    self._event_added.notify_all()

    async def send(self, method: str, *, session: str | None = None, timeout: float = 30.0,
                   **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        number = next(self._ids)
        reply = self._replies[number] = asyncio.get_running_loop().create_future()
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await self.ws.send_str(json.dumps(message))
        data = await asyncio.wait_for(reply, timeout)
        if "error" in data:
            raise CdpError(f"{method}: {data['error']}")
        return dict(data.get("result", {}))

    async def wait_event(self, method: str, after: int, timeout: float = 30.0
                         ) -> dict[str, Any]:
        """The first `method` event after the `after`-th event seen."""
        async with asyncio.timeout(timeout), self._event_added:
            while True:
                for name, params in self._events[after:]:
                    if name == method:
                        return params
                await self._event_added.wait()

    def events(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self._events if name == method]

    async def _loaded_after(self, action: Any) -> None:
        mark = len(self._events)
        await action
        await self.wait_event("Page.loadEventFired", mark)

    async def goto(self, url: str) -> None:
        await self._loaded_after(self.send("Page.navigate", session=self.page, url=url))

    async def click(self, selector: str) -> None:
        """Click an element that submits a form or follows a link, and wait for the page."""
        await self._loaded_after(self.js(f"document.querySelector({json.dumps(selector)})"
                                         f".click()"))

    async def js(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", session=self.page, expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def text(self, selector: str = "body") -> str:
        return str(await self.js(f"document.querySelector({json.dumps(selector)}).innerText"))

    async def screenshot(self, path: Path, width: int = 1100, height: int = 800,
                         mobile: bool = False, dark: bool = False) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", session=self.page, width=width,
                        height=height, deviceScaleFactor=1, mobile=mobile)
        await self.send("Emulation.setEmulatedMedia", session=self.page, features=[
            {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}])
        shot = await self.send("Page.captureScreenshot", session=self.page, format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if reason := skip_reason():
        pytest.skip(reason)
    b = await Browser().start()
    try:
        yield b
    finally:
        await b.close()


async def fill(w: World) -> None:
    """A two-outlet story whose webhook delivery failed for good, and a hostile one."""
    a = entry("a1", "Kursk evacuation ordered for border villages", FEED_A, language="en")
    b = entry("b1", "Евакуація з Курської області", FEED_B, language="uk")
    ids = await record_story(w.store, "s-two", "kursk", [a, b], at=NOW,
                             extra_seen=(entry("n1", "Kursk evacuaiton numbers rise"),))
    await w.store.mark_delivered([ids[1]], NOW)
    await w.store.mark_failed([ids[0]], "HTTP 404 from the webhook")
    bad = entry("h1", HOSTILE_TITLE, FEED_B, summary='<img src=x onerror="window.pwned=4">',
                link="javascript:window.pwned=5")
    await record_story(w.store, "s-bad", "kursk", [bad], at=NOW, channels=())


async def test_a_reader_sees_a_two_outlet_story_once_with_both_outlets(
        browser: Browser, make_world: Maker) -> None:
    w: World = await make_world()
    await fill(w)
    await browser.goto(w.url + "/?topic=kursk")
    titles = await browser.js("[...document.querySelectorAll('article.story h3')]"
                              ".map(h => h.innerText)")
    assert titles.count("Kursk evacuation ordered for border villages") == 1
    card = await browser.js("[...document.querySelectorAll('article.story')].find(a => "
                            "a.innerText.includes('border villages')).innerText")
    assert "Outlet A" in card and "Outlet B" in card and "UK" in card.upper()
    assert "hook: failed" in card and "log: delivered" in card


async def test_a_hostile_title_stays_text_and_no_script_runs(browser: Browser,
                                                            make_world: Maker) -> None:
    w: World = await make_world()
    await fill(w)
    for path in ("/", "/stories/s-bad"):
        await browser.goto(w.url + path)
        assert HOSTILE_TITLE in await browser.text()
        assert await browser.js("document.querySelectorAll('main script, main img, "
                                "main svg').length") == 0
        assert await browser.js("typeof window.pwned") == "undefined"
        assert await browser.js("[...document.links].filter(a => !a.href.startsWith('http'))"
                                ".length") == 0
    # the policy itself: a script added to the page (not shipped by the desk) is refused
    await browser.js("const s = document.createElement('script'); s.textContent = "
                     "'window.injected = 1'; document.body.append(s)")
    assert await browser.js("typeof window.injected") == "undefined"


async def test_the_retry_button_requeues_a_failed_alert(browser: Browser,
                                                        make_world: Maker) -> None:
    w: World = await make_world()
    await fill(w)
    await browser.goto(w.url + "/alerts?status=failed")
    assert "HTTP 404 from the webhook" in await browser.text()
    await browser.click("form[action='/alerts/s-two-hook/retry'] button")
    assert "The alert is owed again" in await browser.text(".flash")
    states = {a.channel: a.state for a in await w.store.alert_history(topic="kursk")}
    assert states["hook"] == "owed"


async def test_the_playground_shows_a_match_with_its_explanation(browser: Browser,
                                                                 make_world: Maker) -> None:
    w: World = await make_world()
    await fill(w)
    await browser.goto(w.url + "/playground?topic=kursk")
    await browser.js("document.querySelector('textarea').value = "
                     + json.dumps('[[topics]]\nname = "try"\nany = ["Kursk evacuation"]\n'
                                  'threshold = 95\n'))
    await browser.click("form.rule button")
    assert "1 match among" in await browser.text()
    match = await browser.text("article.match")
    assert "Kursk evacuation ordered for border villages" in match
    assert "matched Kursk evacuation ~ title: Kursk evacuation (100)" in match
    assert await browser.js("document.querySelector('article.match h3 mark').innerText") \
        == "Kursk evacuation"
    assert "below threshold" in await browser.text("article.near")


async def test_the_desk_reads_well_on_a_phone(browser: Browser, make_world: Maker) -> None:
    w: World = await make_world()
    await fill(w)
    await browser.send("Emulation.setDeviceMetricsOverride", session=browser.page, width=390,
                       height=800, deviceScaleFactor=2, mobile=True)
    for path in ("/", "/alerts", "/feeds", "/playground", "/stories/s-two"):
        await browser.goto(w.url + path)
        # nothing wider than the screen outside the scrollable tables
        assert await browser.js("document.documentElement.scrollWidth") <= 390, path
