"""`watcher migrate-state`: a single-machine install moves to PostgreSQL without re-alerting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pgserver
import pytest
from conftest import ConfigWriter
from feedserver import FeedServer
from servers import SmtpSink, WebhookReceiver
from test_pipeline_e2e import BACKLOG, EVACUATION, UNRELATED, config_text
from test_store import _decider, _poll, entry

from watcher.daemon import run_once
from watcher.model import FeedState, PollRecord
from watcher.store import StoreError, open_store
from watcher.store.migrate import migrate_state

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def pg_url() -> str:
    if reason := pgserver.skip_reason():
        pytest.skip(reason)
    return pgserver.shared_server().create_database()


# every new entry's text is kept (the desk reads it), newest first, then by feed and key
RECENT = [("http://a.test/f", k, t) for k, t in (("1", "One"), ("2", "Two"), ("3", "One"))] + \
    [("http://b.test/f", f"b{i}", f"Title b{i}") for i in range(5)]


async def _sqlite_state(path: Path) -> None:
    store = open_store(str(path))
    await store.open()
    try:
        await store.sync_feeds(["http://a.test/f", "http://b.test/f"], T0, 0)
        await store.record_poll(PollRecord(FeedState(url="http://b.test/f", last_poll_at=T0),
                                           seen=[entry(f"b{i}", feed="http://b.test/f")
                                                 for i in range(5)]))
        await store.record_poll(_poll("http://a.test/f", entry("1", "One"), entry("2", "Two"),
                                      entry("3", "One")), _decider("topic", []))
        await store.mark_delivered(["alert-1"], T0)
        await store.note_sent("alert-2", ["tgram://done"])
        await store.save_feed(FeedState(url="http://b.test/f", etag='"e"', primed=True,
                                        last_poll_at=T0, next_poll_at=T0 + timedelta(minutes=5),
                                        error_count=2, last_error="HTTP 503"))
    finally:
        await store.close()


async def test_copies_feeds_seen_stories_and_the_outbox(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "state.db"
    await _sqlite_state(path)
    counts = await migrate_state(path, pg_url)
    assert counts == {"feeds": 2, "seen": 8, "stories": 2, "story_members": 3,
                      "story_log": 3, "entries": 8, "alerts": 2}

    store = open_store(pg_url)
    await store.open()
    try:
        [b] = (await store.feed_states(["http://b.test/f"])).values()
        assert (b.etag, b.primed, b.error_count, b.next_poll_at) == \
            ('"e"', True, 2, T0 + timedelta(minutes=5))
        check = await store.check_seen("http://b.test/f", [entry("b1", feed="http://b.test/f"),
                                                           entry("new", feed="http://b.test/f")])
        assert [e.key for e in check.new] == ["new"]
        hook = (await store.channel_counts())["hook"]
        assert (hook.owed, hook.delivered) == (1, 1)
        [owed] = await store.due_alerts(T0, 10)
        assert owed.id == "alert-2" and owed.message.entry.title == "Two"
        assert owed.sent_to == ("tgram://done",)  # Apprise targets done stay done
        # the story engine's placements are copied in order: the index rebuilds from them
        assert [ev.story_id for ev in await store.story_events(T0 - timedelta(days=1))] == \
            ["story-1", "story-2", "story-1"]
        recent = await store.recent_entries(T0 - timedelta(days=1), 10)
        assert [(e.entry.feed_url, e.entry.key, e.entry.title) for e in recent] == RECENT
        # the copied stories are seen by the story lock's cursor like any other
        await store.record_poll(_poll("http://a.test/f", entry("9", "One")), _decider("topic", []))
        assert (await store.channel_counts())["hook"].owed == 2  # toy decider: new key, new story
    finally:
        await store.close()


async def test_refuses_a_used_destination_unless_forced(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "state.db"
    await _sqlite_state(path)
    await migrate_state(path, pg_url)
    with pytest.raises(StoreError, match="already holds watcher state"):
        await migrate_state(path, pg_url)
    again = await migrate_state(path, pg_url, force=True)
    assert again == dict.fromkeys(again, 0)  # idempotent: nothing new to copy


async def test_a_missing_state_file_is_an_error(tmp_path: Path, pg_url: str) -> None:
    with pytest.raises(StoreError, match="no such state file"):
        await migrate_state(tmp_path / "nope.db", pg_url)


async def test_an_install_moves_without_re_alerting(
        tmp_path: Path, pg_url: str, feed_server: FeedServer, smtp: SmtpSink,
        webhook: WebhookReceiver, write_config: ConfigWriter) -> None:
    url = feed_server.set_feed("world.xml", [*BACKLOG, EVACUATION])
    single = write_config(config_text([url], smtp, webhook, first_poll="alert"))
    await run_once(single)
    assert len(webhook.requests) == 1  # the evacuation story, alerted on the single machine
    await migrate_state(single.state_location(), pg_url)

    shared = write_config(config_text([url], smtp, webhook).replace(
        'state = "state.db"', f'state = "{pg_url}"'), name="nodes.toml")
    feed_server.set_feed("world.xml", [*BACKLOG, EVACUATION, UNRELATED])
    assert await run_once(shared) == 0
    assert len(webhook.requests) == 1 and len(smtp.messages) == 1  # nothing alerted again
