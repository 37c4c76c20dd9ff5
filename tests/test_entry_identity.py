"""What identifies an entry (issue 16, and `updates = "alert"`): feeds that reuse one link
or one guid for different items lose none of them; title edits stay updates."""

from __future__ import annotations

import json
import random
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pgserver
import pytest
from conftest import DATA, ConfigWriter
from feedserver import FeedServer, Item

from watcher.daemon import run_once

NOW = datetime.now(UTC).replace(microsecond=0)
RNG = random.Random(16)


def headline(n: int) -> Item:
    """A matching item no other one is the same story as (distinct words and numbers)."""
    words = " ".join("".join(RNG.choice(string.ascii_lowercase) for _ in range(7))
                     for _ in range(5))
    return Item(f"Zeppelin sighted over {words} ({100 + 7 * n})", f"https://site.test/{n}",
                f"id-{n}", " ".join(RNG.sample(words.split(), 5)) + f" report {n}",
                NOW - timedelta(minutes=60 - n))


def config(url: str, updates: str = "ignore") -> str:
    return f"""
[watcher]
state = "state.db"
first_poll = "alert"

[[feeds]]
url = "{url}"
name = "Site"

[[topics]]
name = "zeppelins"
any = ["Zeppelin sighted"]
channels = ["file"]
updates = "{updates}"

[[channels]]
name = "file"
type = "file"
path = "alerts.jsonl"
"""


def alerted(tmp_path: Path) -> list[str]:
    path = tmp_path / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["entry"]["title"] for line in path.read_text().splitlines()]


async def test_items_all_linking_to_the_front_page_each_alert(
        tmp_path: Path, feed_server: FeedServer, write_config: ConfigWriter) -> None:
    items = [headline(i) for i in range(3)]
    for item in items:
        item.link = "https://site.test/"
    url = feed_server.set_feed("front.xml", items)
    cfg = write_config(config(url))
    await run_once(cfg)
    assert sorted(alerted(tmp_path)) == sorted(i.title for i in items)
    later = headline(3)
    later.link = "https://site.test/"
    feed_server.set_feed("front.xml", [later, *items])
    await run_once(cfg)
    await run_once(cfg)
    assert alerted(tmp_path)[3:] == [later.title]


async def test_one_link_given_to_several_items_in_one_document(
        tmp_path: Path, feed_server: FeedServer, write_config: ConfigWriter) -> None:
    items = [headline(i) for i in range(3)]
    for item in items:
        item.link = "https://site.test/latest.html"  # not a front page, still shared
    url = feed_server.set_feed("shared.xml", items[:2])
    cfg = write_config(config(url))
    await run_once(cfg)
    feed_server.set_feed("shared.xml", items)
    await run_once(cfg)
    assert sorted(alerted(tmp_path)) == sorted(i.title for i in items)


async def test_a_guid_reused_for_each_new_item_alerts_for_each(
        tmp_path: Path, feed_server: FeedServer, write_config: ConfigWriter) -> None:
    first, second = headline(1), headline(2)
    first.guid = second.guid = "latest"  # the feed's only item, always under one guid
    url = feed_server.set_feed("one.xml", [first])
    cfg = write_config(config(url))
    await run_once(cfg)
    feed_server.set_feed("one.xml", [second])
    await run_once(cfg)
    assert alerted(tmp_path) == [first.title, second.title]
    # an edit of the title alone (same summary and date) is an update: no alert
    edited = Item(second.title + " (updated)", second.link, "latest", second.summary,
                  second.published)
    feed_server.set_feed("one.xml", [edited])
    await run_once(cfg)
    assert alerted(tmp_path) == [first.title, second.title]


async def test_a_title_edit_alerts_again_when_the_topic_asks(
        tmp_path: Path, feed_server: FeedServer, write_config: ConfigWriter) -> None:
    item = headline(1)
    url = feed_server.set_feed("edit.xml", [item])
    cfg = write_config(config(url, updates="alert"))
    await run_once(cfg)
    edited = Item(f"Zeppelin sighted again: {item.title}", item.link, item.guid,
                  item.summary, item.published)
    feed_server.set_feed("edit.xml", [edited])
    await run_once(cfg)
    await run_once(cfg)
    assert alerted(tmp_path) == [item.title, edited.title]


async def test_duplicate_guids_in_the_braingle_feed(tmp_path: Path,
                                                    write_config: ConfigWriter) -> None:
    """A real feed whose item carries its guid twice: read once, alerted once."""
    feed = DATA / "feeds" / "braingle-1.xml"
    cfg = write_config(config(f"file://{feed}").replace('"Zeppelin sighted"', '"Rebus"'))
    await run_once(cfg)
    await run_once(cfg)
    assert alerted(tmp_path) == ["Huh?"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_one_article_in_two_feeds_polled_together_alerts_once(
        tmp_path: Path, feed_server: FeedServer, write_config: ConfigWriter,
        backend: str) -> None:
    """Issue 14.1 end to end: both feeds are polled at once (one round), their seen checks
    both find the article new; only one alert is owed."""
    state = "state.db"
    if backend == "postgres":
        if reason := pgserver.skip_reason():
            pytest.skip(reason)
        state = pgserver.shared_server().create_database()
    story, retitled = headline(1), headline(2)  # one link, titles no story match joins
    a = feed_server.set_feed("a.xml", [Item(story.title, story.link + "?utm_source=rss",
                                            "a-1", story.summary, story.published)])
    b = feed_server.set_feed("b.xml", [Item(retitled.title,
                                            story.link + "?utm_medium=feed&utm_source=b",
                                            "b-1", retitled.summary, story.published)])
    text = config(a).replace('state = "state.db"', f'state = "{state}"').replace(
        "\n[[topics]]", f'[[feeds]]\nurl = "{b}"\nname = "Other"\n\n[[topics]]', 1)
    cfg = write_config(text)
    await run_once(cfg)
    await run_once(cfg)
    assert len(alerted(tmp_path)) == 1
