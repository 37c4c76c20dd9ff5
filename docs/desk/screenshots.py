"""Make the desk's screenshots in this folder (README shows them).

    .venv/bin/python docs/desk/screenshots.py

Fills a throwaway SQLite state through the store's own write method with a few stories,
serves the desk on 127.0.0.1 and photographs it with headless chromium (Debian's package),
driven by the same DevTools client as tests/test_desk_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from test_desk import CONFIG, FEED_A, FEED_B, entry, record_story  # noqa: E402
from test_desk_browser import Browser, skip_reason  # noqa: E402

from watcher.config import load_config  # noqa: E402
from watcher.desk import Desk  # noqa: E402
from watcher.model import FeedState  # noqa: E402
from watcher.store import SqliteStore  # noqa: E402

TRY = """[[topics]]
name = "kursk"
any = ["Kursk evacuation"]
none = ["Red Cross"]
threshold = 95
"""
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
STORIES = [
    ("s1", [("Kursk evacuation ordered for 28 border villages", FEED_A, "en"),
            ("Евакуація з прикордонних сіл Курської області", FEED_B, "uk"),
            ("Эвакуация из приграничных сел Курской области", FEED_A, "ru")]),
    ("s2", [("Kursk evacuation: buses leave Sudzha at dawn", FEED_B, "en"),
            ("Kursk evacuees reach Kursk city shelters", FEED_A, "en")]),
    ("s3", [("Red Cross says Kursk evacuation corridors hold", FEED_A, "en")]),
]


async def main() -> None:
    if reason := skip_reason():
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "watcher.toml"
        path.write_text(CONFIG)
        config = load_config(path)
        store = SqliteStore(Path(tmp) / "state.db")
        await store.open()
        for i, (sid, items) in enumerate(STORIES):
            members = [entry(f"{sid}-{k}", title, feed, language=lang,
                             summary="Regional authorities said residents of villages within "
                                     "15 km of the border would be moved to temporary housing.")
                       for k, (title, feed, lang) in enumerate(items)]
            near = (entry("near", "Kursk evacuaiton plan debated in the Duma"),) if i == 0 else ()
            ids = await record_story(store, sid, "kursk", members,
                                     at=NOW - timedelta(hours=3 * i + 1), extra_seen=near)
            await store.mark_delivered([ids[1]], NOW)
            if sid == "s2":
                await store.mark_failed([ids[0]], "HTTP 404 from http://127.0.0.1:9/hook")
            else:
                await store.mark_delivered([ids[0]], NOW)
        await store.save_feed(FeedState(url=FEED_B, last_poll_at=NOW, last_status=503,
                                        last_error="HTTP 503 Service Unavailable",
                                        error_count=3, next_poll_at=NOW + timedelta(hours=2)))
        desk = Desk(config, store, address="127.0.0.1:0")
        await desk.start()
        browser = await Browser().start()
        try:
            shots = [("/?topic=kursk", "stories.png", {}), ("/stories/s1", "story.png", {}),
                     ("/alerts", "alerts.png", {}),
                     ("/?topic=kursk", "phone-dark.png", {"width": 390, "height": 760,
                                                          "mobile": True, "dark": True})]
            for page, name, kw in shots:
                await browser.goto(desk.url + page)
                await browser.screenshot(HERE / name, **kw)
            await browser.goto(desk.url + "/playground?topic=kursk")
            await browser.js("document.querySelector('textarea').value = " + json.dumps(TRY))
            await browser.js("document.querySelector('textarea').rows = 6")
            await browser.click("form.rule button")
            await browser.screenshot(HERE / "playground.png", height=1250)
        finally:
            await browser.close()
            await desk.close()
            await store.close()
    for png in sorted(HERE.glob("*.png")):
        print(f"{png.name}: {png.stat().st_size // 1024} KB")


if __name__ == "__main__":
    asyncio.run(main())
