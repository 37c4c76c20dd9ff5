"""A real `watcher run` with `[watcher] web` set, read by a real headless browser: what a
user does after the first alerts (issue 18, "Tested for real")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from feedserver import FeedServer, Item
from procs import DaemonProc, Receiver
from servers import free_port
from test_desk_browser import Browser
from test_desk_browser import browser as browser  # the fixture: headless chromium

pytestmark = pytest.mark.slow

# the parse stage already strips markup from feed text; what survives it must stay text
HOSTILE = 'Kursk evacuation" onmouseover="window.pwned=1" x="'
SUMMARY = ("Regional authorities ordered the evacuation of residents of 28 villages within "
           "15 km of the border after days of shelling, officials said on Monday.")


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Await `check` until it returns something truthy (returned); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.2)
    return result


async def test_a_real_daemon_serves_the_desk_to_a_browser(browser: Browser,
                                                         tmp_path: Path) -> None:
    published = datetime.now(UTC) - timedelta(minutes=30)
    port = free_port()
    hook = Receiver()
    hook.answer(404)  # the webhook refuses for good: the alert fails, a person must act
    await hook.start()
    with FeedServer() as feeds:
        feeds.set_feed("a.xml", [Item("Kursk evacuation ordered for 28 border villages",
                                      "https://a.test/kursk-1", "a1", SUMMARY, published)])
        feeds.set_feed("b.xml", [
            Item("Kursk evacuation ordered for 28 border villages, officials say",
                 "https://b.test/news/77", "b1", SUMMARY, published + timedelta(minutes=5)),
            Item(HOSTILE, "javascript:window.pwned=3", "b2", "<b>x</b>", published)])
        config = tmp_path / "watcher.toml"
        config.write_text(f"""
[watcher]
state = "state.db"
first_poll = "alert"
web = "127.0.0.1:{port}"
retry_base = "1s"

[[feeds]]
url = "{feeds.url('a.xml')}"
name = "Outlet A"

[[feeds]]
url = "{feeds.url('b.xml')}"
name = "Outlet B"

[[topics]]
name = "kursk"
any = ["Kursk evacuation"]
channels = ["hook"]

[[channels]]
name = "hook"
type = "webhook"
url = "{hook.url}"
""")
        daemon = DaemonProc(config).start()
        desk = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                async def story_with_two_outlets() -> Any:
                    try:
                        async with http.get(desk + "/api/stories?topic=kursk") as r:
                            stories = (await r.json())["stories"]
                    except aiohttp.ClientError:
                        return None
                    return next((s for s in stories if len(s["outlets"]) == 2), None)

                story = await until(story_with_two_outlets, 60,
                                    "a story with both outlets:\n" + daemon.log())
                assert {o["feed"] for o in story["outlets"]} == {"Outlet A", "Outlet B"}

                async def failed() -> Any:
                    async with http.get(desk + "/api/alerts?status=failed") as r:
                        return (await r.json())["alerts"]

                await until(failed, 30, "the alert to fail")

            await browser.goto(desk + "/?topic=kursk")
            cards = await browser.js("[...document.querySelectorAll('article.story')]"
                                     ".map(a => a.innerText)")
            both = [c for c in cards if "Outlet A" in c and "Outlet B" in c]
            assert len(both) == 1 and both[0].count("28 border villages") >= 1
            assert "hook: failed" in both[0]
            assert HOSTILE in await browser.text()  # shown as text
            assert await browser.js("document.querySelectorAll('[onmouseover]').length") == 0
            assert await browser.js("[...document.links].filter(a => a.protocol === "
                                    "'javascript:').length") == 0
            assert await browser.js("typeof window.pwned") == "undefined"

            hook.answer(200)
            await browser.goto(desk + "/alerts?status=failed")
            action = await browser.js("document.querySelector('form[action$=\"/retry\"]')"
                                      ".getAttribute('action')")
            await browser.click("form[action$='/retry'] button")
            assert "owed again" in await browser.text(".flash")
            await until(lambda: asyncio.sleep(0, hook.accepted), 30, "the re-queued delivery")
            assert action == f"/alerts/{hook.accepted[-1].delivery_id}/retry"

            await browser.goto(desk + "/playground?topic=kursk")
            await browser.click("form.rule button")
            text = await browser.text()
            assert "matches among" in text
            assert "matched Kursk evacuation ~ title: Kursk evacuation (100)" in text
        finally:
            assert daemon.stop() == 0, daemon.log()
            await hook.stop()
