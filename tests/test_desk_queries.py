"""The desk's queries on both backends (SQLite and a real PostgreSQL), and that a page of
stories costs the same few statements however many stories, outlets and alerts it lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pgserver
import pytest
from test_desk import FEED_A, FEED_B, entry, record_story

from watcher.desk.queries import DeskQueries
from watcher.model import FeedState, NewAlert, PollRecord, StoryMember
from watcher.store import Store, open_store

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        if reason := pgserver.skip_reason():
            pytest.skip(reason)
        location = pgserver.shared_server().create_database()
    else:
        location = str(tmp_path / "state.db")
    opened = open_store(location)
    await opened.open()
    yield opened
    await opened.close()


def count_statements(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements the store runs from now on (its real `fetch`, recorded)."""
    sent: list[str] = []
    real = store.fetch  # type: ignore[attr-defined]

    async def fetch(sql: str, params: Any = None) -> Any:
        sent.append(sql)
        return await real(sql, params)

    monkeypatch.setattr(store, "fetch", fetch)
    return sent


async def test_stories_newest_first_with_outlets_languages_and_alerts(store: Store) -> None:
    a = entry("a1", "Kursk evacuation ordered", FEED_A, language="en")
    b = entry("b1", "Евакуація з Курщини", FEED_B, language="uk")
    ids = await record_story(store, "s1", "kursk", [a, b], at=T0)
    await record_story(store, "s2", "kursk", [entry("a2", "Later story")],
                       at=T0 + timedelta(hours=1), channels=("hook",))
    await record_story(store, "s3", "other", [entry("a3", "Other topic")], at=T0)
    await store.mark_failed([ids[0]], "HTTP 410 from http://u:secret@x.test/")
    q = DeskQueries(store)

    got = await q.stories(topic="kursk")
    assert [s.id for s in got] == ["s2", "s1"]
    s1 = got[1]
    assert [(o.feed, o.language, o.title) for o in s1.outlets] == [
        ("Outlet A", "en", "Kursk evacuation ordered"), ("Outlet B", "uk", "Евакуація з Курщини")]
    assert s1.outlets[0].seen_at == T0 and s1.first_seen == T0
    assert {(al.channel, al.state) for al in s1.alerts} == {("hook", "failed"), ("log", "owed")}
    assert "secret" not in str(s1.alerts)
    assert s1.score is None  # lists do not read payloads

    assert [s.id for s in await q.stories(since=T0 + timedelta(minutes=30))] == ["s2"]
    assert [s.id for s in await q.stories(limit=1)] == ["s2"]
    everything = await q.stories()
    assert {s.id for s in everything} == {"s1", "s2", "s3"}


async def test_latest_stories_per_topic_in_one_statement(store: Store,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        await record_story(store, f"k{i}", "kursk", [entry(f"k{i}", f"K {i}")],
                           at=T0 + timedelta(minutes=i), channels=())
        await record_story(store, f"o{i}", "other", [entry(f"o{i}", f"O {i}")],
                           at=T0 + timedelta(minutes=i), channels=())
    sent = count_statements(store, monkeypatch)
    got = await DeskQueries(store).latest_stories(["kursk", "other", "none"], 2)
    assert [s.id for s in got] == ["k4", "k3", "o4", "o3"]
    assert len(sent) == 4  # stories, their outlets, stories merged into them, their alerts


async def test_a_page_of_stories_costs_four_statements(store: Store,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(30):
        members = [entry(f"a{i}", f"Story {i}", FEED_A), entry(f"b{i}", f"Story {i}", FEED_B)]
        await record_story(store, f"s{i:02d}", "kursk", members, at=T0 + timedelta(minutes=i))
    sent = count_statements(store, monkeypatch)
    got = await DeskQueries(store).stories(topic="kursk", limit=25)
    assert len(got) == 25 and all(len(s.outlets) == 2 and len(s.alerts) == 2 for s in got)
    assert len(sent) == 4


async def test_a_merged_story_is_listed_once_with_both_outlets_and_alerts(
        store: Store) -> None:
    """An entry reported two open stories and the engine merged them: the desk lists the
    story they became, with every outlet and the alert each had sent, and a link to the
    merged-away story (an old alert's) shows that one story."""
    await record_story(store, "kept", "kursk", [entry("a1", "Kursk evacuation", FEED_A)],
                       at=T0, channels=("hook",))
    await record_story(store, "gone", "kursk", [entry("b1", "Families leave Kursk", FEED_B)],
                       at=T0 + timedelta(minutes=5), channels=("hook",))
    await store.mark_delivered(["gone-hook"], T0 + timedelta(minutes=6))  # it alerted alone
    bridge = entry("c1", "Kursk border villages emptied", "http://c.test/rss")
    await store.record_poll(PollRecord(
        feed=FeedState(url=bridge.feed_url, last_poll_at=T0 + timedelta(minutes=9),
                       last_status=200),
        seen=[bridge], members=[StoryMember("kept", bridge, T0 + timedelta(minutes=9))],
        folded=[("kursk", "gone", "kept")]))
    desk = DeskQueries(store)
    [listed] = await desk.stories(topic="kursk")
    assert listed.id == "kept"
    assert [o.feed_url for o in listed.outlets] == [FEED_A, FEED_B, bridge.feed_url]
    assert sorted(a.id for a in listed.alerts) == ["gone-hook", "kept-hook"]
    assert [s.id for s in await desk.latest_stories(["kursk"], 5)] == ["kept"]
    followed = await desk.story("gone")
    assert followed is not None and followed.id == "kept" and len(followed.outlets) == 3


async def test_pages_continue_after_the_cursor_even_when_times_tie(store: Store) -> None:
    for i in range(6):
        await record_story(store, f"t{i}", "kursk", [entry(f"t{i}", f"Tie {i}")], at=T0,
                           channels=())
    q = DeskQueries(store)
    first = await q.stories(topic="kursk", limit=4)
    rest = await q.stories(topic="kursk", before=(first[-1].opened_at, first[-1].id), limit=4)
    assert [s.id for s in first + rest] == [f"t{i}" for i in reversed(range(6))]


async def test_one_story_carries_the_explanation_of_its_first_match(store: Store) -> None:
    await record_story(store, "s1", "kursk", [entry("a1", "Kursk evacuation ordered")], at=T0)
    story = await DeskQueries(store).story("s1")
    assert story is not None and story.score == 92.5
    assert [(h.phrase, h.field, h.text) for h in story.hits] == [
        ("Kursk evacuation", "title", "Kursk evacuation")]
    assert await DeskQueries(store).story("missing") is None


async def test_retry_requeues_one_failed_alert_and_nothing_else(store: Store) -> None:
    ids = await record_story(store, "s1", "kursk", [entry("a1", "Kursk")], at=T0)
    await record_story(store, "s2", "kursk", [entry("a2", "Other")], at=T0,
                       channels=("hook",))
    await store.mark_failed([ids[0], "s2-hook"], "HTTP 404")
    await store.mark_delivered([ids[1]], T0)
    q = DeskQueries(store)
    assert await q.retry_alert(ids[0], T0) is True
    assert await q.retry_alert(ids[0], T0) is False  # owed now: nothing to do
    assert await q.retry_alert(ids[1], T0) is False  # delivered stays delivered
    states = {a.id: a.state for a in await store.alert_history()}
    assert states == {ids[0]: "owed", ids[1]: "delivered", "s2-hook": "failed"}


async def test_recent_entries_are_the_stored_texts_newest_first(store: Store) -> None:
    old = entry("old", "Old entry")
    await record_story(store, "s1", "kursk", [entry("a1", "First")], at=T0 - timedelta(days=3),
                       extra_seen=(old,))
    await record_story(store, "s2", "kursk", [entry("a2", "Second", language="uk")], at=T0,
                       extra_seen=(entry("x2", "Seen, not matched", FEED_A),))
    got = await DeskQueries(store).recent_entries(T0 - timedelta(days=1), 10)
    assert {r.entry.title for r in got} == {"Second", "Seen, not matched"}
    assert {r.entry.title: r.language for r in got}["Second"] == "uk"
    assert all(r.seen_at == T0 for r in got)


async def test_follow_up_alerts_show_their_kind_and_note(store: Store) -> None:
    first = entry("a1", "Kursk evacuation ordered")
    await record_story(store, "s1", "kursk", [first], at=T0, channels=("hook",))
    surge = NewAlert(id="s1-hook-surge", topic="kursk", channel="hook", story_id="s1",
                     entry=first, score=92.5, hits=(), due_at=T0 + timedelta(hours=1),
                     kind="surge", note="Surge: 5 outlets in 1h")
    await store.record_poll(PollRecord(feed=FeedState(url=FEED_A, last_poll_at=T0),
                                       alerts=[surge]))
    story = await DeskQueries(store).story("s1")
    assert story is not None
    assert [(a.kind, a.note) for a in story.alerts] == [("story", ""),
                                                       ("surge", "Surge: 5 outlets in 1h")]
    assert story.score == 92.5  # the explanation is the first (story) alert's
    listed = (await DeskQueries(store).stories())[0]
    assert [a.kind for a in listed.alerts] == ["story", "surge"]


async def test_a_story_others_were_merged_into_outlives_pruning_while_they_stay(
        store: Store) -> None:
    """Pruning drops old stories without alerts; one that a story with delivered alerts was
    merged into stays, or that story's alert links and its listing would lead nowhere."""
    await record_story(store, "kept", "kursk", [entry("a1", "Kursk evacuation", FEED_A)],
                       at=T0, channels=())
    later = T0 + timedelta(days=20)
    await record_story(store, "gone", "kursk", [entry("b1", "Families leave Kursk", FEED_B)],
                       at=later, channels=("hook",))
    await store.mark_delivered(["gone-hook"], later)
    bridge = entry("c1", "Kursk border villages emptied", "http://c.test/rss")
    await store.record_poll(PollRecord(
        feed=FeedState(url=bridge.feed_url, last_poll_at=later, last_status=200),
        seen=[bridge], members=[StoryMember("kept", bridge, later)],
        folded=[("kursk", "gone", "kept")]))
    await store.prune(T0 + timedelta(days=40))  # "kept" is 40 days old and has no alert
    desk = DeskQueries(store)
    followed = await desk.story("gone")
    assert followed is not None and followed.id == "kept"
    assert [a.id for a in followed.alerts] == ["gone-hook"]
    assert [s.id for s in await desk.stories(topic="kursk")] == ["kept"]


async def test_an_outlet_named_by_a_credentialed_url_is_shown_masked(store: Store) -> None:
    """A feed with no name and no title was once named by its URL, credentials and all; a
    store holding such rows must not show them on the desk (or its Atom/JSON feeds)."""
    from msgspec.structs import replace

    raw = "https://alice:Pa55w0rd@intranet.example/feed?private_token=glpat-abcdef123456"
    await record_story(store, "s1", "kursk",
                       [replace(entry("a1", "Kursk evacuation ordered"), feed_name=raw)], at=T0)
    [story] = await DeskQueries(store).stories(topic="kursk")
    shown = story.outlets[0].feed
    assert "intranet.example" in shown
    assert "Pa55w0rd" not in shown and "glpat-abcdef123456" not in shown
