"""The store contract, run against both backends: SQLite and a real PostgreSQL (issue 9)."""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import pgserver
import pytest
from msgspec.structs import replace

from watcher.http import feed_host
from watcher.model import (
    Entry,
    FeedState,
    Hit,
    Match,
    NewAlert,
    NewStory,
    PollRecord,
    StoryEvent,
    StoryMember,
    fingerprint_conflicts,
)
from watcher.reader.parse import canonical_link, parse_feed
from watcher.store import Store, StoreError, open_store
from watcher.store.base import DELIVERY_LEASE

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
StoreFactory = Callable[[], Awaitable[Store]]


def entry(key: str, title: str = "", link: str | None = None, feed: str = "http://a.test/f"
          ) -> Entry:
    link = link or f"https://news.test/{key}"
    return Entry(key=key, guid=key, title=title or f"Title {key}", link=link,
                 canonical_link=link, summary=f"summary {key}", published=T0,
                 feed_url=feed, feed_name="Feed A")


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> AsyncIterator[StoreFactory]:
    """Opens store objects on one fresh location (two objects = two nodes)."""
    if request.param == "postgres":
        if reason := pgserver.skip_reason():
            pytest.skip(reason)
        location = pgserver.shared_server().create_database()
    else:
        location = str(tmp_path / "state.db")
    opened: list[Store] = []

    async def make() -> Store:
        store = open_store(location)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


# --- feeds, claims and leases ---

async def test_feed_state_round_trip(stores: StoreFactory) -> None:
    store = await stores()
    state = FeedState(url="https://a.test/feed", current_url="https://b.test:8443/feed",
                      title="A", etag='"x"', last_modified="Sat, 01 Mar 2025 12:00:00 GMT",
                      body_hash="abc", primed=True, last_poll_at=T0, last_status=200,
                      last_error=None, error_count=0, last_success_at=T0,
                      next_poll_at=T0 + timedelta(minutes=10), entries_total=7, interval_s=300.0)
    await store.save_feed(state)
    got = await store.feed_states([state.url, "https://new.test/feed"])
    assert got[state.url] == state
    assert got["https://new.test/feed"] == FeedState(url="https://new.test/feed")
    assert list(await store.feed_states([state.url])) == [state.url]


async def test_claims_lease_due_feeds_once_across_two_nodes(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    urls = [f"http://h{i % 3}.test/f{i}" for i in range(9)]
    await a.sync_feeds(urls, T0, 0)
    first = await a.claim_due("node-a", T0, 8, 5)
    second = await b.claim_due("node-b", T0, 8, 50)
    assert len(first) == 5 and len(second) == 4
    assert {f.url for f in first} | {f.url for f in second} == set(urls)
    assert await b.claim_due("node-b", T0 + timedelta(seconds=5), 8, 50) == []
    # a finished poll releases the lease; the feed is due again at its next_poll_at
    polled = first[0]
    polled.next_poll_at = T0 + timedelta(seconds=6)
    polled.last_poll_at = T0
    await a.save_feed(polled)
    again = await b.claim_due("node-b", T0 + timedelta(seconds=7), 8, 50)
    assert [f.url for f in again] == [polled.url]
    # an expired lease (the poll never reported back) frees the rest
    late = await b.claim_due("node-b", T0 + timedelta(seconds=9), 8, 50)
    assert {f.url for f in late} == set(urls) - {polled.url}


async def test_concurrent_claims_never_overlap(stores: StoreFactory) -> None:
    nodes = [await stores() for _ in range(3)]
    urls = [f"http://h{i}.test/f" for i in range(60)]
    await nodes[0].sync_feeds(urls, T0, 0)
    results = await asyncio.gather(*(n.claim_due(f"n{i}", T0, 60, 7)
                                     for _ in range(4) for i, n in enumerate(nodes)))
    claimed = [f.url for batch in results for f in batch]
    assert len(claimed) == len(set(claimed)) == 60


async def test_sync_deactivates_removed_feeds_and_spreads_new_ones(stores: StoreFactory) -> None:
    store = await stores()
    await store.sync_feeds(["http://a.test/1", "http://a.test/2"], T0, 30)
    states = await store.feed_states(["http://a.test/1", "http://a.test/2"])
    due = [s.next_poll_at for s in states.values()]
    assert len(due) == 2 and all(t is not None and T0 <= t <= T0 + timedelta(seconds=30)
                                 for t in due), due
    await store.sync_feeds(["http://a.test/2"], T0, 0)
    claimed = await store.claim_due("n", T0 + timedelta(minutes=1), 60, 10)
    assert [f.url for f in claimed] == ["http://a.test/2"]


async def test_per_host_cap_holds_across_nodes(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    urls = [f"http://busy.test/f{i}" for i in range(6)] + ["http://calm.test/f", "file:///x.xml"]
    await a.sync_feeds(urls, T0, 0)
    first = await a.claim_due("a", T0, 60, 10, per_host=2)
    second = await b.claim_due("b", T0, 60, 10, per_host=2)
    busy = [f for f in first + second if feed_host(f.url) == "busy.test"]
    assert len(busy) == 2
    assert {f.url for f in first} >= {"http://calm.test/f", "file:///x.xml"}
    done = busy[0]
    done.next_poll_at = T0 + timedelta(hours=1)
    await a.save_feed(done)
    third = await b.claim_due("b", T0, 60, 10, per_host=2)
    assert len(third) == 1 and feed_host(third[0].url) == "busy.test"


async def test_blocked_host_is_skipped_by_every_node(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    await a.sync_feeds(["http://slow.test/1", "http://slow.test/2", "http://ok.test/1"], T0, 0)
    await a.block_host("slow.test", T0 + timedelta(minutes=5), "429 Retry-After: 300")
    assert await b.blocked_hosts(T0) == {"slow.test": T0 + timedelta(minutes=5)}
    [ok] = await b.claim_due("b", T0, 60, 10)
    assert ok.url == "http://ok.test/1"
    ok.next_poll_at = T0 + timedelta(hours=1)
    await b.save_feed(ok)
    later = await b.claim_due("b", T0 + timedelta(minutes=6), 60, 10)
    assert {f.url for f in later} == {"http://slow.test/1", "http://slow.test/2"}


async def test_a_dead_nodes_leases_end_with_its_heartbeat(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    await a.sync_feeds(["http://a.test/1"], T0, 0)
    await a.heartbeat("a", "cfg1", T0)
    assert len(await a.claim_due("a", T0, 300, 10)) == 1
    ttl = timedelta(seconds=a.node_ttl)  # type: ignore[attr-defined]
    assert await b.claim_due("b", T0 + ttl / 2, 300, 10) == []
    taken = await b.claim_due("b", T0 + ttl + timedelta(seconds=1), 300, 10)
    assert [f.url for f in taken] == ["http://a.test/1"]


async def test_a_stale_poll_does_not_release_the_new_owners_lease(stores: StoreFactory) -> None:
    a, b, c = await stores(), await stores(), await stores()
    await a.sync_feeds(["http://a.test/1"], T0, 0)
    [mine] = await a.claim_due("a", T0, 10, 10)
    [theirs] = await b.claim_due("b", T0 + timedelta(seconds=11), 60, 10)
    mine.next_poll_at, mine.last_poll_at = T0, T0 + timedelta(seconds=12)
    # a's late result must not free b's live lease
    await a.save_feed(mine)
    assert await c.claim_due("c", T0 + timedelta(seconds=12), 60, 10) == []
    await b.save_feed(theirs)
    assert len(await c.claim_due("c", T0 + timedelta(seconds=12), 60, 10)) == 1


# --- nodes ---

async def test_heartbeats_list_nodes_and_config_disagreement(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    await a.sync_feeds(["http://a.test/1", "http://a.test/2"], T0, 0)
    now = datetime.now(UTC)
    await a.heartbeat("a", "digest-1", now, inflight=2)
    await b.heartbeat("b", "digest-2", now)
    await a.claim_due("a", now, 300, 1)
    nodes = {n.node: n for n in await b.nodes()}
    assert nodes["a"].leased == 1 and nodes["b"].leased == 0
    assert nodes["a"].config_fingerprint == "digest-1" and nodes["a"].inflight == 2
    assert nodes["a"].heartbeat_at == now and nodes["a"].alive(now)
    assert [n.node for n in fingerprint_conflicts(list(nodes.values()), "digest-1", now)] == ["b"]
    await a.release("a", ["http://a.test/1", "http://a.test/2"])
    assert [n.leased for n in await b.nodes()] == [0, 0]
    await a.claim_due("a", now, 300, 1)
    await a.leave("a")
    assert [n.node for n in await b.nodes()] == ["b"]
    assert len(await b.claim_due("b", now, 300, 10)) == 2  # a's lease went with it


# --- seen entries, polls and stories ---

async def test_check_seen_by_guid_and_canonical_link(stores: StoreFactory) -> None:
    store = await stores()
    feed = FeedState(url="http://a.test/f", last_poll_at=T0)
    first = [entry("1"), entry("2")]
    await store.record_poll(PollRecord(feed=feed, seen=first))
    renamed = entry("1", title="Title 1, updated")
    same_link_elsewhere = entry("x", link="https://news.test/2", feed="http://b.test/f")
    check = await store.check_seen("http://a.test/f", [renamed, entry("2"), entry("3")])
    assert [e.key for e in check.new] == ["3"] and [e.key for e in check.updated] == ["1"]
    other = await store.check_seen("http://b.test/f", [same_link_elsewhere, entry("9")])
    assert [e.key for e in other.new] == ["9"]


async def test_a_feeds_huge_guid_or_link_is_stored_and_known_again(stores: StoreFactory
                                                                    ) -> None:
    """A 3,000-character guid or link (PostgreSQL's index rows hold ~2.7 KB) is known by its
    hash: the round is written, with the other entries' matches and alerts, and the entry
    is seen the next time."""
    rng = random.Random(3)
    huge = "".join(rng.choice(string.ascii_letters) for _ in range(3000))
    items = [(f"Kursk evacuation {n}", guid, link) for n, (guid, link) in enumerate([
        (huge, "https://news.test/1"),
        ("g2", f"https://news.test/{huge}"),
        ("g3", "https://news.test/3")])]
    body = "".join(f"<item><title>{t}</title><guid>{escape(g)}</guid><link>{escape(u)}"
                   "</link></item>" for t, g, u in items)
    doc = f"<rss version='2.0'><channel><title>x</title>{body}</channel></rss>".encode()
    entries = parse_feed(doc, "http://a.test/f").entries
    assert all(len(e.key.encode()) <= 1024 and len((e.canonical_link or "").encode()) <= 1024
               for e in entries)
    assert len(canonical_link(f"https://news.test:99999/{huge}") or "") <= 1024  # no port
    store = await stores()
    await store.story_events(T0 - timedelta(days=1))
    await store.record_poll(_poll("http://a.test/f", *entries), _decider("topic", []))
    assert (await store.channel_counts())["hook"].owed == 3
    again = await store.check_seen("http://a.test/f", parse_feed(doc, "http://a.test/f").entries)
    assert not again.new and not again.updated


def _decider(topic: str, seen_by: list[list[str]]) -> Callable[[PollRecord, list[StoryEvent]],
                                                              None]:
    """Opens one story per match unless a known story has the same title (a toy pipeline:
    its placements carry the title where the story engine's carry evidence)."""
    known: dict[str, str] = {}

    def decide(record: PollRecord, fresh: list[StoryEvent]) -> None:
        seen_by.append([ev.story_id for ev in fresh])
        known.update({ev.evidence: ev.story_id for ev in fresh})
        for match, _ in record.matches:
            e = match.entry
            if e.title in known:
                record.members.append(StoryMember(known[e.title], e, T0))
                record.events.append(StoryEvent(known[e.title], topic, e.id, e.feed_url,
                                                e.title, T0))
                continue
            story = NewStory(f"story-{e.key}", topic, e.title, e.summary, T0)
            known[e.title] = story.id
            record.stories.append(story)
            record.members.append(StoryMember(story.id, e, T0))
            record.events.append(StoryEvent(story.id, topic, e.id, e.feed_url, e.title, T0))
            record.alerts.append(NewAlert(f"alert-{e.key}", topic, "hook", story.id, e, 90.0,
                                          (Hit("p", "title", "t", 0, 1, 90.0),), T0))
    return decide


def _poll(feed_url: str, *entries: Entry) -> PollRecord:
    record = PollRecord(feed=FeedState(url=feed_url, last_poll_at=T0), seen=list(entries))
    record.matches = [(Match("topic", e, 90.0, ()), False) for e in entries]
    return record


async def test_record_poll_decides_with_stories_from_other_nodes(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    await a.story_events(T0 - timedelta(days=1))
    await b.story_events(T0 - timedelta(days=1))
    fresh_a: list[list[str]] = []
    fresh_b: list[list[str]] = []
    await a.record_poll(_poll("http://a.test/f", entry("1", "Kursk evacuation")),
                        _decider("topic", fresh_a))
    # b sees a's story as fresh inside its transaction: same story, no second alert
    await b.record_poll(_poll("http://b.test/f", entry("2", "Kursk evacuation",
                                                       feed="http://b.test/f")),
                        _decider("topic", fresh_b))
    assert fresh_b == [["story-1"]]
    counts = await b.channel_counts()
    assert counts["hook"].owed == 1
    [owed] = await a.due_alerts(T0, 10)
    assert owed.id == "alert-1" and [o.feed for o in owed.message.also_reported_by] == ["Feed A"]
    # a restart rebuilds the index from every placement, in commit order
    assert [(ev.story_id, ev.feed_url) for ev in await b.story_events(T0 - timedelta(hours=1))] \
        == [("story-1", "http://a.test/f"), ("story-1", "http://b.test/f")]
    assert await b.story_events(T0 + timedelta(hours=1)) == []


async def test_a_story_merged_into_another_gives_up_its_alerts_not_yet_sent(
        stores: StoreFactory) -> None:
    """An entry that reports two open stories merges them (the story engine's bridge): the
    merged-away story's alert, still held for its group_wait, is dropped in that poll's
    transaction, so the one story alerts once; an alert already delivered stays history."""
    store = await stores()
    await store.story_events(T0 - timedelta(days=1))
    for key, feed in (("1", "http://a.test/f"), ("2", "http://b.test/f"),
                      ("3", "http://c.test/f")):
        await store.record_poll(_poll(feed, entry(key, f"Story {key}", feed=feed)),
                                _decider("topic", []))
    await store.mark_delivered(["alert-3"], T0)

    def bridge(record: PollRecord, fresh: list[StoryEvent]) -> None:
        [(match, _)] = record.matches
        record.members.append(StoryMember("story-1", match.entry, T0))
        record.events.append(StoryEvent("story-1", "topic", match.entry.id,
                                        match.entry.feed_url, "bridge", T0))
        record.folded += [("topic", "story-2", "story-1"), ("topic", "story-3", "story-1")]

    await store.record_poll(_poll("http://d.test/f", entry("4", "Both", feed="http://d.test/f")),
                            bridge)
    assert [a.id for a in await store.due_alerts(T0 + timedelta(hours=1), 10)] == ["alert-1"]
    assert sorted((a.id, a.state) for a in await store.alert_history()) == [
        ("alert-1", "owed"), ("alert-3", "delivered")]
    [story] = await store.recent_stories(T0 - timedelta(days=1))  # listed once, with all
    assert story.title == "Story 1" and len(story.outlets) == 1  # (all four feeds: "Feed A")


async def test_a_failed_polls_placements_are_undone_before_another_poll_decides(
        stores: StoreFactory) -> None:
    """The story decider keeps its stories in memory: when a poll's transaction fails after
    it decided, the undo runs under the story lock, before a poll waiting for that lock
    decides against stories that were never committed."""
    store = await stores()
    await store.story_events(T0 - timedelta(days=1))
    order: list[str] = []

    def failing(record: PollRecord, fresh: list[StoryEvent]) -> None:
        order.append("decide 1")
        raise RuntimeError("the transaction fails")

    def second(record: PollRecord, fresh: list[StoryEvent]) -> None:
        order.append("decide 2")

    results = await asyncio.gather(
        store.record_poll(_poll("http://a.test/f", entry("1", "One")), failing,
                          lambda record: order.append("undo 1")),
        store.record_poll(_poll("http://b.test/f", entry("2", "Two", feed="http://b.test/f")),
                          second, lambda record: order.append("undo 2")),
        return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] is None
    assert order == ["decide 1", "undo 1", "decide 2"]


async def test_recent_stories_list_every_outlet_once(stores: StoreFactory) -> None:
    store = await stores()
    await store.story_events(T0 - timedelta(days=1))
    wire = entry("1", "Kursk evacuation")
    again = replace(entry("2", "Kursk evacuation", feed="http://b.test/f"), feed_name="Feed B")
    await store.record_poll(_poll("http://a.test/f", wire), _decider("topic", []))
    await store.record_poll(_poll("http://b.test/f", again), _decider("topic", []))
    other = entry("3", "Red Cross returns civilians")
    await store.record_poll(_poll("http://a.test/f", other), _decider("topic", []))
    stories = await store.recent_stories(T0 - timedelta(hours=1), 10)
    assert sorted((s.title, s.outlets) for s in stories) == [
        ("Kursk evacuation", ["Feed A", "Feed B"]), ("Red Cross returns civilians", ["Feed A"])]
    assert await store.recent_stories(T0 + timedelta(hours=1), 10) == []


async def test_two_nodes_seeing_one_story_at_once_alert_once(stores: StoreFactory) -> None:
    nodes = [await stores() for _ in range(4)]
    for n in nodes:
        await n.story_events(T0 - timedelta(days=1))
    polls = [n.record_poll(_poll(f"http://n{i}.test/f",
                                 entry(f"k{i}", "Same story", feed=f"http://n{i}.test/f")),
                           _decider("topic", []))
             for i, n in enumerate(nodes)]
    await asyncio.gather(*polls)
    assert (await nodes[0].channel_counts())["hook"].owed == 1


async def test_the_same_alert_twice_is_created_once(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    for store in (a, b):  # a double poll of one feed: same story id, same alert id
        await store.record_poll(_poll("http://a.test/f", entry("1", "Kursk")),
                                _decider("topic", []))
    assert (await a.channel_counts())["hook"].owed == 1


# --- the outbox ---

async def _owe(store: Store, *keys: str) -> None:
    await store.record_poll(_poll("http://a.test/f", *(entry(k, f"T {k}") for k in keys)),
                            _decider("topic", []))


async def test_outbox_claims_with_a_lease_and_marks(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    await _owe(a, "1", "2", "3")
    assert await a.next_due_at(T0) == T0
    claimed = await a.due_alerts(T0, 2)
    assert [x.id for x in claimed] == ["alert-1", "alert-2"]
    assert [x.id for x in await b.due_alerts(T0, 10)] == ["alert-3"]
    # every owed alert is being sent under a lease: none can be claimed before it ends
    assert await b.next_due_at(T0) == T0 + timedelta(seconds=DELIVERY_LEASE)
    assert await b.due_alerts(T0 + timedelta(seconds=60), 10) == []
    await a.mark_delivered(["alert-1"], T0)
    await a.mark_retry(["alert-2"], "HTTP 503", T0 + timedelta(minutes=1))
    await b.mark_failed(["alert-3"], "HTTP 404")
    await b.mark_failed(["alert-1"], "late failure of a delivered alert")  # ignored
    counts = (await a.channel_counts())["hook"]
    assert (counts.owed, counts.failed, counts.delivered) == (1, 1, 1)
    [failed] = await a.failed_alerts(10)
    assert failed.id == "alert-3" and failed.error == "HTTP 404"
    retry = await b.due_alerts(T0 + timedelta(minutes=1), 10)
    assert [(x.id, x.attempts) for x in retry] == [("alert-2", 1)]
    await b.mark_delivered(["alert-2"], T0 + timedelta(minutes=1))
    assert await a.requeue_failed("hook", T0) == 1
    assert await a.requeue_failed(None, T0) == 0
    assert [x.id for x in await a.due_alerts(T0 + timedelta(minutes=5), 10)] == ["alert-3"]
    assert await a.alerts_since(T0 - timedelta(hours=1)) == {"topic": 3}
    assert (await a.channel_counts())["hook"].delivered == 2


async def test_a_dead_nodes_alerts_are_delivered_by_another(stores: StoreFactory) -> None:
    a, b = await stores(), await stores()
    await _owe(a, "1")
    await a.heartbeat("a", "", T0)
    assert len(await a.due_alerts(T0, 10)) == 1
    assert await b.due_alerts(T0 + timedelta(seconds=5), 10) == []
    later = T0 + timedelta(seconds=a.node_ttl + 1)  # type: ignore[attr-defined]
    assert [x.id for x in await b.due_alerts(later, 10)] == ["alert-1"]


# --- housekeeping and schema ---

async def test_prune_keeps_what_matters(stores: StoreFactory) -> None:
    store = await stores()
    await _owe(store, "1", "2")
    await store.mark_delivered(["alert-1"], T0)
    await store.record_poll(PollRecord(FeedState(url="http://a.test/f", last_poll_at=T0),
                                       seen=[entry(str(i)) for i in range(10, 20)]))
    counts = await store.prune(T0 + timedelta(days=40), keep_seen_per_feed=5)
    assert (counts.alerts, counts.stories) == (1, 1)  # alert-2 is owed: it and its story stay
    assert counts.seen == 12 - 5
    assert (await store.channel_counts())["hook"].owed == 1


async def test_new_entries_text_is_kept_for_keep_entries_with_its_vector(
        stores: StoreFactory) -> None:
    import numpy as np

    from watcher.matching.dedupe import evidence_batch, with_vector

    store = await stores()
    kept = [entry(str(i), f"Entry {i}") for i in range(3)]
    [raw] = evidence_batch([(kept[0].title, kept[0].summary, T0.isoformat(), "en")])
    vector = np.linspace(-1, 1, 384, dtype=np.float32)
    record = PollRecord(FeedState(url="http://a.test/f", last_poll_at=T0), seen=kept)
    record.evidence[kept[0].id] = with_vector(raw, vector)  # the matched one was embedded
    await store.record_poll(record)
    later = PollRecord(FeedState(url="http://a.test/f", last_poll_at=T0 + timedelta(days=3)),
                       seen=[entry("9", "Entry 9")])  # a first poll's backlog: text only
    await store.record_poll(later)
    recent = await store.recent_entries(T0 - timedelta(hours=1), 10)
    assert [(e.entry.title, e.seen_at) for e in recent] == [
        ("Entry 9", T0 + timedelta(days=3)), ("Entry 0", T0), ("Entry 1", T0), ("Entry 2", T0)]
    assert np.allclose(recent[1].vector, vector, atol=1e-3)  # float16 in the store
    assert [e.vector is None for e in recent] == [True, False, True, True]
    assert [e.entry.title for e in await store.recent_entries(T0 - timedelta(hours=1), 2)] == \
        ["Entry 9", "Entry 0"]
    assert len(await store.recent_evidence(T0 - timedelta(hours=1), 10)) == 1
    counts = await store.prune(T0 + timedelta(days=15), keep_entries=timedelta(days=14))
    assert counts.entries == 3
    assert [e.entry.title for e in await store.recent_entries(T0, 10)] == ["Entry 9"]


async def test_reopening_is_idempotent(stores: StoreFactory) -> None:
    store = await stores()
    await store.save_feed(FeedState(url="http://a.test/f", title="kept"))
    again = await stores()  # migrations run again: nothing to do, nothing lost
    assert (await again.feed_states(["http://a.test/f"]))["http://a.test/f"].title == "kept"


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "state.db"
    store = open_store(str(path))
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="newer watcher"):
        await open_store(str(path)).open()


async def test_sqlite_upgrades_a_version_1_file(tmp_path: Path) -> None:
    import sqlite3

    from watcher.store.sqlite_schema import MIGRATIONS

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(str(MIGRATIONS[0]))
        db.execute("INSERT INTO feeds (url, current_url, next_poll_at) VALUES "
                   "('http://old.test/f', 'https://New.test/f', 0)")
        db.execute("PRAGMA user_version=1")
    store = open_store(str(path))
    await store.open()
    try:
        [feed] = await store.claim_due("n", T0, 60, 10, per_host=1)
        assert feed.current_url == "https://New.test/f"
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT host FROM feeds").fetchone()[0] == "new.test"
    finally:
        await store.close()


def test_feed_host() -> None:
    assert feed_host("https://Example.COM/rss") == "example.com"
    assert feed_host("http://127.0.0.1:8080/a.xml") == "127.0.0.1:8080"
    assert feed_host("file:///tmp/a.xml") == ""


# --- PostgreSQL only: connecting, passwords, versions, reconnecting ---

@pytest.fixture
def pg() -> pgserver.PgServer:
    if reason := pgserver.skip_reason():
        pytest.skip(reason)
    return pgserver.shared_server()


async def test_password_comes_from_the_named_env_var_and_is_never_shown(
        pg: pgserver.PgServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    url = pg.create_database().replace(f"{pgserver.SUPERUSER}@", f"{pgserver.SECRET_USER}@")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    with pytest.raises(StoreError, match="password") as missing:
        await open_store(url).open()
    assert f"{pgserver.SECRET_USER}@127.0.0.1:{pg.port}" in str(missing.value)
    with pytest.raises(StoreError, match=r"WATCHER_DB_PW.*not set"):
        await open_store(url, password_env="WATCHER_DB_PW").open()
    monkeypatch.setenv("WATCHER_DB_PW", pgserver.SECRET_PASSWORD)
    caplog.set_level("DEBUG")
    store = open_store(url, password_env="WATCHER_DB_PW")
    await store.open()
    try:
        await store.sync_feeds(["http://a.test/1"], T0, 0)
        assert len(await store.claim_due("n", T0, 60, 5)) == 1
    finally:
        await store.close()
    assert pgserver.SECRET_PASSWORD not in caplog.text + repr(store)
    assert any("state store opened" in r.getMessage() for r in caplog.records)


async def test_a_password_in_the_url_is_refused(pg: pgserver.PgServer) -> None:
    url = pg.url("postgres", f"{pgserver.SECRET_USER}:{pgserver.SECRET_PASSWORD}")
    with pytest.raises(StoreError, match="must not contain a password") as refused:
        await open_store(url).open()
    assert pgserver.SECRET_PASSWORD not in str(refused.value)


async def test_an_unreachable_server_is_a_clear_error() -> None:
    port = pgserver._free_port()
    with pytest.raises(StoreError) as unreachable:
        await open_store(f"postgresql://watcher@127.0.0.1:{port}/watcher").open()
    message = str(unreachable.value)
    assert f"127.0.0.1:{port}/watcher" in message and "refused" in message.lower()


def test_an_old_server_is_refused() -> None:
    from watcher.store.pg_schema import check_server_version, describe

    target = describe("postgresql://w@db.example:5433/watch")
    check_server_version(130000, target)
    with pytest.raises(StoreError, match=r"PostgreSQL 12\.9; watcher needs PostgreSQL 13\.0"):
        check_server_version(120009, target)
    with pytest.raises(StoreError, match=r"db\.example:5433/watch"):
        check_server_version(90624, target)


async def test_postgres_refuses_a_newer_schema(pg: pgserver.PgServer) -> None:
    url = pg.create_database()
    store = open_store(url)
    await store.open()
    await store.close()
    pg.execute("UPDATE watcher_schema SET version = 99", url.rsplit("/", 1)[1])
    with pytest.raises(StoreError, match="newer watcher"):
        await open_store(url).open()


async def test_the_store_reconnects_after_the_server_comes_back() -> None:
    if reason := pgserver.skip_reason():
        pytest.skip(reason)
    with pgserver.PgServer() as server:
        store = open_store(server.create_database())
        await store.open()
        try:
            await store.sync_feeds(["http://a.test/1"], T0, 0)
            server.halt()
            with pytest.raises(StoreError, match=r"127\.0\.0\.1"):
                await store.claim_due("n", T0, 60, 5)
            server.launch()
            for _ in range(50):  # the caller (the daemon's tick) retries with backoff
                try:
                    claimed = await store.claim_due("n", T0, 60, 5)
                    break
                except StoreError:
                    await asyncio.sleep(0.2)
            assert [f.url for f in claimed] == ["http://a.test/1"]
        finally:
            await store.close()


async def test_sqlite_state_files_are_private(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "state.db"))
    await store.open()
    try:
        await store.sync_feeds(["https://a.test/f"], T0, 0)
        for path in tmp_path.glob("state.db*"):  # the file, its -wal and -shm
            assert path.stat().st_mode & 0o777 == 0o600, path
    finally:
        await store.close()


# --- what the notify and CLI engineers build on (issue 14.2, 14.8, `watcher alerts`) ---

async def test_note_sent_is_remembered_with_the_owed_alert(stores: StoreFactory) -> None:
    a = await stores()
    await _owe(a, "1", "2")
    await a.note_sent("alert-1", ["tgram://x", "ntfy://y"])
    await a.note_sent("alert-1", ["ntfy://y", "mailto://z"])  # a set: no duplicates
    b = await stores()  # another process (a restart) loads them with the alert
    owed = {x.id: x.sent_to for x in await b.due_alerts(T0, 10)}
    assert owed == {"alert-1": ("mailto://z", "ntfy://y", "tgram://x"), "alert-2": ()}


async def test_alert_history_newest_first_with_states(stores: StoreFactory) -> None:
    store = await stores()
    await _owe(store, "1", "2", "3", "4")
    later = PollRecord(feed=FeedState(url="http://a.test/f",
                                      last_poll_at=T0 + timedelta(hours=2)),
                       seen=[entry("5", "T 5")])
    later.matches = [(Match("other", later.seen[0], 90.0, ()), False)]
    await store.record_poll(later, _decider("other", []))
    await store.mark_delivered(["alert-1"], T0 + timedelta(minutes=1))
    await store.mark_retry(["alert-2"], "POST https://user:hunter2@hook.test/x: 503",
                           T0 + timedelta(minutes=5))
    await store.mark_failed(["alert-3"], "HTTP 404")
    history = await store.alert_history()
    assert history[0].id == "alert-5" and history[0].topic == "other"
    by_id = {r.id: r for r in history}
    assert {k: r.state for k, r in by_id.items()} == {
        "alert-1": "delivered", "alert-2": "retrying", "alert-3": "failed",
        "alert-4": "owed", "alert-5": "owed"}
    one = by_id["alert-1"]
    assert (one.title, one.link, one.feed, one.channel, one.story, one.attempts) == (
        "T 1", "https://news.test/1", "Feed A", "hook", "story-1", 1)
    assert one.created_at == T0 and one.delivered_at == T0 + timedelta(minutes=1)
    assert by_id["alert-4"].delivered_at is None
    assert "hunter2" not in (by_id["alert-2"].last_error or "")
    assert "hook.test" in (by_id["alert-2"].last_error or "")
    assert [r.id for r in await store.alert_history(topic="other")] == ["alert-5"]
    assert {r.id for r in await store.alert_history(since=T0 + timedelta(hours=1))} == {
        "alert-5"}
    assert {r.id for r in await store.alert_history(status="owed")} == {
        "alert-2", "alert-4", "alert-5"}
    assert [r.id for r in await store.alert_history(status="retrying")] == ["alert-2"]
    assert [r.id for r in await store.alert_history(status="failed")] == ["alert-3"]
    assert len(await store.alert_history(limit=2)) == 2
    with pytest.raises(ValueError, match="unknown alert status"):
        await store.alert_history(status="lost")


async def test_a_read_only_open_never_creates_a_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "watcher.db"
    with pytest.raises(StoreError, match=r"no state file at .*watcher\.db: watcher has not "
                                         r"run with this config yet"):
        await open_store(str(path), create=False).open()
    assert not path.exists() and not path.parent.exists()
    store = open_store(str(path))
    await store.open()
    await store.close()
    again = open_store(str(path), create=False)
    await again.open()  # an existing file opens as before
    await again.close()


async def test_one_article_in_two_feeds_polled_at_once_alerts_once(stores: StoreFactory) -> None:
    """Issue 14.1: the canonical link is checked again inside the poll's transaction."""
    nodes = [await stores() for _ in range(3)]
    link = "https://news.test/kursk"  # as parse gives it, utm_* parameters already gone
    polls = [_poll(f"http://f{i}.test/rss", entry(f"k{i}", f"Kursk evacuation, take {i}",
                                                  link=link, feed=f"http://f{i}.test/rss"))
             for i in range(3)]
    for node, poll in zip(nodes, polls, strict=True):  # each poll saw the article as new
        check = await node.check_seen(poll.feed.url, poll.seen)
        assert [e.key for e in check.new] == [poll.seen[0].key]
        await node.story_events(T0 - timedelta(days=1))
    await asyncio.gather(*(node.record_poll(poll, _decider("topic", []))
                           for node, poll in zip(nodes, polls, strict=True)))
    assert (await nodes[0].channel_counts())["hook"].owed == 1
    # every feed's copy is remembered as seen: none alerts on a later poll either
    for i, node in enumerate(nodes):
        again = entry(f"k{i}", "Kursk evacuation", link=link, feed=f"http://f{i}.test/rss")
        check = await node.check_seen(f"http://f{i}.test/rss", [again])
        assert check.new == []


async def test_a_node_of_this_host_whose_process_is_gone_is_dead_at_once(
        stores: StoreFactory) -> None:
    """Issue 14.4: `watcher once` right after a crash must not wait out the node TTL."""
    import os
    import socket
    import subprocess

    store = await stores()
    exited = subprocess.Popen(["true"])
    exited.wait()
    host = socket.gethostname()
    now = datetime.now(UTC)
    await store.heartbeat(f"{host}:{exited.pid}", "d", now)
    await store.heartbeat(f"{host}:{os.getpid()}", "d", now)
    await store.heartbeat(f"elsewhere.test:{exited.pid}", "d", now)  # cannot be checked
    nodes = {n.node: n for n in await store.nodes()}
    assert nodes[f"{host}:{exited.pid}"].pid == exited.pid
    assert nodes[f"{host}:{exited.pid}"].hostname == host
    assert {name: n.alive(now) for name, n in nodes.items()} == {
        f"{host}:{exited.pid}": False, f"{host}:{os.getpid()}": True,
        f"elsewhere.test:{exited.pid}": True}


async def test_a_password_parameter_in_the_url_is_refused_unseen(pg: pgserver.PgServer) -> None:
    """Issue 13.4: `?password=` was printed back in the refusal."""
    url = pg.url("postgres", pgserver.SECRET_USER) + f"?password={pgserver.SECRET_PASSWORD}"
    with pytest.raises(StoreError, match="must not contain a password") as refused:
        await open_store(url).open()
    assert pgserver.SECRET_PASSWORD not in str(refused.value)
    assert f"127.0.0.1:{pg.port}" in str(refused.value)
