"""Table-driven tests for watcher.redact: secrets in URLs and free text are masked."""

from __future__ import annotations

import pytest

from watcher.redact import looks_random, mask_fragments, mask_text, mask_url, secret_fragments

SLACK = "https://hooks.slack.com/services/T0AAAA1111/B0BBBB2222/abcdEFGH1234ijklMNOP5678"
DISCORD = ("https://discord.com/api/webhooks/123456789012345678/"
           "Zx9_aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4yZ5-abcdefghijklmnopqrstuvwx")


@pytest.mark.parametrize(("url", "masked"), [
    # credentials, user and password both
    ("https://bob:hunter2@example.org/rss", "https://***:***@example.org/rss"),
    ("https://bob@example.org/hook", "https://***@example.org/hook"),
    ("http://u:p@127.0.0.1:9000/hook", "http://***:***@127.0.0.1:9000/hook"),
    # secret-looking query parameters, any case; others untouched
    ("https://x.example/hook?token=abc&topic=kursk", "https://x.example/hook?token=***&topic=kursk"),
    ("https://x.example/h?API_KEY=1&Signature=2&sig=3&apikey=4&access_token=5",
     "https://x.example/h?API_KEY=***&Signature=***&sig=***&apikey=***&access_token=***"),
    ("https://x.example/h?pass=a;secret=b;auth=c;password=d",
     "https://x.example/h?pass=***;secret=***;auth=***;password=***"),
    ("https://x.example/h?id=Ab12Cd34Ef56Gh78Ij90", "https://x.example/h?id=***"),
    ("https://x.example/cb#access_token=zz&state=1", "https://x.example/cb#access_token=***&state=1"),
    # hook path tokens
    (SLACK, "https://hooks.slack.com/services/***/***/***"),
    (DISCORD, "https://discord.com/api/webhooks/***/***"),
    ("https://discordapp.com/api/webhooks/1/short", "https://discordapp.com/api/webhooks/***/***"),
    ("https://ntfy.example/api/webhooks/42/abc", "https://ntfy.example/api/webhooks/***/***"),
    ("https://api.telegram.org/bot123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11/sendMessage",
     "https://api.telegram.org/***/sendMessage"),
    # generic random-looking segments
    ("https://hooks.example/in/9f86d081884c7d659a2feaa0c55ad015/alerts",
     "https://hooks.example/in/***/alerts"),
    # Apprise-style token as host
    ("tgram://123456789:ABCdefGHIjklMNOpqrSTUvwxYZ12345/12345", "tgram://***/12345"),
    # PostgreSQL
    ("postgresql://watcher:s3cret@db.example:5432/watcher?password=x&sslmode=require",
     "postgresql://***:***@db.example:5432/watcher?password=***&sslmode=require"),
    # nothing secret: unchanged, readable
    ("https://www.themoscowtimes.com/rss/news", "https://www.themoscowtimes.com/rss/news"),
    ("https://example.org/2025/02/24/kursk-evacuation-begins-2025",
     "https://example.org/2025/02/24/kursk-evacuation-begins-2025"),
    ("http://127.0.0.1:9000/hook", "http://127.0.0.1:9000/hook"),
    ("not a url", "not a url"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(("text", "masked"), [
    (f"channel 'ops': POST {SLACK} failed: ClientConnectorError",
     "channel 'ops': POST https://hooks.slack.com/services/***/***/*** failed: "
     "ClientConnectorError"),
    ("InvalidURL('https://u:pw@h.example/x?sig=123')",
     "InvalidURL('https://***:***@h.example/x?sig=***')"),
    ("two: http://a:b@one.example/ and <https://two.example/?key=k>",
     "two: http://***:***@one.example/ and <https://two.example/?key=***>"),
    ("no urls here: password hunter2", "no urls here: password hunter2"),
    ("", ""),
])
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(("piece", "random"), [
    ("abcdEFGH1234ijklMNOP5678", True),
    ("9f86d081884c7d659a2feaa0c55ad015", True),
    ("Zx9_aB3cD4eF5gH6-iJ7kL8", True),
    ("kursk-evacuation-begins", False),   # letters only
    ("2025-02-24-kursk-evacuation", False),  # a slug of words and numbers
    ("20250224100000000", False),          # digits only
    ("abc123", False),                      # too short
])
def test_looks_random(piece: str, random: bool) -> None:
    assert looks_random(piece) is random


@pytest.mark.parametrize(("url", "text", "masked"), [
    ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123456",
     "bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw chat -100123456 failed",
     "bot ***:*** chat *** failed"),
    ("mailto://bob:hunter22@mail.example", "login with hunter22 at mail.example refused",
     "login with *** at mail.example refused"),
    ("ntfy://ntfy.example/alerts", "ntfy.example said 500", "ntfy.example said 500"),
])
def test_known_secret_url_fragments_are_masked_wherever_quoted(url: str, text: str,
                                                                masked: str) -> None:
    assert mask_fragments(text, secret_fragments(url)) == masked
