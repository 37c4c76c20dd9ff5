"""Digests: one message per period, each story once with all its outlets (issue 10).

Time is a fake clock given to the Pipeline and the Outbox (both take `clock`); nothing
sleeps. Feeds, the SMTP sink, the webhook receiver and the SQLite file are real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from conftest import ConfigWriter
from feedserver import FeedServer, Item
from servers import SmtpSink, WebhookReceiver

from watcher import schedule
from watcher.config import Config
from watcher.daemon import build_senders, digest_channels
from watcher.notify.outbox import Outbox
from watcher.pipeline import Pipeline
from watcher.reader.fetch import Fetcher
from watcher.store import SqliteStore

T0 = datetime(2025, 3, 10, 10, 1, tzinfo=UTC)  # a 15-minute period runs 10:00-10:15


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


def story(n: int, title: str, summary: str, at: datetime, site: str = "a") -> Item:
    return Item(title, f"https://{site}.example/{n}", f"{site}-{n}", summary, at)


BACKLOG = [story(0, "Central bank holds rates", "No change, as expected.", T0 - timedelta(days=1))]
KURSK = story(1, "Kursk region orders evacuation of 28 border villages",
              "Residents of 28 villages near the border are to leave by Friday, the governor "
              "said.", T0 + timedelta(minutes=1))
KURSK_B = story(1, "Russia's Kursk region announces evacuation of 28 border villages",
                "The governor said residents of 28 villages near the border must leave.",
                T0 + timedelta(minutes=5), site="b")
ATHENS = story(2, "Wildfire evacuation: thousands flee homes near Athens",
               "Greek firefighters battle flames fanned by strong winds.",
               T0 + timedelta(minutes=5))
VALENCIA = story(3, "Flood evacuation begins in Valencia after record rainfall",
                 "Spain's weather agency issued its highest alert.", T0 + timedelta(minutes=10),
                 site="b")
TOPIC_TITLES = [VALENCIA.title, ATHENS.title, KURSK.title]  # newest first


def digest_config(feeds: list[str], smtp: SmtpSink, webhook: WebhookReceiver,
                  digest: str = "15m", timezone: str = "UTC") -> str:
    feed_tables = "".join(f'[[feeds]]\nurl = "{u}"\nname = "Outlet {"AB"[i]}"\n\n'
                          for i, u in enumerate(feeds))
    return f"""
[watcher]
state = "state.db"
timezone = "{timezone}"

{feed_tables}
[[topics]]
name = "evacuations"
any = ["evacuation"]
channels = ["desk-email", "ops-hook"]

[[channels]]
name = "desk-email"
type = "email"
to = ["desk@example.org"]
from = "watcher@example.org"
host = "127.0.0.1"
port = {smtp.port}
digest = "{digest}"

[[channels]]
name = "ops-hook"
type = "webhook"
url = "{webhook.url}"
digest = "{digest}"
"""


@dataclass
class Node:
    """The daemon's stages over one SQLite file, as `watcher.daemon.Runtime` wires them."""

    config: Config
    clock: Clock
    store: SqliteStore
    fetcher: Fetcher
    pipeline: Pipeline
    outbox: Outbox

    @classmethod
    async def start(cls, config: Config, clock: Clock) -> Node:
        store = SqliteStore(config.state_location())
        await store.open()
        fetcher = Fetcher()
        outbox = Outbox(store, build_senders(config, fetcher.session),
                        digest_channels=digest_channels(config), clock=clock)
        pipeline = Pipeline(config, store, fetcher, clock=clock, on_alerts=outbox.wake)
        await pipeline.start()
        await store.sync_feeds([f.url for f in config.feeds], clock(), 0)
        return cls(config, clock, store, fetcher, pipeline, outbox)

    async def poll(self, at: datetime) -> int:
        """Poll every feed at `at`; returns the alerts owed by these polls."""
        self.clock.set(at)
        states = await self.store.feed_states([f.url for f in self.config.feeds])
        return sum([(await self.pipeline.poll(f, states[f.url])).alerts
                    for f in self.config.feeds])

    async def deliver(self, at: datetime) -> int:
        self.clock.set(at)
        return await self.outbox.deliver_due()

    async def stop(self) -> None:
        await self.fetcher.aclose()
        await self.store.close()


@pytest.fixture
async def node_factory() -> AsyncIterator[list[Node]]:
    nodes: list[Node] = []
    yield nodes
    for node in nodes:
        await node.stop()


async def three_stories_in_one_period(feed_server: FeedServer, node: Node) -> None:
    """Backlog at 10:01, then three stories (one of them carried by both outlets)."""
    assert await node.poll(T0) == 0  # first poll: the backlog is recorded, not alerted
    feed_server.set_feed("a.xml", [*BACKLOG, KURSK])
    assert await node.poll(T0 + timedelta(minutes=2)) == 2  # one alert per channel
    feed_server.set_feed("a.xml", [*BACKLOG, KURSK, ATHENS])
    feed_server.set_feed("b.xml", [*BACKLOG, KURSK_B])
    assert await node.poll(T0 + timedelta(minutes=6)) == 2  # KURSK_B joins KURSK's story
    feed_server.set_feed("b.xml", [*BACKLOG, KURSK_B, VALENCIA])
    assert await node.poll(T0 + timedelta(minutes=11)) == 2


async def start_node(feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
                     write_config: ConfigWriter, clock: Clock, nodes: list[Node],
                     **options: str) -> Node:
    feeds = [feed_server.set_feed("a.xml", BACKLOG), feed_server.set_feed("b.xml", BACKLOG)]
    config = write_config(digest_config(feeds, smtp, webhook, **options))
    node = await Node.start(config, clock)
    nodes.append(node)
    return node


async def test_three_stories_make_one_webhook_and_one_email_at_the_period_end(
        feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter, node_factory: list[Node]) -> None:
    node = await start_node(feed_server, smtp, webhook, write_config, Clock(T0), node_factory)
    await three_stories_in_one_period(feed_server, node)

    assert await node.deliver(datetime(2025, 3, 10, 10, 14, 59, tzinfo=UTC)) == 0
    assert webhook.requests == [] and smtp.messages == []
    assert await node.deliver(datetime(2025, 3, 10, 10, 15, tzinfo=UTC)) == 6

    [request] = webhook.requests
    payload = request.json
    assert payload["digest"] is True and payload["count"] == 3
    assert payload["topics"] == ["evacuations"]
    assert request.delivery_id == payload["digest_id"]
    assert [a["entry"]["title"] for a in payload["alerts"]] == TOPIC_TITLES
    kursk = payload["alerts"][2]
    assert [(o["feed"], o["title"]) for o in kursk["also_reported_by"]] == [
        ("Outlet B", KURSK_B.title)]

    [mail] = smtp.wait_for(1)
    assert mail.subject == "[watcher] evacuations: 3 new stories"
    text, html = mail.part("plain").replace("\r\n", "\n"), mail.part("html")
    positions = [text.index(t) for t in TOPIC_TITLES]
    assert positions == sorted(positions)  # newest first
    assert all(text.count(t) == 1 for t in TOPIC_TITLES)  # each story once
    # each outlet with the language the engine gave its entry
    assert f"Also reported by:\n     - Outlet B (en): {KURSK_B.title} <{KURSK_B.link}>" in text
    headings = [html.index(f'<h2 style="margin:0 0 4px"><a href="{s.link}">')
                for s in (VALENCIA, ATHENS, KURSK)]  # titles are marked up, links are not
    assert headings == sorted(headings) and html.count("<h2") == 3
    assert "Also reported by:" in html and "Russia&#x27;s Kursk region" in html

    assert await node.deliver(datetime(2025, 3, 10, 10, 16, tzinfo=UTC)) == 0
    assert len(webhook.requests) == 1 and len(smtp.messages) == 1


async def test_a_story_after_the_period_waits_for_the_next_one(
        feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter, node_factory: list[Node]) -> None:
    node = await start_node(feed_server, smtp, webhook, write_config, Clock(T0), node_factory)
    await three_stories_in_one_period(feed_server, node)
    late = story(4, "Hurricane Milton: Florida coast under evacuation warning",
                 "Forecasters expect landfall on Wednesday.", T0 + timedelta(minutes=15))
    feed_server.set_feed("a.xml", [*BACKLOG, KURSK, ATHENS, late])
    assert await node.poll(datetime(2025, 3, 10, 10, 15, 30, tzinfo=UTC)) == 2
    assert await node.deliver(datetime(2025, 3, 10, 10, 16, tzinfo=UTC)) == 6
    assert [r.json["count"] for r in webhook.requests] == [3]
    assert await node.deliver(datetime(2025, 3, 10, 10, 29, 59, tzinfo=UTC)) == 0
    assert await node.deliver(datetime(2025, 3, 10, 10, 30, tzinfo=UTC)) == 2
    assert webhook.requests[-1].json["entry"]["title"] == late.title  # one story: plain alert
    assert len(smtp.wait_for(2)) == 2


async def test_owed_digests_survive_a_restart_with_a_stable_delivery_id(
        feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter, node_factory: list[Node]) -> None:
    clock = Clock(T0)
    node = await start_node(feed_server, smtp, webhook, write_config, clock, node_factory)
    await three_stories_in_one_period(feed_server, node)
    webhook.script(503)
    smtp.stop()  # the mail server is down at the period end too
    assert await node.deliver(datetime(2025, 3, 10, 10, 15, tzinfo=UTC)) == 0
    first_id = webhook.requests[0].delivery_id
    await node.stop()
    node_factory.remove(node)
    smtp.start()

    # A new process: new store and outbox objects over the same SQLite file.
    again = await Node.start(node.config, Clock(T0))
    node_factory.append(again)
    counts = await again.store.channel_counts()
    assert counts["ops-hook"].owed == 3 and counts["desk-email"].owed == 3
    assert await again.deliver(datetime(2025, 3, 10, 10, 15, 1, tzinfo=UTC)) == 0  # backoff
    assert await again.deliver(datetime(2025, 3, 10, 11, 30, tzinfo=UTC)) == 6
    retried = webhook.requests[-1]
    assert retried.status == 200 and retried.json["count"] == 3
    assert retried.delivery_id == first_id  # receivers can drop a digest they already have
    [mail] = smtp.wait_for(1)
    assert mail.subject == "[watcher] evacuations: 3 new stories"


# ---------------------------------------------------------------- daily digests


KYIV = "Europe/Kyiv"  # EET (UTC+2); EEST (UTC+3) from 2025-03-30 03:00 to 2025-10-26 04:00


@pytest.mark.parametrize(("created", "due"), [
    # winter: 08:00 EET is 06:00 UTC
    (datetime(2025, 3, 28, 10, 0), datetime(2025, 3, 29, 6, 0)),
    # created on the eve of the spring change: due after it, at 08:00 EEST = 05:00 UTC
    (datetime(2025, 3, 29, 12, 0), datetime(2025, 3, 30, 5, 0)),
    # on the change day before 08:00 local (07:30 EEST): due the same morning
    (datetime(2025, 3, 30, 4, 30), datetime(2025, 3, 30, 5, 0)),
    # exactly at 08:00 local: that digest is being sent, the alert waits a day
    (datetime(2025, 3, 30, 5, 0), datetime(2025, 3, 31, 5, 0)),
    # summer, the eve of the autumn change: due at 08:00 EET = 06:00 UTC
    (datetime(2025, 10, 25, 12, 0), datetime(2025, 10, 26, 6, 0)),
    # in the repeated hour of the autumn change (03:30 local, twice)
    (datetime(2025, 10, 26, 0, 30), datetime(2025, 10, 26, 6, 0)),
    (datetime(2025, 10, 26, 1, 30), datetime(2025, 10, 26, 6, 0)),
])
def test_daily_digest_is_due_at_the_local_time_across_dst(created: datetime,
                                                          due: datetime) -> None:
    assert schedule.digest_due("08:00", created.replace(tzinfo=UTC), KYIV) == \
        due.replace(tzinfo=UTC)


def test_period_digests_end_on_the_period_boundary() -> None:
    period = timedelta(minutes=15)
    assert schedule.digest_due(period, T0) == datetime(2025, 3, 10, 10, 15, tzinfo=UTC)
    end = datetime(2025, 3, 10, 10, 15, tzinfo=UTC)
    assert schedule.digest_due(period, end) == end + period  # a boundary opens a new period
    assert schedule.digest_due(timedelta(0), T0) == T0  # no digest: due at once


async def test_daily_digest_end_to_end_across_the_spring_change(
        feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter, node_factory: list[Node]) -> None:
    saturday = datetime(2025, 3, 29, 12, 0, tzinfo=UTC)
    node = await start_node(feed_server, smtp, webhook, write_config, Clock(saturday),
                            node_factory, digest="08:00", timezone=KYIV)
    assert await node.poll(saturday) == 0
    feed_server.set_feed("a.xml", [*BACKLOG, KURSK, ATHENS])
    assert await node.poll(saturday + timedelta(hours=3)) == 4
    feed_server.set_feed("b.xml", [*BACKLOG, VALENCIA])
    assert await node.poll(datetime(2025, 3, 30, 1, 0, tzinfo=UTC)) == 2  # 04:00 EEST
    assert await node.deliver(datetime(2025, 3, 30, 4, 59, 59, tzinfo=UTC)) == 0
    assert await node.deliver(datetime(2025, 3, 30, 5, 0, tzinfo=UTC)) == 6  # 08:00 EEST
    [request] = webhook.requests
    assert request.json["count"] == 3
    assert [a["entry"]["title"] for a in request.json["alerts"]] == TOPIC_TITLES
    assert len(smtp.wait_for(1)) == 1
