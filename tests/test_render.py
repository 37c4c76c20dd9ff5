"""Pure rendering: email parts and webhook payloads (table-driven where it fits)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from msgspec.structs import replace

from watcher.config import FileChannel
from watcher.http import parse_retry_after
from watcher.model import AlertMessage, Entry, Hit, Outlet
from watcher.notify import render
from watcher.notify.apprise import render_message
from watcher.notify.file import FileSender
from watcher.reader.parse import parse_feed

T0 = datetime(2025, 2, 24, 10, 0, tzinfo=UTC)


def make_alert(n: int = 1, *, title: str = "Kursk evacuation ordered for border villages",
               summary: str = "Authorities began the Kursk evacuation of residents on Monday.",
               link: str | None = None, published: datetime | None = T0, topic: str = "kursk",
               outlets: list[Outlet] | None = None) -> AlertMessage:
    """An alert whose hits point at real offsets in its title and summary."""
    entry = Entry(key=f"k{n}", guid=f"g{n}", title=title,
                  link=link if link is not None else f"https://news.example/{n}",
                  canonical_link=None, summary=summary, published=published,
                  feed_url="https://feed.example/rss", feed_name="Example News")
    hits = []
    for field, text in (("title", title), ("summary", summary)):
        if (i := text.find("Kursk evacuation")) >= 0:
            hits.append(Hit("Kursk evacuation", field, text[i:i + 16], i, i + 16, 95.0))  # type: ignore[arg-type]
    return AlertMessage(alert_id=f"alert-{n}", topic=topic, channel="ch", entry=entry,
                        score=92.5, hits=tuple(hits), also_reported_by=outlets or [])


@pytest.mark.parametrize(("url", "expected"), [
    ("https://a.example/x?y=1", "https://a.example/x?y=1"),
    ("http://a.example", "http://a.example"),
    ("javascript:alert(1)", None),
    ("JaVaScRiPt:alert(1)", None),
    ("data:text/html,<b>x</b>", None),
    ("ftp://a.example/f", None),
    ("https:///nohost", None),
    ("http://a.example/x y", None),
    ("", None),
    (None, None),
])
def test_safe_url(url: str | None, expected: str | None) -> None:
    assert render.safe_url(url) == expected


@pytest.mark.parametrize(("when", "iso", "readable"), [
    (T0, "2025-02-24T10:00:00Z", "2025-02-24 10:00 UTC"),
    (datetime(2025, 2, 24, 13, 0, tzinfo=timezone(timedelta(hours=3))),
     "2025-02-24T10:00:00Z", "2025-02-24 10:00 UTC"),
    (datetime(2025, 2, 24, 10, 0), "2025-02-24T10:00:00Z", "2025-02-24 10:00 UTC"),
    (None, None, "unknown"),
])
def test_times(when: datetime | None, iso: str | None, readable: str) -> None:
    assert render.iso_z(when) == iso
    assert render.readable_time(when) == readable


@pytest.mark.parametrize(("text", "spans", "expected"), [
    ("plain", [], "plain"),
    ("a <b> c", [], "a &lt;b&gt; c"),
    ("Kursk evacuation now", [(0, 16)], "<mark>Kursk evacuation</mark> now"),
    ("abcdef", [(0, 3), (2, 5)], "<mark>abcde</mark>f"),
    ("x<y>z", [(1, 4)], "x<mark>&lt;y&gt;</mark>z"),
    ("abc", [(2, 99), (-5, 1)], "<mark>a</mark>b<mark>c</mark>"),
])
def test_mark(text: str, spans: list[tuple[int, int]], expected: str) -> None:
    assert render.mark(text, spans) == expected


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("  a \n b\t c ", None, "a b c"),
    ("one two three four", 100, "one two three four"),
    ("one two three four", 12, "one two…"),
])
def test_one_line(text: str, limit: int | None, expected: str) -> None:
    assert render.one_line(text, limit) == expected


@pytest.mark.parametrize(("alerts", "subject"), [
    ([make_alert()], "[watcher] kursk: Kursk evacuation ordered for border villages"),
    ([make_alert(title="Line\nbreak\r\n  title")], "[watcher] kursk: Line break title"),
    ([make_alert(1), make_alert(1)], "[watcher] kursk: Kursk evacuation ordered for border "
                                     "villages"),
    ([make_alert(1), make_alert(2), make_alert(3)], "[watcher] kursk: 3 new stories"),
    ([make_alert(1), make_alert(2, topic="other")], "[watcher] kursk, other: 2 new stories"),
])
def test_subject(alerts: list[AlertMessage], subject: str) -> None:
    assert render.email_subject(alerts) == subject


def test_long_subject_is_cut() -> None:
    subject = render.email_subject([make_alert(title="word " * 100)])
    assert len(subject) <= render.SUBJECT_CHARS and subject.endswith("…")


def test_stories_dedupe_and_newest_first() -> None:
    old, new, undated = (make_alert(1, published=T0), make_alert(2, published=T0 + timedelta(1)),
                         make_alert(3, published=None))
    ordered = render.stories([old, undated, new, old])
    assert [m.alert_id for m in ordered] == ["alert-2", "alert-1", "alert-3"]


def test_html_escapes_feed_text_and_marks_hits() -> None:
    hostile = make_alert(title="Kursk evacuation <script>alert(1)</script>",
                         summary="<style>p{}</style><img src=x onerror=alert(1)> Kursk evacuation",
                         link="javascript:alert(1)",
                         outlets=[Outlet("Evil <b>Feed</b>", "<i>t</i>", "javascript:x")])
    out = render.email_html([hostile])
    for raw in ("<script", "<style", "<img", "<b>Feed", "<i>t"):
        assert raw not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "<mark>Kursk evacuation</mark>" in out
    assert 'href="' not in out  # no http(s) link anywhere in this alert


def test_html_links_only_http() -> None:
    out = render.email_html([make_alert(outlets=[Outlet("B", "Other", "https://b.example/1")])])
    assert '<a href="https://news.example/1">' in out
    assert '<a href="https://b.example/1">Other</a>' in out


def test_text_part_explains_the_match() -> None:
    text = render.email_text([make_alert(outlets=[Outlet("Other Feed", "Same story", None)])])
    for needle in ("Kursk evacuation ordered", "https://news.example/1", "Feed: Example News",
                   "Published: 2025-02-24 10:00 UTC", "Score: 92.5", 'Matched: "Kursk evacuation"',
                   '"Kursk evacuation" ~ [Kursk evacuation] ordered', "(in title, score 95.0)",
                   "(in summary, score 95.0)", "Also reported by:", "Other Feed: Same story"):
        assert needle in text


def test_digest_text_lists_each_story_once_newest_first() -> None:
    alerts = [make_alert(i, published=T0 + timedelta(hours=i)) for i in (1, 2, 3)]
    text = render.email_text([*alerts, alerts[0]])
    positions = [text.index(f"https://news.example/{i}") for i in (3, 2, 1)]
    assert positions == sorted(positions)
    assert text.count("https://news.example/1") == 1
    assert text.startswith("3 new stories (kursk), newest first.")


def test_json_payload_single_matches_design() -> None:
    alert = make_alert(outlets=[Outlet("B", "Other", "https://b.example/1")])
    assert render.json_payload([alert], "alert-1") == {
        "version": 1, "alert_id": "alert-1", "topic": "kursk", "kind": "story",
        "entry": {"title": alert.entry.title, "link": "https://news.example/1",
                  "published": "2025-02-24T10:00:00Z", "summary": alert.entry.summary,
                  "feed": {"name": "Example News", "url": "https://feed.example/rss"}},
        "score": 92.5, "matched": ["Kursk evacuation"],
        "also_reported_by": [{"feed": "B", "title": "Other", "link": "https://b.example/1"}],
        "explanation": [
            {"phrase": "Kursk evacuation", "field": "title", "text": "Kursk evacuation",
             "score": 95.0},
            {"phrase": "Kursk evacuation", "field": "summary", "text": "Kursk evacuation",
             "score": 95.0}],
    }


@pytest.mark.parametrize(("topics", "topic"), [(["a", "a"], "a"), (["a", "b"], None)])
def test_json_payload_digest(topics: list[str], topic: str | None) -> None:
    alerts = [make_alert(i, topic=t, published=T0 + timedelta(hours=i))
              for i, t in enumerate(topics)]
    payload = render.json_payload(alerts, "digest-9")
    assert {k: v for k, v in payload.items() if k != "alerts"} == {
        "version": 1, "digest": True, "digest_id": "digest-9", "topic": topic,
        "topics": sorted(set(topics)), "count": 2}
    assert [a["alert_id"] for a in payload["alerts"]] == ["alert-1", "alert-0"]


def test_slack_escapes_markup() -> None:
    payload = render.slack_payload([make_alert(title="A <b> & c|d", link="https://x.example/a|b")])
    section = payload["blocks"][0]["text"]["text"]
    assert section.startswith("*<https://x.example/a%7Cb|A &lt;b&gt; &amp; c|d>*")
    assert payload["text"] == "[watcher] kursk: A &lt;b&gt; &amp; c|d"


def test_slack_digest_caps_blocks() -> None:
    payload = render.slack_payload([make_alert(i) for i in range(60)])
    assert len(payload["blocks"]) <= 50
    assert payload["blocks"][-1]["elements"][0]["text"] == "…and 20 more"


@pytest.mark.parametrize("count", [1, 3, 80])
def test_discord_stays_under_limit_and_never_pings(count: int) -> None:
    alerts = [make_alert(i, title="@everyone " + "long title " * 30, summary="s " * 500)
              for i in range(count)]
    payload = render.discord_payload(alerts)
    assert len(payload["content"]) <= render.DISCORD_LIMIT
    assert payload["allowed_mentions"] == {"parse": []}
    assert "\\@\u200beveryone" in payload["content"]  # escaped and broken up
    if count == 80:
        assert "more" in payload["content"].splitlines()[-1]


# ---------------------------------------------------------------- credentialed feed URLs

CREDENTIALED_FEED = ("https://alice:Pa55w0rd-alice@intranet.example/feed"
                     "?private_token=glpat-Xy12Ab34Cd56Ef78Gh90")
FEED_SECRETS = ("alice", "Pa55w0rd-alice", "glpat-Xy12Ab34Cd56Ef78Gh90")
UNTITLED_FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel>
<item><title>Kursk evacuation ordered</title><link>https://news.example/9</link>
<guid>g9</guid><description>Residents of Kursk leave.</description></item>
</channel></rss>"""


def credentialed_alert(stored_before_masking: bool = False) -> AlertMessage:
    """An alert on an entry of an untitled, unnamed feed read from a credentialed URL, also
    reported by another entry of it; or, as an older store may hold them, with the raw URL
    as their feed name."""
    [entry] = parse_feed(UNTITLED_FEED, CREDENTIALED_FEED).entries
    if stored_before_masking:
        entry = replace(entry, feed_name=CREDENTIALED_FEED)
    outlet = Outlet(entry.feed_name, "Kursk evacuation, more", "https://news.example/10")
    hit = Hit("Kursk evacuation", "title", "Kursk evacuation", 0, 16, 95.0)
    return AlertMessage(alert_id="alert-9", topic="kursk", channel="ch", entry=entry,
                        score=92.5, hits=(hit,), also_reported_by=[outlet])


async def every_format(alert: AlertMessage, tmp_path: Path) -> dict[str, str]:
    """The alert as each channel sends it (the file channel's line as written)."""
    subject, text, html = render.render_email([alert])
    chat_title, chat_body = render_message([alert])
    sender = FileSender(FileChannel.from_table(
        {"name": "f", "type": "file", "path": "alerts.jsonl"}), tmp_path)
    await sender.send([alert], "alert-9")
    dumped = {fmt: json.dumps(render.webhook_payload(fmt, [alert], "alert-9"),
                              ensure_ascii=False) for fmt in ("json", "slack", "discord")}
    return {"email text": text, "email html": html, "apprise": chat_body, **dumped,
            "file": (tmp_path / "alerts.jsonl").read_text(),
            "titles": subject + chat_title}


@pytest.mark.parametrize("stored_before_masking", [False, True])
async def test_feed_url_credentials_reach_no_alert(tmp_path: Path,
                                                   stored_before_masking: bool) -> None:
    alert = credentialed_alert(stored_before_masking)
    assert alert.entry.feed_url == CREDENTIALED_FEED  # fetched and keyed by the real URL
    for fmt, rendered in (await every_format(alert, tmp_path)).items():
        for secret in FEED_SECRETS:
            assert secret not in rendered, (fmt, secret)
        if fmt != "titles":
            assert "intranet.example" in rendered, fmt
    payload = render.json_payload([alert], "alert-9")
    masked = "https://***:***@intranet.example/feed?private_token=***"
    assert payload["entry"]["feed"] == {"name": masked, "url": masked}
    assert payload["also_reported_by"][0]["feed"] == masked


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), ("0", 0.0), (" 5 ", 5.0), ("", None), (None, None), ("soon", None),
    ("-3", None),
    (format_datetime(datetime(2025, 1, 1, 0, 1, 30, tzinfo=UTC), usegmt=True), 90.0),
    (format_datetime(datetime(2024, 12, 31, tzinfo=UTC), usegmt=True), 0.0),
    ("Wed, 01 Jan 2025 00:01:30 -0000", 90.0),  # no zone: an HTTP-date is GMT
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """One parser for the reader and the notify stage: a webhook's and a feed's
    Retry-After mean the same wait."""
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected
