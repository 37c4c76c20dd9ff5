"""Apprise channel: real Apprise json:// deliveries to a local HTTP receiver (issue 10)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from conftest import ConfigWriter
from feedserver import FeedServer, Item
from servers import Reply, WebhookReceiver, free_port
from test_render import T0, make_alert

from watcher.config import AppriseChannel, ConfigError
from watcher.daemon import run_once
from watcher.model import Outlet
from watcher.notify import PermanentDeliveryError, TemporaryDeliveryError, make_sender
from watcher.notify.apprise import AppriseSender, redact, secret_fragments, split_urls
from watcher.store import SqliteStore

SECRET = "S3cretPassw0rdXYZ"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def json_url(receiver: WebhookReceiver, user: str = "bot") -> str:
    """Apprise's json:// posts {"title", "message", "type", ...} to http://host:port/path."""
    return f"json://{user}:{SECRET}@127.0.0.1:{receiver.port}{receiver.path}"


def sender(monkeypatch: pytest.MonkeyPatch, session: aiohttp.ClientSession,
           *urls: str) -> AppriseSender:
    monkeypatch.setenv("WATCHER_TEST_APPRISE", "\n".join(urls))
    channel = AppriseChannel.from_table(
        {"name": "chat", "type": "apprise", "urls_env": "WATCHER_TEST_APPRISE"})
    made = make_sender(channel, Path("."), session)
    assert isinstance(made, AppriseSender)
    return made


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root_log() -> Iterator[_Collect]:
    """What reaches the root logger's handlers, i.e. the daemon's log output, at debug.

    (Not caplog: pytest also hooks loggers that do not propagate, which watcher's handlers
    never see.)"""
    handler, root = _Collect(), logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def leaked(log: _Collect, secret: str) -> list[str]:
    return [r.getMessage() for r in log.records
            if secret in r.getMessage() or secret in str(r.__dict__)]


async def test_one_alert_carries_topic_title_link_feed_matched_and_outlets(
        webhook: WebhookReceiver, session: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    alert = make_alert(outlets=[Outlet("Other Wire", "Kursk villages evacuated",
                                       "https://other.example/k")])
    await sender(monkeypatch, session, json_url(webhook)).send([alert], "alert-1")
    [request] = webhook.requests
    body = request.json
    assert body["title"] == "[watcher] kursk: Kursk evacuation ordered for border villages"
    message = body["message"]
    for part in ("Kursk evacuation ordered for border villages", "https://news.example/1",
                 "Feed: Example News", "Topic: kursk", 'Matched: "Kursk evacuation"',
                 "Also reported by: Other Wire: Kursk villages evacuated",
                 "https://other.example/k"):
        assert part in message
    assert request.headers.get("Authorization", "").startswith("Basic ")  # user:password used


async def test_digest_lists_each_story_once_newest_first(
        webhook: WebhookReceiver, session: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    older = make_alert(1, title="Kursk evacuation: first buses leave", published=T0)
    newer = make_alert(2, title="Kursk evacuation widened to 28 villages",
                       published=T0 + timedelta(hours=2))
    await sender(monkeypatch, session, json_url(webhook)).send([older, newer, older], "digest-1")
    [request] = webhook.requests
    message = request.json["message"]
    assert request.json["title"] == "[watcher] kursk: 2 new stories"
    assert message.startswith("2 new stories (kursk), newest first.")
    assert message.count("first buses leave") == 1
    assert message.index("28 villages") < message.index("first buses leave")


async def test_server_error_is_temporary_and_names_no_secret(
        webhook: WebhookReceiver, session: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch, root_log: _Collect) -> None:
    webhook.script(503)
    with pytest.raises(TemporaryDeliveryError) as err:
        await sender(monkeypatch, session, json_url(webhook)).send([make_alert()], "a1")
    assert "JSON #1" in str(err.value) and "503" in str(err.value)
    assert SECRET not in str(err.value)
    assert leaked(root_log, SECRET) == []
    assert any(r.name.startswith("urllib3") for r in root_log.records) is False


async def test_client_error_is_permanent(webhook: WebhookReceiver,
                                         session: aiohttp.ClientSession,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    webhook.script(Reply(401, body="bad token"))
    with pytest.raises(PermanentDeliveryError) as err:
        await sender(monkeypatch, session, json_url(webhook)).send([make_alert()], "a1")
    assert "401" in str(err.value)


async def test_a_redirect_is_not_followed(webhook: WebhookReceiver,
                                          session: aiohttp.ClientSession,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A chat service answering 307 elsewhere (an internal address) gets no alert sent on
    there: the delivery fails, as the webhook channel's does."""
    async with WebhookReceiver() as internal:
        webhook.script(Reply(307, headers={"Location": f"{internal.url}/internal"}))
        with pytest.raises(PermanentDeliveryError, match="307"):
            await sender(monkeypatch, session, json_url(webhook)).send([make_alert()], "a1")
        assert internal.requests == [] and len(webhook.requests) == 1


async def test_rate_limit_and_refused_connection_are_temporary(
        webhook: WebhookReceiver, session: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    webhook.script(429)
    with pytest.raises(TemporaryDeliveryError):
        await sender(monkeypatch, session, json_url(webhook)).send([make_alert()], "a1")
    closed = f"json://127.0.0.1:{free_port()}/hook"
    with pytest.raises(TemporaryDeliveryError) as err:
        await sender(monkeypatch, session, closed).send([make_alert()], "a2")
    assert "Connection error" in str(err.value)


async def test_retry_after_partial_failure_goes_only_to_the_target_that_missed(
        webhook: WebhookReceiver, session: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other = WebhookReceiver(path="/other")
    await other.start()
    try:
        other.script(502)
        chat = sender(monkeypatch, session, json_url(webhook), json_url(other))
        with pytest.raises(TemporaryDeliveryError) as err:
            await chat.send([make_alert()], "alert-1")
        assert "1 of 2 targets" in str(err.value) and "1 already delivered" in str(err.value)
        await chat.send([make_alert()], "alert-1")  # the outbox's retry, same delivery id
        assert len(webhook.requests) == 1
        assert [r.status for r in other.requests] == [502, 200]
        await chat.send([make_alert()], "alert-2")  # a new alert goes to both again
        assert len(webhook.requests) == 2 and len(other.requests) == 3
    finally:
        await other.stop()


@pytest.mark.parametrize("bad", ["nosuch://tok-SECRET-123456/chat", "just-a-SECRET-token"])
async def test_invalid_url_is_a_config_error_that_never_quotes_it(
        bad: str, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
        root_log: _Collect) -> None:
    with pytest.raises(ConfigError) as err:
        sender(monkeypatch, session, "json://127.0.0.1:9/ok", bad)
    text = str(err.value)
    assert "channel 'chat'" in text and "URL #2" in text and "WATCHER_TEST_APPRISE" in text
    assert "SECRET" not in text
    assert leaked(root_log, "SECRET") == []


async def test_empty_secret_is_a_config_error(session: aiohttp.ClientSession,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="holds no Apprise URLs"):
        sender(monkeypatch, session, "# only a comment")


def test_urls_split_by_line_space_and_comma_but_not_inside_a_url() -> None:
    text = """
    # desk chat
    tgram://123456:ABCdef/987 , ntfy://ntfy.example/alerts
    mailto://u:p@mail.example/?to=a@x.example,b@x.example slack://T1/B2/C3,discord://1/2
    """
    assert split_urls(text) == [
        "tgram://123456:ABCdef/987", "ntfy://ntfy.example/alerts",
        "mailto://u:p@mail.example/?to=a@x.example,b@x.example", "slack://T1/B2/C3",
        "discord://1/2"]


def test_redaction_covers_tokens_in_host_path_and_password() -> None:
    url = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123456"
    reason = f"failed for {url} and bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw at -100123456"
    clean = redact(reason, secret_fragments(url))
    assert "AAHdq" not in clean and "123456789" not in clean and "-100123456" not in clean
    pw = redact("login with hunter22 at mail.example refused", secret_fragments(
        "mailto://bob:hunter22@mail.example"))
    assert pw == "login with *** at mail.example refused"


def apprise_config(feed_url: str, channel_env: str) -> str:
    return f"""
[watcher]
state = "state.db"
first_poll = "alert"

[[feeds]]
url = "{feed_url}"
name = "Wire"

[[topics]]
name = "kursk-evacuation"
any = ["Kursk evacuation"]
channels = ["chat"]

[[channels]]
name = "chat"
type = "apprise"
urls_env = "{channel_env}"
"""


async def test_outbox_retries_fails_and_requeues_apprise_alerts_like_any_channel(
        feed_server: FeedServer, webhook: WebhookReceiver, write_config: ConfigWriter,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHER_CHAT_URLS", json_url(webhook))
    url = feed_server.set_feed("wire.xml", [Item("Kursk evacuation ordered for 28 villages",
                                                 "https://wire.example/k", "k-1", "Buses.",
                                                 T0)])
    config = write_config(apprise_config(url, "WATCHER_CHAT_URLS"))
    webhook.script(503, 401)
    assert await run_once(config) == 1  # 503: owed, retried later
    store = SqliteStore(config.state_location())
    await store.open()
    store.db.execute("UPDATE alerts SET next_attempt_at = 0")  # as time passing would
    await store.close()
    assert await run_once(config) == 0  # 401: failed, kept for inspection
    store = SqliteStore(config.state_location())
    await store.open()
    counts = (await store.channel_counts())["chat"]
    assert (counts.owed, counts.failed) == (0, 1)
    [failed] = await store.failed_alerts(10)
    assert "401" in failed.error and SECRET not in failed.error
    assert await store.requeue_failed("chat", T0) == 1  # what `watcher retry` does
    await store.close()
    assert await run_once(config) == 0
    assert [r.status for r in webhook.requests] == [503, 401, 200]
    assert "Kursk evacuation ordered for 28 villages" in webhook.requests[-1].json["message"]
