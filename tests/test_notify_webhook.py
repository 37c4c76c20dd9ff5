"""Webhook sender against a real local aiohttp receiver."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from servers import HOST, Reply, WebhookReceiver, free_port
from test_outbox import clock, owe
from test_render import FEED_SECRETS, T0, credentialed_alert, make_alert

from watcher.config import WebhookChannel
from watcher.model import Outlet
from watcher.notify import PermanentDeliveryError, TemporaryDeliveryError, make_sender
from watcher.notify.outbox import Outbox
from watcher.notify.webhook import WebhookSender, secret_parts
from watcher.store import SqliteStore


def channel(url: str, **kw: Any) -> WebhookChannel:
    return WebhookChannel.from_table({"name": "ops-hook", "type": "webhook", "url": url,
                                          "timeout": "5s"} | kw)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_payload_and_headers_match_design(receiver: WebhookReceiver,
                                                session: aiohttp.ClientSession) -> None:
    alert = make_alert(outlets=[Outlet("Other", "Same story", "https://o.example/1")])
    await WebhookSender(channel(receiver.url), session).send([alert], "alert-1")

    [req] = receiver.requests
    assert req.method == "POST" and req.path == "/hook" and req.status == 200
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"].startswith("watcher/")
    assert req.headers["X-Watcher-Delivery"] == "alert-1"
    assert "X-Watcher-Signature" not in req.headers
    assert req.json == {
        "version": 1, "alert_id": "alert-1", "topic": "kursk", "kind": "story",
        "entry": {"title": "Kursk evacuation ordered for border villages",
                  "link": "https://news.example/1", "published": "2025-02-24T10:00:00Z",
                  "summary": "Authorities began the Kursk evacuation of residents on Monday.",
                  "feed": {"name": "Example News", "url": "https://feed.example/rss"}},
        "score": 92.5, "matched": ["Kursk evacuation"],
        "also_reported_by": [{"feed": "Other", "title": "Same story",
                              "link": "https://o.example/1"}],
        "explanation": [
            {"phrase": "Kursk evacuation", "field": "title", "text": "Kursk evacuation",
             "score": 95.0},
            {"phrase": "Kursk evacuation", "field": "summary", "text": "Kursk evacuation",
             "score": 95.0}],
    }


async def test_signature_verifies(session: aiohttp.ClientSession,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHER_TEST_HOOK_SECRET", "k3y")
    async with WebhookReceiver(secret="k3y") as server:
        sender = make_sender(channel(server.url, secret_env="WATCHER_TEST_HOOK_SECRET"),
                             Path("."), session)
        await sender.send([make_alert()], "alert-1")
        [req] = server.requests
    expected = hmac.new(b"k3y", req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Watcher-Signature"] == f"sha256={expected}"
    assert req.signature_ok is True and req.status == 200


async def test_wrong_secret_is_rejected_permanently(session: aiohttp.ClientSession) -> None:
    async with WebhookReceiver(secret="right") as server:
        with pytest.raises(PermanentDeliveryError) as err:
            await WebhookSender(channel(server.url), session, "wrong").send([make_alert()], "a")
        assert "401" in str(err.value) and "bad signature" in str(err.value)
        assert server.requests[0].signature_ok is False


@pytest.mark.parametrize(("retry_after", "expected"), [
    ("7", 7.0), (None, None), ("garbage", None)])
async def test_503_is_temporary_with_retry_after(
        receiver: WebhookReceiver, session: aiohttp.ClientSession,
        retry_after: str | None, expected: float | None) -> None:
    receiver.script(Reply(503, retry_after=retry_after, body="down for maintenance"))
    with pytest.raises(TemporaryDeliveryError) as err:
        await WebhookSender(channel(receiver.url), session).send([make_alert()], "alert-1")
    assert err.value.retry_after == expected
    assert "503" in str(err.value) and receiver.url in str(err.value)
    assert "down for maintenance" in str(err.value)


async def test_retry_after_http_date(receiver: WebhookReceiver,
                                     session: aiohttp.ClientSession) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    receiver.script(Reply(429, retry_after=format_datetime(when, usegmt=True)))
    with pytest.raises(TemporaryDeliveryError) as err:
        await WebhookSender(channel(receiver.url), session).send([make_alert()], "alert-1")
    assert err.value.retry_after is not None and 0 < err.value.retry_after <= 3600


@pytest.mark.parametrize("status", [400, 404, 410, 422])
async def test_other_4xx_is_permanent(receiver: WebhookReceiver,
                                      session: aiohttp.ClientSession, status: int) -> None:
    receiver.script(Reply(status, body="no such hook " + "x" * 1000))
    with pytest.raises(PermanentDeliveryError) as err:
        await WebhookSender(channel(receiver.url), session).send([make_alert()], "alert-1")
    assert f"HTTP {status}" in str(err.value) and "no such hook" in str(err.value)
    assert len(str(err.value)) < 400


async def test_redirect_is_not_followed(receiver: WebhookReceiver,
                                        session: aiohttp.ClientSession) -> None:
    receiver.script(Reply(301, headers={"Location": "http://127.0.0.1:1/elsewhere"}))
    with pytest.raises(PermanentDeliveryError) as err:
        await WebhookSender(channel(receiver.url), session).send([make_alert()], "alert-1")
    assert "http://127.0.0.1:1/elsewhere" in str(err.value)
    assert len(receiver.requests) == 1


async def test_timeout_is_temporary(receiver: WebhookReceiver,
                                    session: aiohttp.ClientSession) -> None:
    receiver.script(Reply(200, delay=30))
    with pytest.raises(TemporaryDeliveryError) as err:
        await WebhookSender(channel(receiver.url, timeout="0.3s"), session).send(
            [make_alert()], "alert-1")
    assert "timed out" in str(err.value)


async def test_connection_refused_is_temporary(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(TemporaryDeliveryError) as err:
        await WebhookSender(channel(url), session).send([make_alert()], "alert-1")
    assert url in str(err.value)


async def test_retries_reach_receiver_once(receiver: WebhookReceiver,
                                           session: aiohttp.ClientSession) -> None:
    receiver.script(503, 503, 200)
    sender = WebhookSender(channel(receiver.url), session)
    for _ in range(2):
        with pytest.raises(TemporaryDeliveryError):
            await sender.send([make_alert()], "alert-1")
    await sender.send([make_alert()], "alert-1")
    await sender.send([make_alert()], "alert-1")  # a retry after a lost 200
    assert [r.status for r in receiver.requests] == [503, 503, 200, 200]
    assert receiver.unique_deliveries == ["alert-1"]
    assert receiver.duplicates == ["alert-1"]
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1  # identical bytes on every attempt


async def test_digest_of_three_is_one_request(receiver: WebhookReceiver,
                                              session: aiohttp.ClientSession) -> None:
    alerts = [make_alert(i, published=T0 + timedelta(hours=i)) for i in (1, 2, 3)]
    await WebhookSender(channel(receiver.url), session).send(alerts, "digest-1")
    [req] = receiver.requests
    assert req.headers["X-Watcher-Delivery"] == "digest-1"
    assert req.json["version"] == 1 and req.json["digest"] is True
    assert req.json["topic"] == "kursk" and req.json["count"] == 3
    assert [a["alert_id"] for a in req.json["alerts"]] == ["alert-3", "alert-2", "alert-1"]
    assert set(req.json["alerts"][0]) == {"alert_id", "topic", "kind", "entry", "score",
                                          "matched", "also_reported_by", "explanation"}


async def test_slack_and_discord_formats(receiver: WebhookReceiver,
                                         session: aiohttp.ClientSession) -> None:
    alerts = [make_alert(i) for i in range(3)]
    await WebhookSender(channel(receiver.url, format="slack"), session).send(alerts, "d-1")
    await WebhookSender(channel(receiver.url, format="discord"), session).send(alerts, "d-2")
    slack, discord = (r.json for r in receiver.requests)
    assert slack["text"] == "[watcher] kursk: 3 new stories"
    assert "<https://news.example/1|Kursk evacuation" in json.dumps(slack["blocks"])
    assert discord["content"].startswith("\\[watcher\\] 3 new stories")
    assert len(discord["content"]) <= 2000


def test_receiver_in_a_thread_for_sync_callers() -> None:
    with WebhookReceiver() as server:
        server.script(Reply(503, retry_after="1"))
        for _ in range(2):
            request = urllib.request.Request(server.url, data=b'{"a": 1}', method="POST",
                                             headers={"X-Watcher-Delivery": "x"})
            try:
                urllib.request.urlopen(request, timeout=5).close()
            except urllib.error.HTTPError as exc:
                assert exc.code == 503 and exc.headers["Retry-After"] == "1"
        [ok] = server.wait_for(1)
    assert ok.json == {"a": 1} and server.unique_deliveries == ["x"]


async def test_receiver_down_then_up(receiver: WebhookReceiver,
                                     session: aiohttp.ClientSession) -> None:
    sender = WebhookSender(channel(receiver.url), session)
    await receiver.stop()
    with pytest.raises(TemporaryDeliveryError):
        await sender.send([make_alert()], "alert-1")
    await receiver.start()
    await sender.send([make_alert()], "alert-1")
    assert receiver.unique_deliveries == ["alert-1"]


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize("fmt", ["json", "slack", "discord"])
async def test_a_credentialed_feed_url_is_sent_masked(receiver: WebhookReceiver,
                                                      session: aiohttp.ClientSession,
                                                      fmt: str) -> None:
    await WebhookSender(channel(receiver.url, format=fmt), session).send(
        [credentialed_alert()], "alert-9")
    [req] = receiver.requests
    sent = req.body.decode()
    assert "intranet.example" in sent
    for secret in FEED_SECRETS:
        assert secret not in sent


HOOK_PATH = "/hooks/T000/B000/XXXXSECRET"
HOOK_SECRETS = ("XXXXSECRET", "MY%2BAPIKEY", "MY+APIKEY", "hookuser", "hunter2pw")


@contextlib.asynccontextmanager
async def echoing_receiver() -> AsyncIterator[str]:
    """A receiver answering 500 with the request's path and query, raw and decoded, as
    frameworks' "Cannot POST /path" pages do; yields its base URL."""
    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"Cannot {request.method} {request.raw_path} "
                            f"(path {request.path}, query {dict(request.query)})")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, HOST, port).start()
    try:
        yield f"http://{HOST}:{port}"
    finally:
        await runner.cleanup()


async def test_an_error_body_echoing_the_url_stores_and_logs_no_secret(
        tmp_path: Path, session: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    try:
        async with echoing_receiver() as base:
            base = base.replace("://", "://hookuser:hunter2pw@")
            url = f"{base}{HOOK_PATH}?apikey=MY%2BAPIKEY"
            sender = make_sender(channel(url), Path("."), session)
            await owe(store, "ops-hook", 1)
            assert await Outbox(store, {"ops-hook": sender}, clock=clock).deliver_due() == 0
        [retrying] = await store.alert_history(status="retrying")
    finally:
        await store.close()
    stored = retrying.last_error or ""
    assert "HTTP 500" in stored and "Cannot POST /hooks/T000/B000/***" in stored
    assert HOST in stored
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records
                        if r.name != "aiohttp.access")  # the receiver's own log: not ours
    assert "HTTP 500" in logged
    for secret in HOOK_SECRETS:
        assert secret not in stored, secret
        assert secret not in logged, secret


async def test_a_secret_cut_short_where_the_excerpt_is_read_is_masked(
        receiver: WebhookReceiver, session: aiohttp.ClientSession) -> None:
    """An indented error page: the token straddles the bytes read, the rest is blank."""
    url = f"{receiver.url}/XXXXSECRET"
    page = "<pre>Cannot POST"
    receiver.script(Reply(500, body=page + " " * (800 - len(page) - 7) + "/XXXXSECRET</pre>"))
    with pytest.raises(TemporaryDeliveryError) as err:
        await WebhookSender(channel(url), session).send([make_alert()], "alert-1")
    assert str(err.value).endswith("HTTP 500: <pre>Cannot POST /***")
    assert "XXXXS" not in str(err.value)


@pytest.mark.parametrize(("url", "secret", "public"), [
    (f"https://hooks.example{HOOK_PATH}?apikey=MY%2BAPIKEY&v=2",
     {"XXXXSECRET", "MY%2BAPIKEY", "MY+APIKEY"}, {"hooks.example", "apikey", "hooks", "2"}),
    ("http://u:pw-longer@localhost:8080/in?key=abc", {"pw-longer", "abc"},
     {"localhost", "8080", "key", "in"}),
])
def test_secret_parts_of_a_webhook_url(url: str, secret: set[str], public: set[str]) -> None:
    parts = set(secret_parts(url))
    assert secret <= parts and not public & parts
