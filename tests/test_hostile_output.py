"""Hostile feed content (titles, summaries, links) through every output channel.

Everything a feed carries is written by strangers: it must never become an extra mail
header, a chat mention, or a link that breaks out of a chat service's link syntax.
Each test sends through the real sender to a real local receiver and checks the bytes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from apprise.plugins.discord import NotifyDiscord
from apprise.plugins.slack import NotifySlack
from servers import SmtpSink, WebhookReceiver
from test_render import make_alert

from watcher.config import AppriseChannel, EmailChannel, WebhookChannel
from watcher.model import AlertMessage, Outlet
from watcher.notify import make_sender
from watcher.notify.apprise import AppriseSender
from watcher.notify.email import EmailSender, header_value
from watcher.notify.render import chat_link, email_subject, no_mentions
from watcher.notify.webhook import WebhookSender

# CVE-2024-6923: an encoded CR LF in an encoded word; Python 3.11.7's folder decodes it
# into real header lines (a Reply-To, a Bcc) and a blank line that replaces the body.
ENCODED_INJECTION = ("=?utf-8?q?=0D=0AReply-To:_attacker@evil.example=0D=0ABcc:_"
                     "victim@evil.example=0D=0A=0D=0Aforged_body?=")
B64_INJECTION = "=?UTF-8?B?DQpCY2M6IGV2aWxAZXZpbC5leGFtcGxlDQoNCmZvcmdlZA==?="
RAW_INJECTION = "Kursk\r\nBcc: raw@evil.example\r\n\r\nforged"
SHORT_INJECTION = "=?utf-8?q?=0D=0ABcc:_v@evil.example=0D=0A=0D=0Aforged?="
LONG = "Kursk evacuation ordered as shelling intensifies "  # the header gets folded


def email_channel(port: int) -> EmailChannel:
    return EmailChannel.from_table({
        "name": "desk-email", "type": "email", "to": ["desk@example.org"],
        "from": "watcher@example.org", "host": "127.0.0.1", "port": port, "timeout": "5s"})


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


EXPECTED_HEADERS = {"subject", "from", "to", "date", "message-id", "x-watcher-delivery",
                    "auto-submitted", "content-type", "mime-version"}


@pytest.mark.parametrize("title", [
    LONG + SHORT_INJECTION,
    ENCODED_INJECTION,
    LONG + "Курск эвакуация " + B64_INJECTION,  # non-ASCII: the folder encodes the rest
    RAW_INJECTION,
    "Kursk\x00\x0b\x1b[31m\u2028Bcc: sep@evil.example",
])
async def test_hostile_title_adds_no_header_and_keeps_the_body(sink: SmtpSink,
                                                               title: str) -> None:
    alert = make_alert(title=title)
    await EmailSender(email_channel(sink.port)).send([alert], "alert-1")

    [mail] = sink.messages
    assert {k.lower() for k in mail.message} == EXPECTED_HEADERS
    head = mail.raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"^(reply-to|bcc|cc):", head, re.IGNORECASE | re.MULTILINE)
    assert b"evil.example" not in mail.raw.split(b"\r\n\r\n", 1)[1].split(b"--", 1)[0]
    assert mail.rcpt_tos == ["desk@example.org"]
    assert mail.message.get_content_type() == "multipart/alternative"
    text = mail.part("plain")
    assert "https://news.example/1" in text and "Score: 92.5" in text
    subject = mail.subject
    assert subject.startswith("[watcher] kursk: ")
    assert "\n" not in subject and "\r" not in subject
    # readable: decodes to what was written (RFC 2047 decoding may move spaces around
    # encoded words, so compare without them)
    assert subject.split() == header_value(email_subject([alert])).split() \
        or "".join(subject.split()) == "".join(header_value(email_subject([alert])).split())


def test_header_value_table() -> None:
    cases: list[tuple[str, Any]] = [
        ("plain title", "plain title"),
        ("a\r\nBcc: x@y", "a Bcc: x@y"),
        ("=?utf-8?q?x?=", "= ?utf-8?q?x?="),
        ("tab\there\x00nul\u2028sep", "tab here nul sep"),
        ("Курск: эвакуация", "Курск: эвакуация"),
    ]
    for raw, expected in cases:
        assert header_value(raw) == expected


# ---------------------------------------------------------------- chat: mentions and links

MENTIONS = "@everyone @here <@123456> <@!123456> <@&654321> <#777> <!channel> @room"
EVIL_LINK = "https://evil.example/a>b)c|d<@everyone>[x](y)"
EVIL_LINK_ENCODED = "https://evil.example/a%3Eb%29c%7Cd%3C%40everyone%3E[x]%28y%29"
# what a chat service would turn into a notification or a mention of someone
LIVE = re.compile(r"@(?:everyone|here|room|channel)\b|<[@#!][&!]?\w|<@|<#|<!")


def hostile_alert() -> AlertMessage:
    return make_alert(title=f"Kursk evacuation {MENTIONS}", link=EVIL_LINK,
                      summary=f"Summary {MENTIONS}",
                      outlets=[Outlet(f"Wire {MENTIONS}", f"Same {MENTIONS}", EVIL_LINK)])


def texts(value: Any) -> list[str]:
    """Every string inside a JSON document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def assert_no_live_mentions(payload: dict[str, Any]) -> None:
    for text in texts(payload):
        assert not LIVE.search(text), text
    allowed = payload.get("allowed_mentions", payload.get("allow_mentions"))
    assert allowed is None or not any(allowed.get(k) for k in ("parse", "users", "roles")), \
        allowed


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as server:
        yield server


@pytest.mark.parametrize("fmt", ["slack", "discord"])
async def test_builtin_chat_formats_carry_no_mention_and_closed_links(
        fmt: str, receiver: WebhookReceiver, session: aiohttp.ClientSession) -> None:
    chan = WebhookChannel.from_table({"name": "chat", "type": "webhook",
                                          "url": receiver.url, "format": fmt})
    await WebhookSender(chan, session).send([hostile_alert()], "alert-1")
    await WebhookSender(chan, session).send([hostile_alert(), make_alert(2)], "digest-1")
    for request in receiver.requests:
        assert_no_live_mentions(request.json)
        joined = "\n".join(texts(request.json))
        assert "evil.example/a>" not in joined and "evil.example/a&gt;" not in joined
    single = "\n".join(texts(receiver.requests[0].json))
    assert EVIL_LINK_ENCODED in single
    if fmt == "discord":
        assert receiver.requests[0].json["allowed_mentions"] == {"parse": []}


def apprise_sender(monkeypatch: pytest.MonkeyPatch, session: aiohttp.ClientSession,
                   url: str) -> AppriseSender:
    monkeypatch.setenv("WATCHER_TEST_CHAT", url)
    channel = AppriseChannel.from_table(
        {"name": "chat", "type": "apprise", "urls_env": "WATCHER_TEST_CHAT"})
    made = make_sender(channel, Path("."), session)
    assert isinstance(made, AppriseSender)
    return made


@pytest.mark.parametrize("url", [
    "discord://1234567890/abcdefTOKEN1234567890",
    "discord://1234567890/abcdefTOKEN1234567890?format=markdown",  # Apprise adds pings here
    "slack://T1AAAA/B1BBBB/C1CCCCCCCCCCCCCC",
    "json://127.0.0.1:{port}/hook",
])
async def test_apprise_chat_carries_no_mention_and_closed_links(
        url: str, receiver: WebhookReceiver, session: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Discord's and Slack's endpoints are on the internet: point Apprise's plugins at the
    # local receiver instead (the only thing replaced; the plugins build the bytes).
    local = f"http://127.0.0.1:{receiver.port}"
    monkeypatch.setattr(NotifyDiscord, "notify_url", f"{local}/api/webhooks")
    monkeypatch.setattr(NotifySlack, "webhook_url", f"{local}/services")
    chat = apprise_sender(monkeypatch, session, url.format(port=receiver.port))
    await chat.send([hostile_alert()], "alert-1")
    await chat.send([hostile_alert(), make_alert(2)], "digest-1")

    assert len(receiver.requests) == 2
    for request in receiver.requests:
        assert_no_live_mentions(request.json)
    joined = "\n".join(texts(receiver.requests[0].json)).replace("\\", "")
    assert "Kursk evacuation" in joined and "everyone" in joined  # readable, not live
    assert "evil.example/a>" not in joined and "evil.example/a&gt;" not in joined
    assert EVIL_LINK_ENCODED.replace("[", "").replace("]", "") in joined.replace(
        "[", "").replace("]", "")


@pytest.mark.parametrize(("url", "expected"), [
    ("https://a.example/x?y=1#z", "https://a.example/x?y=1#z"),
    (EVIL_LINK, EVIL_LINK_ENCODED),
    ("https://bank.example@evil.example/login", "https://evil.example/login"),
    ("https://a.example/x|y", "https://a.example/x%7Cy"),
    ("https://a.example/%D0%BA", "https://a.example/%D0%BA"),  # already encoded: kept
    ("https://a.example/курск", "https://a.example/%D0%BA%D1%83%D1%80%D1%81%D0%BA"),
    ("https://a.example/\"onmouseover", "https://a.example/%22onmouseover"),
    ("javascript:alert(1)", None),
    (None, None),
])
def test_chat_link_table(url: str | None, expected: str | None) -> None:
    assert chat_link(url) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("@everyone", "@\u200beveryone"),
    ("<@123> <@&4> <#5> <!here>", "<\u200b@\u200b123> <\u200b@\u200b&4> <\u200b#5> <\u200b!here>"),
    ("desk@example.org", "desk@\u200bexample.org"),
    ("a @ b, 5 < 6", "a @ b, 5 < 6"),
])
def test_no_mentions_table(text: str, expected: str) -> None:
    assert no_mentions(text) == expected
