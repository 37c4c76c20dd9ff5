"""The story decision the daemon and `watcher test` share: topics per feed, same story or
a new one, alerts owed once per story and channel."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from watcher.cli import main
from watcher.config import load_config
from watcher.matching.decide import Rules, StoryDecider, story_time
from watcher.matching.dedupe import evidence_batch, evidence_input, loads, with_vector
from watcher.model import Entry, FeedState, PollRecord

NOW = datetime(2025, 2, 24, 12, 0, tzinfo=UTC)
FEED = """
[[feeds]]
url = "{url}"
name = "{name}"
tags = [{tags}]
"""


def write_config(tmp_path: Path, feeds: list[tuple[str, str, str]], topic_feeds: str) -> Path:
    path = tmp_path / "watcher.toml"
    path.write_text("""
[watcher]
state = "state.db"
story_window = "72h"
""" + "".join(FEED.format(url=u, name=n, tags=t) for u, n, t in feeds) + f"""
[[topics]]
name = "kursk"
any = ["Kursk evacuation"]
channels = ["out", "log"]
feeds = [{topic_feeds}]

[[topics]]
name = "anywhere"
any = ["Kursk evacuation"]
channels = ["out"]

[[channels]]
name = "out"
type = "file"
path = "alerts.jsonl"

[[channels]]
name = "log"
type = "file"
path = "log.jsonl"
digest = "15m"
""")
    return path


def entry(title: str, feed: str = "https://a.example/rss", key: str = "1",
          published: datetime | None = NOW - timedelta(hours=1)) -> Entry:
    return Entry(key=key, guid=key, title=title, link=f"{feed}/{key}",
                 canonical_link=f"{feed}/{key}", summary="", published=published,
                 feed_url=feed, feed_name=feed)


def test_topics_for_follow_names_and_tags(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, [
        ("https://a.example/rss", "Alpha", '"wire"'), ("https://b.example/rss", "Beta", "")],
        '"wire"'))
    rules = Rules(config)
    assert rules.topics_for(rules.feed("https://a.example/rss")) == {"kursk", "anywhere"}
    assert rules.topics_for(rules.feed("https://b.example/rss")) == {"anywhere"}
    assert rules.topics_for(rules.feed("https://unknown.example/rss")) == {"anywhere"}


def poll(rules: Rules, *entries: Entry) -> PollRecord:
    """A poll's record as the pipeline hands it to the decider: matches and evidence."""
    record = PollRecord(feed=FeedState(url=entries[0].feed_url))
    raws = evidence_batch([evidence_input(e, story_time(e, NOW)) for e in entries])
    record.evidence = {e.id: raw for e, raw in zip(entries, raws, strict=True)}
    record.matches = [(m, False) for e in entries for m in rules.match(e, rules.feed(e.feed_url))]
    return record


def test_one_story_owes_one_alert_per_channel_and_republications_join_it(
        tmp_path: Path) -> None:
    config = load_config(write_config(
        tmp_path, [("https://a.example/rss", "Alpha", ""), ("https://b.example/rss", "Beta", "")],
        '"Alpha", "Beta"'))
    rules = Rules(config)
    decider = StoryDecider(rules)
    first = entry("Kursk evacuation: residents leave the border villages of Sudzha district")
    again = entry("Kursk evacuation: residents leave border villages of Sudzha district",
                  "https://b.example/rss")
    record = poll(rules, first)
    decider.decide(record, [], NOW)
    assert sorted((a.topic, a.channel, a.kind) for a in record.alerts) == [
        ("anywhere", "out", "story"), ("kursk", "log", "story"), ("kursk", "out", "story")]
    digest = next(a for a in record.alerts if a.channel == "log")
    assert digest.due_at == datetime(2025, 2, 24, 12, 15, tzinfo=UTC)  # the period's end
    assert {s.topic for s in record.stories} == {"kursk", "anywhere"}
    # every placement is logged with its evidence, for other nodes and restarts
    assert sorted((e.topic, e.entry_id) for e in record.events) == [
        ("anywhere", first.id), ("kursk", first.id)]

    later = poll(rules, again)
    decider.decide(later, [], NOW)
    assert later.alerts == [] and later.stories == []  # the same story: no second alert
    assert {m.story_id for m in later.members} == {s.id for s in record.stories}

    # another process replays the placements and decides the same
    other = StoryDecider(rules)
    for event in [*record.events, *later.events]:
        other.replay(event)
    third = poll(rules, entry("Kursk evacuation: residents leave the border villages of "
                              "Sudzha district", "https://c.example/rss"))  # "anywhere" only
    other.decide(third, [], NOW)
    anywhere = next(s.id for s in record.stories if s.topic == "anywhere")
    assert third.alerts == [] and [m.story_id for m in third.members] == [anywhere]

    decider.forget(record)  # the first poll's transaction failed: its stories are gone
    match = later.matches[0][0]
    assert decider.place(match, loads(later.evidence[again.id]), NOW).opened is not None


@pytest.mark.parametrize(("published", "expected"), [
    (NOW - timedelta(hours=3), NOW - timedelta(hours=3)),
    (NOW + timedelta(hours=3), NOW),  # a date in the future: now
    (None, NOW),
])
def test_story_time(published: datetime | None, expected: datetime) -> None:
    assert story_time(entry("x", published=published), NOW) == expected


def test_watcher_test_honours_a_topics_feeds(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`watcher test` shows only what the daemon would alert: a topic restricted to other
    feeds is not tried on a source (and the user is told so)."""
    feed = tmp_path / "feed.xml"
    feed.write_text("""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
<item><guid>1</guid><title>Kursk evacuation: residents leave</title>
<pubDate>Mon, 24 Feb 2025 10:00:00 GMT</pubDate></item></channel></rss>""")
    other = (tmp_path / "other.xml").as_uri()
    path = write_config(tmp_path, [(feed.as_uri(), "Local", ""), (other, "Elsewhere", "")],
                        '"Elsewhere"')
    assert main(["test", "--config", str(path), "--json", str(feed)]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["topic"] for r in rows] == ["anywhere"]
    assert "not tried against kursk (these topics watch other feeds only)" in captured.err

    path = write_config(tmp_path, [(feed.as_uri(), "Local", "")], '"Local"')
    assert main(["test", "--config", str(path), "--json", str(feed)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["topic"] for r in rows) == ["anywhere", "kursk"]


def test_a_surge_within_group_wait_waits_for_the_story_alert(tmp_path: Path) -> None:
    path = tmp_path / "watcher.toml"
    path.write_text('[watcher]\nembedding = "none"\n[[topics]]\nname = "kursk"\n'
                    'any = ["Kursk evacuation"]\nchannels = ["out"]\ngroup_wait = "10m"\n'
                    'surge = {outlets = 2, within = "1h"}\n[[channels]]\nname = "out"\n'
                    'type = "file"\npath = "alerts.jsonl"\n')
    rules = Rules(load_config(path))
    decider = StoryDecider(rules)
    title = "Kursk evacuation: residents leave the border villages of Sudzha district"
    first = poll(rules, entry(title))
    decider.decide(first, [], NOW)
    second = poll(rules, entry(title + " - Outlet B", "https://b.example/rss"))
    decider.decide(second, [], NOW + timedelta(minutes=1))
    [story] = first.alerts
    [surge] = second.alerts
    assert (story.kind, story.due_at) == ("story", NOW + timedelta(minutes=10))
    assert (surge.kind, surge.note, surge.due_at) == (
        "surge", "Surge: 2 outlets in 1h", NOW + timedelta(minutes=10))


def test_a_failed_polls_placements_are_undone(tmp_path: Path) -> None:
    """The store runs `decide` inside the poll's transaction: when that transaction fails,
    `rollback` leaves the index and the books as before the poll, so the entries polled
    again are decided afresh — the follow-up alert the failed poll owed is owed again."""
    path = tmp_path / "watcher.toml"
    path.write_text("""
[watcher]
state = "state.db"

[[topics]]
name = "kursk"
any = ["Kursk evacuation"]
channels = ["out"]
story_updates = 1

[[channels]]
name = "out"
type = "file"
path = "alerts.jsonl"
""")
    rules = Rules(load_config(path))
    decider = StoryDecider(rules)
    first = poll(rules, entry("Kursk evacuation: residents leave the border villages of "
                              "Sudzha district"))
    decider.decide(first, [], NOW)
    (story,) = first.stories
    before = json.dumps(decider.index.to_state(), sort_keys=True)

    def second() -> PollRecord:
        return poll(rules, entry("Kursk evacuation: residents leave border villages of Sudzha "
                                 "district", "https://b.example/rss", key="2"))

    later = NOW + timedelta(minutes=5)  # after the story's alert was due
    failed = second()
    decider.decide(failed, [], later)
    assert [m.story_id for m in failed.members] == [story.id]
    assert [a.kind for a in failed.alerts] == ["update"]
    decider.rollback(failed)  # the transaction did not commit
    assert json.dumps(decider.index.to_state(), sort_keys=True) == before
    assert list(decider.books[story.id].outlets) == ["https://a.example/rss"]

    retried = second()
    decider.decide(retried, [], later)
    assert [m.story_id for m in retried.members] == [story.id]
    assert [a.kind for a in retried.alerts] == ["update"]  # owed again, once
    assert decider.index.story("kursk", story.id).size == 2  # type: ignore[union-attr]


def test_a_bridging_entry_merges_two_stories_and_a_failed_poll_unmerges_them(
        tmp_path: Path) -> None:
    """An entry sure of two open stories of a topic merges them (their outlets count as one
    story's); when its poll's transaction fails, both stories are open again as before."""
    rules = Rules(load_config(write_config(tmp_path, [], "")))
    decider = StoryDecider(rules)
    centre = decider.index.stream.centres.get("en")
    assert centre is not None
    u1, u2 = np.eye(384, dtype=np.float32)[:2]

    def placed(title: str, feed: str, key: str, direction: np.ndarray) -> PollRecord:
        record = poll(rules, entry(title, feed, key))
        vector = (centre + direction / np.linalg.norm(direction)).astype(np.float32)
        record.evidence = {k: with_vector(raw, vector) for k, raw in record.evidence.items()}
        record.matches = [(m, u) for m, u in record.matches if m.topic == "anywhere"]
        return record

    first = placed("Kursk evacuation: shelling hits the Belovsky district", "https://a.example/rss",
                   "1", u1)
    second = placed("Kursk evacuation: families leave Krasnaya Yaruga", "https://b.example/rss",
                    "2", u2)
    decider.decide(first, [], NOW)
    decider.decide(second, [], NOW)
    assert len(first.stories) == len(second.stories) == 1  # two stories, two alerts
    before = json.dumps(decider.index.to_state(), sort_keys=True)

    def bridging() -> PollRecord:
        return placed("Kursk evacuation: border villages emptied", "https://c.example/rss", "3",
                      u1 + u2)

    failed = bridging()
    decider.decide(failed, [], NOW)
    assert failed.stories == [] and failed.alerts == []
    (story,) = {m.story_id for m in failed.members}
    assert sorted(decider.books[story].outlets) == [
        "https://a.example/rss", "https://b.example/rss", "https://c.example/rss"]
    decider.rollback(failed)
    assert json.dumps(decider.index.to_state(), sort_keys=True) == before
    assert {len(decider.books[s.id].outlets) for s in (*first.stories, *second.stories)} == {1}

    retried = bridging()
    decider.decide(retried, [], NOW)
    assert {m.story_id for m in retried.members} == {story}
    assert len([s for s in decider.books if decider.index.story("anywhere", s)]) == 1


def test_outlets_a_merge_brings_in_owe_no_update_but_new_ones_do(tmp_path: Path) -> None:
    """A merged-away story had its own alert: its outlets are no news for the merged story's
    `story_updates` (two more outlets here); outlets joining afterwards are, and the merge is
    recorded for the store to drop the merged-away story's alert if still held."""
    path = tmp_path / "watcher.toml"
    path.write_text("""
[watcher]
state = "state.db"

[[topics]]
name = "kursk"
any = ["Kursk evacuation"]
channels = ["out"]
story_updates = 2

[[channels]]
name = "out"
type = "file"
path = "alerts.jsonl"
""")
    rules = Rules(load_config(path))
    decider = StoryDecider(rules)
    centre = decider.index.stream.centres.get("en")
    assert centre is not None
    u1, u2 = np.eye(384, dtype=np.float32)[:2]

    def decided(title: str, feed: str, key: str, direction: np.ndarray,
                at: datetime) -> PollRecord:
        record = poll(rules, entry(title, feed, key))
        vector = (centre + direction / np.linalg.norm(direction)).astype(np.float32)
        record.evidence = {k: with_vector(raw, vector) for k, raw in record.evidence.items()}
        decider.decide(record, [], at)
        return record

    first = decided("Kursk evacuation: shelling hits the Belovsky district",
                    "https://a.example/rss", "1", u1, NOW)
    later = NOW + timedelta(hours=1)  # both stories' alerts were due long ago
    second = decided("Kursk evacuation: families leave Krasnaya Yaruga",
                     "https://b.example/rss", "2", u2, later)
    assert len(first.stories) == len(second.stories) == 1
    bridge = decided("Kursk evacuation: border villages emptied", "https://c.example/rss", "3",
                     u1 + u2, later)
    assert bridge.folded == [("kursk", second.stories[0].id, first.stories[0].id)]
    assert bridge.alerts == []  # b came with its own story: c is one new outlet, not two
    more = decided("Kursk evacuation: the border villages emptied", "https://d.example/rss",
                   "4", u1 + u2, later)
    assert [a.kind for a in more.alerts] == ["update"]  # c and d: two more outlets


def test_a_replayed_bridge_merges_the_stories_on_another_node_and_after_a_restart(
        tmp_path: Path) -> None:
    """A merge lives in the placement's stored event: a decider rebuilt from the committed
    events (a restart, another node) holds one merged story, as the one that decided it."""
    rules = Rules(load_config(write_config(tmp_path, [], "")))
    decider = StoryDecider(rules)
    centre = decider.index.stream.centres.get("en")
    assert centre is not None
    u1, u2 = np.eye(384, dtype=np.float32)[:2]
    polls = []
    for title, feed, direction in [
            ("Kursk evacuation: shelling hits the Belovsky district", "https://a.example/rss", u1),
            ("Kursk evacuation: families leave Krasnaya Yaruga", "https://b.example/rss", u2),
            ("Kursk evacuation: border villages emptied", "https://c.example/rss", u1 + u2)]:
        record = poll(rules, entry(title, feed, str(len(polls))))
        vector = (centre + direction / np.linalg.norm(direction)).astype(np.float32)
        record.evidence = {k: with_vector(raw, vector) for k, raw in record.evidence.items()}
        record.matches = [(m, u) for m, u in record.matches if m.topic == "anywhere"]
        decider.decide(record, [], NOW)
        polls.append(record)
    assert len({m.story_id for m in polls[2].members}) == 1 and polls[2].stories == []

    rebuilt = StoryDecider(rules)
    for event in (e for record in polls for e in record.events):
        rebuilt.replay(event)
    open_stories = [s for s in rebuilt.books if rebuilt.index.story("anywhere", s)]
    assert open_stories == [polls[2].members[0].story_id]
    assert sorted(rebuilt.books[open_stories[0]].outlets) == sorted(
        decider.books[open_stories[0]].outlets)
    assert json.dumps(rebuilt.index.to_state()["topics"]["anywhere"]["stories"],
                      sort_keys=True) == json.dumps(
        decider.index.to_state()["topics"]["anywhere"]["stories"], sort_keys=True)


def test_vectors_another_model_stored_are_not_compared_after_a_switch(tmp_path: Path) -> None:
    """After `embedding` points at another model of the same size, the stories rebuilt
    from the store keep their words but not the old model's vectors: a new entry whose new
    vector happens to equal an old one is not joined to that story on it."""
    rules = Rules(load_config(write_config(tmp_path, [], "")))
    centre = StoryDecider(rules).index.stream.centres.get("en")
    assert centre is not None
    direction = np.eye(384, dtype=np.float32)[0]
    vector = (centre + direction).astype(np.float32)

    def placed(title: str, key: str, model: str, decider: StoryDecider) -> PollRecord:
        record = poll(rules, entry(title, "https://a.example/rss", key))
        record.evidence = {k: with_vector(raw, vector, model) for k, raw in
                           record.evidence.items()}
        record.matches = [(m, u) for m, u in record.matches if m.topic == "anywhere"]
        decider.decide(record, [], NOW)
        return record

    old = placed("Kursk evacuation: shelling hits the Belovsky district", "1", "",
                 StoryDecider(rules))  # stored by the bundled model (no name)
    other = "dir:minilm:0123abcd"
    for model_known, joins in ((False, True), (True, False)):
        rebuilt = StoryDecider(rules)
        if model_known:
            rebuilt.vector_model = (384, other)
        for event in old.events:
            rebuilt.replay(event)
        new = placed("Kursk evacuation: Red Cross convoy reaches Sumy", "2", other, rebuilt)
        assert (new.stories == []) is joins  # on the vectors alone, when they are compared
