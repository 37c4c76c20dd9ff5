"""The desk (issue 18) served on 127.0.0.1 against a real SQLite store filled through the
store's own write methods: pages, story feeds, the API, the guard, the playground."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import feedparser
import pytest
from conftest import ConfigWriter

from watcher.config import Config, load_config
from watcher.desk import Desk, DeskError
from watcher.desk.security import COOKIE
from watcher.model import (
    Entry,
    FeedState,
    Hit,
    NewAlert,
    NewStory,
    PollRecord,
    StoryMember,
)
from watcher.report import alert_json
from watcher.store import SqliteStore, Store

NOW = datetime.now(UTC).replace(microsecond=0)
FEED_A = "http://127.0.0.1:9/a.xml"
FEED_B = "http://127.0.0.1:9/b.xml"
HOSTILE_TITLE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">Kursk'
HOSTILE_SUMMARY = '"><svg onload="window.pwned=3"> evacuation <iframe src="javascript:1">'
CONFIG = f"""
[watcher]
keep_entries = "7d"

[[feeds]]
url = "{FEED_A}"
name = "Outlet A"

[[feeds]]
url = "{FEED_B}"
name = "Outlet B"

[[topics]]
name = "kursk"
any = ["Kursk evacuation"]
none = ["Battle of Kursk"]
channels = ["hook", "log"]

[[topics]]
name = "quiet"
any = ["nothing ever matches this"]

[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"

[[channels]]
name = "log"
type = "file"
path = "alerts.jsonl"
"""


def entry(key: str, title: str, feed: str = FEED_A, *, summary: str = "",
          link: str | None = None, language: str = "en") -> Entry:
    link = link if link is not None else f"https://news.test/{key}"
    return Entry(key=key, guid=key, title=title, link=link, canonical_link=link,
                 summary=summary, published=NOW - timedelta(hours=2), feed_url=feed,
                 feed_name="Outlet A" if feed == FEED_A else "Outlet B", language=language)


HIT = Hit("Kursk evacuation", "title", "Kursk evacuation", 0, 16, 100.0)


async def record_story(store: Store, story_id: str, topic: str, members: list[Entry], *,
                       at: datetime, channels: tuple[str, ...] = ("hook", "log"),
                       extra_seen: tuple[Entry, ...] = ()) -> list[str]:
    """One story as a poll records it (first member opens it and owes its alerts), and each
    further member as a later poll of its feed; returns the alert ids."""
    first, *others = members
    alerts = [NewAlert(id=f"{story_id}-{ch}", topic=topic, channel=ch, story_id=story_id,
                       entry=first, score=92.5, hits=(HIT,), due_at=at) for ch in channels]
    await store.record_poll(PollRecord(
        feed=FeedState(url=first.feed_url, last_poll_at=at, last_status=200),
        seen=[first, *extra_seen], members=[StoryMember(story_id, first, at)], alerts=alerts,
        stories=[NewStory(story_id, topic, first.title, first.summary, at)]))
    for i, other in enumerate(others, 1):
        seen_at = at + timedelta(minutes=i)
        await store.record_poll(PollRecord(
            feed=FeedState(url=other.feed_url, last_poll_at=seen_at, last_status=200),
            seen=[other], members=[StoryMember(story_id, other, seen_at)]))
    return [a.id for a in alerts]


@dataclass
class World:
    config: Config
    store: Store
    desk: Desk
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.desk.url

    async def get(self, path: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(self.url + path, allow_redirects=False, **kw) as r:
            return r.status, await r.text(), r

    async def post(self, path: str, data: dict[str, str], **kw: Any
                   ) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.post(self.url + path, data=data, allow_redirects=False,
                                     **kw) as r:
            return r.status, await r.text(), r

    async def csrf(self, path: str = "/alerts") -> str:
        _, page, _ = await self.get(path)
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert found, page
        return found.group(1)


Maker = Callable[..., Any]


@pytest.fixture
async def make_world(write_config: ConfigWriter, tmp_path: Path
                     ) -> AsyncIterator[Maker]:
    opened: list[World] = []

    async def make(extra: str = "", **desk_kw: Any) -> World:
        config = write_config(CONFIG.replace("[watcher]", "[watcher]\n" + extra))
        store = SqliteStore(tmp_path / "state.db")
        await store.open()
        desk = Desk(config, store, address="127.0.0.1:0", **desk_kw)
        await desk.start()
        world = World(config, store, desk,
                      aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))
        opened.append(world)
        return world

    yield make
    for w in opened:
        await w.session.close()
        await w.desk.close()
        await w.store.close()


@pytest.fixture
async def world(make_world: Maker) -> World:
    w: World = await make_world()
    a = entry("a1", "Kursk evacuation ordered for border villages", FEED_A, language="en")
    b = entry("b1", "Евакуація з Курської області", FEED_B, language="uk")
    ids = await record_story(w.store, "s-two", "kursk", [a, b], at=NOW - timedelta(hours=1))
    await w.store.mark_delivered([ids[1]], NOW)
    await w.store.mark_failed([ids[0]], "HTTP 404 from http://user:hunter2@hooks.test/x")
    return w


# --- stories ---

async def test_front_page_lists_a_two_outlet_story_once_with_both_outlets(world: World
                                                                          ) -> None:
    status, page, r = await world.get("/")
    assert status == 200
    assert page.count("Kursk evacuation ordered for border villages") == 1
    assert "Outlet A" in page and "Outlet B" in page
    assert "Евакуація з Курської області" in page
    assert re.search(r'class="lang">uk<', page) and re.search(r'class="lang">en<', page)
    assert "hook: failed" in page and "log: delivered" in page
    assert "hunter2" not in page
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "script-src" not in r.headers["Content-Security-Policy"]


async def test_story_page_explains_the_match_and_lists_the_outlets_in_order(world: World
                                                                            ) -> None:
    status, page, _ = await world.get("/stories/s-two")
    assert status == 200
    assert "Topic score <strong>92.5</strong>" in page
    assert "<td>Kursk evacuation</td><td>title</td><td><mark>Kursk evacuation</mark></td>" in page
    timeline = page[page.index('class="timeline"'):]
    assert timeline.index("Outlet A") < timeline.index("Outlet B")
    assert 'href="https://news.test/a1"' in page
    assert (await world.get("/stories/nope"))[0] == 404


async def test_a_topic_page_pages_through_its_stories_newest_first(world: World) -> None:
    for i in range(55):
        await record_story(world.store, f"p{i:02d}", "quiet", [entry(f"q{i}", f"Quiet {i:02d}")],
                           at=NOW - timedelta(days=2, minutes=i), channels=())
    _, first, _ = await world.get("/?topic=quiet")
    titles = re.findall(r"Quiet (\d\d)</a>", first)
    assert titles == [f"{i:02d}" for i in range(50)]
    older = re.search(r'<a href="([^"]+)">Older stories', first)
    assert older
    _, second, _ = await world.get(older.group(1).replace("&amp;", "&"))
    assert re.findall(r"Quiet (\d\d)</a>", second) == [f"{i:02d}" for i in range(50, 55)]
    assert (await world.get("/?topic=nope"))[0] == 404


# --- hostile feed text ---

async def test_hostile_titles_summaries_and_links_stay_text(world: World) -> None:
    bad = entry("h1", HOSTILE_TITLE, summary=HOSTILE_SUMMARY, link="javascript:alert(1)")
    other = entry("h2", "<b onmouseover=x>bold</b>", FEED_B, link="data:text/html,hi")
    await record_story(world.store, "s-bad", "kursk", [bad, other], at=NOW)
    for path in ("/", "/stories/s-bad", "/?topic=kursk"):
        _, page, _ = await world.get(path)
        assert "<script>" not in page and "<img" not in page and "<svg" not in page
        assert "<b onmouseover" not in page
        assert not re.search(r"(href|src)=.(javascript|data):", page)
        assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    _, page, _ = await world.get("/stories/s-bad")
    assert "&lt;svg onload=&#34;window.pwned=3&#34;&gt;" in page


async def test_topic_feeds_parse_clean_with_hostile_text(world: World) -> None:
    bad = entry("h1", HOSTILE_TITLE + "\x01\x0b", summary=HOSTILE_SUMMARY,
                link="javascript:alert(1)")
    await record_story(world.store, "s-bad", "kursk", [bad], at=NOW)
    status, body, r = await world.get("/topics/kursk.atom")
    assert status == 200 and r.headers["Content-Type"].startswith("application/atom+xml")
    parsed = feedparser.parse(body.encode())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    titles = [e.title for e in parsed.entries]
    assert titles == [HOSTILE_TITLE, "Kursk evacuation ordered for border villages"]
    two = parsed.entries[1]
    assert two.link == "https://news.test/a1"
    content = two.content[0].value
    assert "Outlet A" in content and "Outlet B" in content and "uk" in content
    assert "<script" not in parsed.entries[0].content[0].value
    assert all(link.href != "javascript:alert(1)" for link in parsed.entries[0].links)

    status, body, r = await world.get("/topics/kursk.json")
    assert status == 200 and r.headers["Content-Type"].startswith("application/feed+json")
    doc = json.loads(body)
    check_json_feed(doc)
    assert [item["title"] for item in doc["items"]] == titles
    outlets = doc["items"][1]["_watcher"]["outlets"]
    assert [(o["feed"], o["language"]) for o in outlets] == [("Outlet A", "en"),
                                                              ("Outlet B", "uk")]
    assert "url" not in doc["items"][0]
    assert (await world.get("/topics/nope.atom"))[0] == 404


def check_json_feed(doc: dict[str, Any]) -> None:
    """What JSON Feed 1.1 requires (feedparser's releases do not read JSON Feed yet)."""
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(doc["title"], str) and doc["title"]
    for key in ("home_page_url", "feed_url"):
        assert doc[key].startswith("http://127.0.0.1:")
    for item in doc["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert isinstance(item.get("content_html") or item.get("content_text"), str)
        for key in ("date_published", "date_modified"):
            datetime.fromisoformat(item[key])
        if "url" in item:
            assert item["url"].startswith(("http://", "https://"))
        assert all(k in {"id", "url", "title", "content_html", "summary", "date_published",
                         "date_modified", "authors"} or k.startswith("_") for k in item)
        assert "<script" not in item["content_html"]


# --- API ---

async def test_api_stories_gives_the_documented_fields(world: World) -> None:
    status, body, r = await world.get("/api/stories?topic=kursk&since=1d")
    assert status == 200 and r.content_type == "application/json"
    stories = json.loads(body)["stories"]
    assert len(stories) == 1
    s = stories[0]
    assert {"id", "topic", "title", "link", "first_seen", "outlets", "alerts"} <= set(s)
    assert s["id"] == "s-two" and s["link"] == "https://news.test/a1"
    assert [(o["feed"], o["language"]) for o in s["outlets"]] == [("Outlet A", "en"),
                                                                  ("Outlet B", "uk")]
    assert {(a["channel"], a["state"]) for a in s["alerts"]} == {("hook", "failed"),
                                                                ("log", "delivered")}
    assert json.loads((await world.get("/api/stories?since=2025-01-01"))[1])["stories"]
    future = (NOW + timedelta(days=1)).date().isoformat()
    assert json.loads((await world.get(f"/api/stories?since={future}"))[1]) == {"stories": []}
    status, body, _ = await world.get("/api/stories?since=yesterday")
    assert status == 400 and "since" in json.loads(body)["error"]
    assert (await world.get("/api/stories?limit=0"))[0] == 400
    assert (await world.get("/api/stories?topic=nope"))[0] == 404


async def test_api_alerts_has_the_fields_of_watcher_alerts_json(world: World) -> None:
    status, body, _ = await world.get("/api/alerts")
    assert status == 200
    got = json.loads(body)["alerts"]
    expected = [alert_json(r) for r in await world.store.alert_history()]
    assert got == json.loads(json.dumps(expected))
    failed = json.loads((await world.get("/api/alerts?status=failed"))[1])["alerts"]
    assert [(a["channel"], a["state"]) for a in failed] == [("hook", "failed")]
    assert "hunter2" not in body and "***" in failed[0]["last_error"]
    assert (await world.get("/api/alerts?status=lost"))[0] == 400


async def test_api_feeds_and_the_feeds_page_put_failing_feeds_first(world: World) -> None:
    await world.store.save_feed(FeedState(url=FEED_B, last_poll_at=NOW, last_status=503,
                                          last_error="HTTP 503", error_count=3,
                                          next_poll_at=NOW + timedelta(hours=1)))
    feeds = json.loads((await world.get("/api/feeds"))[1])["feeds"]
    by_name = {f["name"]: f for f in feeds}
    assert by_name["Outlet B"]["http_status"] == 503 and by_name["Outlet B"]["errors"] == 3
    assert by_name["Outlet A"]["http_status"] == 200
    _, page, _ = await world.get("/feeds")
    assert page.index("Outlet B") < page.index("Outlet A")
    assert "backing off" in page and "HTTP 503" in page
    _, page, _ = await world.get("/feeds?sort=name")
    assert page.index("Outlet A") < page.index("Outlet B")
    _, page, _ = await world.get("/feeds?sort=name&order=desc")
    assert page.index("Outlet B") < page.index("Outlet A")


# --- the retry action ---

async def test_retry_requeues_a_failed_alert_only_from_the_desks_own_form(world: World
                                                                          ) -> None:
    woken: list[bool] = []
    world.desk.on_retry = lambda: woken.append(True)
    def state() -> Any:
        return world.store.alert_history(topic="kursk")

    assert {a.channel: a.state for a in await state()}["hook"] == "failed"
    assert (await world.post("/alerts/s-two-hook/retry", {}))[0] == 403
    token = await world.csrf()
    cross = {"Origin": "http://evil.test", "Sec-Fetch-Site": "cross-site"}
    assert (await world.post("/alerts/s-two-hook/retry", {"csrf": token}, headers=cross))[0] \
        == 403
    assert (await world.post("/alerts/s-two-hook/retry", {"csrf": "0" * 64}))[0] == 403
    assert {a.channel: a.state for a in await state()}["hook"] == "failed"

    status, _, r = await world.post("/alerts/s-two-hook/retry",
                                    {"csrf": token, "next": "/alerts?status=failed"})
    assert status == 303 and r.headers["Location"] == "/alerts?status=failed&msg=requeued"
    assert {a.channel: a.state for a in await state()}["hook"] == "owed"
    assert woken == [True]  # the daemon's outbox is woken: no wait for its next look
    status, _, r = await world.post("/alerts/s-two-hook/retry",
                                    {"csrf": token, "next": "//evil.test/"})
    assert r.headers["Location"] == "/?msg=not-failed"


async def test_the_failed_alert_shows_its_reason_and_a_retry_form(world: World) -> None:
    _, page, _ = await world.get("/alerts?status=failed")
    assert "HTTP 404 from http://***:***@hooks.test/x" in page
    assert 'action="/alerts/s-two-hook/retry"' in page
    assert "s-two-log" not in page


# --- the guard ---

def test_a_non_loopback_address_without_a_token_is_refused(write_config: ConfigWriter,
                                                           tmp_path: Path) -> None:
    config = write_config(CONFIG)
    store = SqliteStore(tmp_path / "x.db")
    with pytest.raises(DeskError, match="not a loopback address"):
        Desk(config, store, address="0.0.0.0:8080")


async def test_a_dns_rebinding_host_is_refused_without_a_token(world: World) -> None:
    status, _, r = await world.get("/", headers={"Host": "evil.test:8080"})
    assert status == 421 and "Content-Security-Policy" in r.headers
    assert (await world.get("/", headers={"Host": "localhost:8080"}))[0] == 200


async def test_with_a_token_every_request_needs_it(make_world: Maker,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    token = "correct-horse-battery-staple"
    monkeypatch.setenv("DESK_TOKEN", token)
    w: World = await make_world('web_token_env = "DESK_TOKEN"')
    status, _, r = await w.get("/alerts?status=failed")
    assert status == 303 and r.headers["Location"] == "/login?next=/alerts?status%3Dfailed"
    assert (await w.get("/api/stories"))[0] == 401
    assert (await w.get("/topics/kursk.atom"))[0] == 401
    assert (await w.get("/api/stories", headers={"Authorization": "Bearer nope"}))[0] == 401
    assert (await w.get("/api/stories",
                        headers={"Authorization": f"Bearer {token}"}))[0] == 200
    basic = base64.b64encode(f"reader:{token}".encode()).decode()
    assert (await w.get("/topics/kursk.atom", headers={"Authorization": f"Basic {basic}"})
            )[0] == 200
    assert (await w.get("/", headers={"Host": "desk.example.org"}))[0] == 303  # any host

    _, page, _ = await w.get("/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf
    status, _, r = await w.post("/login", {"csrf": csrf.group(1), "token": "wrong",
                                           "next": "/feeds"})
    assert status == 303 and r.headers["Location"].startswith("/login")
    assert COOKIE not in r.cookies
    status, _, r = await w.post("/login", {"csrf": csrf.group(1), "token": token,
                                           "next": "/feeds"})
    assert status == 303 and r.headers["Location"] == "/feeds"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
    assert (await w.get("/feeds"))[0] == 200  # the session keeps the cookie
    # the public login page's form token does not let a POST re-queue an alert
    forms = await w.csrf("/alerts")
    assert forms != csrf.group(1)
    assert (await w.post("/alerts/x/retry", {"csrf": csrf.group(1)}))[0] == 403
    assert (await w.post("/alerts/x/retry", {"csrf": forms}))[0] == 303


async def test_a_short_token_is_refused(write_config: ConfigWriter, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESK_TOKEN", "short")
    config = write_config(CONFIG.replace("[watcher]", '[watcher]\nweb_token_env = "DESK_TOKEN"'))
    with pytest.raises(DeskError, match="at least 16"):
        Desk(config, SqliteStore(tmp_path / "x.db"), address="127.0.0.1:0")


# --- the playground ---

async def test_the_playground_shows_matches_with_explanations_and_near_misses(
        make_world: Maker) -> None:
    w: World = await make_world()
    hit = entry("m1", "Kursk evacuation ordered for border villages")
    near = entry("n1", "Kursk evacuaiton numbers rise", FEED_B)
    dropped = entry("d1", "Battle of Kursk anniversary: evacuation drills", FEED_B)
    unrelated = entry("u1", "Grain prices fall")
    await record_story(w.store, "s-m", "kursk", [hit], at=NOW - timedelta(hours=3),
                       extra_seen=(near, dropped, unrelated))
    token = await w.csrf("/playground")
    toml = ('[[topics]]\nname = "try"\nany = ["Kursk evacuation"]\n'
            'none = ["Battle of Kursk"]\nthreshold = 95\n')
    status, page, _ = await w.post("/playground", {"csrf": token, "toml": toml, "days": "2"})
    assert status == 200
    assert "1 match among 4 entries" in page
    assert "<mark>Kursk evacuation</mark> ordered for border villages" in page
    assert "matched <q>Kursk evacuation</q> ~ title" in page
    near_part = page[page.index("Near misses"):]
    assert near_part.index("<mark>Kursk evacuaiton</mark> numbers rise") < near_part.index(
        "dropped by none")
    assert "below threshold</span> 86.7 of 95 needed" in near_part
    assert "<mark>Battle of Kursk</mark> anniversary" in near_part
    assert "Grain prices" not in page
    copy = page[page.index("Copy the TOML"):]
    assert "[[topics]]\nname = &#34;try&#34;" in copy and "threshold = 95" in copy
    assert w.config.topics[0].name == "kursk"  # nothing written


async def test_the_playground_names_the_key_of_a_bad_topic(world: World) -> None:
    token = await world.csrf("/playground")
    bad = '[[topics]]\nname = "x"\nany = ["a b"]\nthreshold = 300\nchannels = ["nope"]\n'
    status, page, _ = await world.post("/playground", {"csrf": token, "toml": bad})
    assert status == 200
    assert "playground: topics[0].threshold" in page
    assert "no channel named &#39;nope&#39;" in page
    status, page, _ = await world.post("/playground", {"csrf": token, "toml": "any = ["})
    assert "not valid TOML" in page
    assert (await world.post("/playground", {"toml": "any = []"}))[0] == 403


async def test_the_playground_refuses_a_topic_too_big_or_deep_to_try(world: World) -> None:
    """One try runs every phrase against every stored entry: a topic of a thousand phrases
    held the daemon's CPU for minutes; one nested thousands deep crashed the handler."""
    token = await world.csrf("/playground")
    phrases = ", ".join(f'"Kursk * evacuation * {n}"' for n in range(101))
    status, page, _ = await world.post("/playground", {"csrf": token,
                                                       "toml": f"any = [{phrases}]\n"})
    assert status == 200 and "up to 100 phrases and examples (this one has 101)" in page
    deep = f'any = ["Kursk"]\nquery = "{"(" * 3000}Kursk{")" * 3000}"\n'
    status, page, _ = await world.post("/playground", {"csrf": token, "toml": deep})
    assert status == 200 and "nested too deeply" in page
    status, page, _ = await world.post("/playground", {"csrf": token,
                                                       "toml": "a = " + "[" * 5000})
    assert status == 200 and ("nested too deeply" in page or "not valid TOML" in page)


async def test_the_playground_lists_the_first_matches_and_counts_them_all(
        make_world: Maker, monkeypatch: pytest.MonkeyPatch) -> None:
    from watcher.desk import playground

    monkeypatch.setattr(playground, "SHOWN", 2)
    w: World = await make_world()
    hits = [entry(f"m{i}", f"Kursk evacuation, convoy {i}") for i in range(5)]
    await record_story(w.store, "s-m", "kursk", hits[:1], at=NOW - timedelta(hours=3),
                       extra_seen=tuple(hits[1:]))
    token = await w.csrf("/playground")
    status, page, _ = await w.post("/playground", {"csrf": token,
                                                   "toml": 'any = ["Kursk evacuation"]\n'})
    assert status == 200 and "5 matches among 5 entries (the first 2 listed)" in page
    assert page.count("<mark>Kursk evacuation</mark>, convoy") == 2
    monkeypatch.setattr(playground, "TIME_BUDGET", 0.0)  # a try over its time stops, says so
    status, page, _ = await w.post("/playground", {"csrf": token,
                                                   "toml": 'any = ["Kursk evacuation"]\n'})
    assert status == 200 and "Stopped after 0 entries" in page


async def test_odd_numbers_in_a_query_are_a_bad_request_not_a_crash(world: World) -> None:
    for path in ("/api/stories?limit=%C2%B2", "/api/stories?limit=" + "9" * 5000,
                 "/api/stories?since=99999999d"):
        status, body, r = await world.get(path)
        assert status == 400, (path, body)
        assert "Content-Security-Policy" in r.headers
    token = await world.csrf("/playground")
    for days in ("\u00b2", "9" * 5000):
        status, _, _ = await world.post("/playground", {"csrf": token, "days": days,
                                                        "toml": 'any = ["Kursk"]\n'})
        assert status == 200


async def test_the_playground_starts_from_a_configured_topic(world: World) -> None:
    _, page, _ = await world.get("/playground?topic=kursk")
    area = page[page.index("<textarea"):page.index("</textarea>")]
    assert "name = &#34;kursk&#34;" in area and "Battle of Kursk" in area


async def test_a_topic_by_meaning_without_the_model_says_it_matched_on_keywords(
        world: World) -> None:
    token = await world.csrf("/playground")
    toml = ('[[topics]]\nname = "meaning"\nany = ["Kursk evacuation"]\n'
            'about = "people leaving the Kursk region because of the fighting"\n')
    status, page, _ = await world.post("/playground", {"csrf": token, "toml": toml})
    assert status == 200
    assert "need the embedding model" in page and "1 match among" in page


async def test_a_reloaded_config_shows_its_new_topics(world: World) -> None:
    assert (await world.get("/topics/added.atom"))[0] == 404
    text = world.config.path.read_text() + '\n[[topics]]\nname = "added"\nany = ["x y"]\n'
    world.config.path.write_text(text)
    world.desk.reload(load_config(world.config.path))
    assert (await world.get("/topics/added.atom"))[0] == 200
    assert 'href="/?topic=added"' in (await world.get("/"))[1]


async def test_start_serves_on_the_configured_address_until_closed(
        write_config: ConfigWriter, tmp_path: Path) -> None:
    from watcher import desk

    config = write_config(CONFIG.replace("[watcher]", '[watcher]\nweb = "127.0.0.1:0"'))
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    served = await desk.start(config, store)
    url = served.url
    try:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        async with aiohttp.ClientSession() as http, http.get(url + "/feeds") as r:
            assert r.status == 200 and "Outlet A" in await r.text()
    finally:
        await served.close()
        await served.close()  # twice is fine
        await store.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(url + "/"):
            pass
