"""The story decision the daemon and `watcher test` share: topics per feed, same story or
a new one, alerts owed once per story and channel."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.cli import main
from watcher.config import load_config
from watcher.matching.decide import Rules, StoryDecider, story_time
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


def test_one_story_owes_one_alert_per_channel_and_republications_join_it(
        tmp_path: Path) -> None:
    config = load_config(write_config(
        tmp_path, [("https://a.example/rss", "Alpha", ""), ("https://b.example/rss", "Beta", "")],
        '"Alpha", "Beta"'))
    rules = Rules(config)
    decider = StoryDecider(rules)
    first = entry("Kursk evacuation: residents leave the border villages")
    again = entry("Kursk evacuation: residents leave border villages", "https://b.example/rss")
    record = PollRecord(feed=FeedState(url=first.feed_url))
    record.matches = [(m, False) for m in rules.match(first, rules.feed(first.feed_url))]
    decider.decide(record, [], NOW)
    assert sorted((a.topic, a.channel) for a in record.alerts) == [
        ("anywhere", "out"), ("kursk", "log"), ("kursk", "out")]
    digest = next(a for a in record.alerts if a.channel == "log")
    assert digest.due_at == datetime(2025, 2, 24, 12, 15, tzinfo=UTC)  # the period's end
    assert {s.topic for s in record.stories} == {"kursk", "anywhere"}

    later = PollRecord(feed=FeedState(url=again.feed_url))
    later.matches = [(m, False) for m in rules.match(again, rules.feed(again.feed_url))]
    decider.decide(later, [], NOW)
    assert later.alerts == [] and later.stories == []  # the same story: no second alert
    assert {m.story_id for m in later.members} == {s.id for s in record.stories}

    decider.forget(record)  # the first poll's transaction failed: its stories are gone
    assert decider.place(later.matches[0][0], NOW).opened is not None


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
