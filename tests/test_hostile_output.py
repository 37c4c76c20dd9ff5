"""Hostile feed content (titles, summaries, links) through every output channel.

Everything a feed carries is written by strangers: it must never become an extra mail
header, a chat mention, or a link that breaks out of a chat service's link syntax.
Each test sends through the real sender to a real local receiver and checks the bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from servers import SmtpSink
from test_render import make_alert

from watcher.config import EmailChannel
from watcher.notify.email import EmailSender, header_value
from watcher.notify.render import email_subject

# CVE-2024-6923: an encoded CR LF in an encoded word; Python 3.11.7's folder decodes it
# into real header lines (a Reply-To, a Bcc) and a blank line that replaces the body.
ENCODED_INJECTION = ("=?utf-8?q?=0D=0AReply-To:_attacker@evil.example=0D=0ABcc:_"
                     "victim@evil.example=0D=0A=0D=0Aforged_body?=")
B64_INJECTION = "=?UTF-8?B?DQpCY2M6IGV2aWxAZXZpbC5leGFtcGxlDQoNCmZvcmdlZA==?="
RAW_INJECTION = "Kursk\r\nBcc: raw@evil.example\r\n\r\nforged"
SHORT_INJECTION = "=?utf-8?q?=0D=0ABcc:_v@evil.example=0D=0A=0D=0Aforged?="
LONG = "Kursk evacuation ordered as shelling intensifies "  # the header gets folded


def email_channel(port: int) -> EmailChannel:
    return EmailChannel.model_validate({
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
