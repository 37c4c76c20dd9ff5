"""Email sender against a real local SMTP server (aiosmtpd), plain and TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from servers import LocalCA, SmtpSink, free_port
from test_render import T0, make_alert

from watcher.config import EmailChannel
from watcher.model import Outlet
from watcher.notify import (
    PermanentDeliveryError,
    TemporaryDeliveryError,
    make_sender,
)
from watcher.notify.email import EmailSender


def channel(port: int, **kw: Any) -> EmailChannel:
    data = {"name": "desk-email", "type": "email", "to": ["desk@example.org"],
            "from": "watcher@example.org", "host": "127.0.0.1", "port": port, "timeout": "5s"}
    return EmailChannel.from_table(data | kw)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    pytest.importorskip("trustme", reason="TLS tests need trustme (test extra)")
    return LocalCA()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_alert_email_arrives_multipart_and_escaped(sink: SmtpSink) -> None:
    alert = make_alert(title="Kursk evacuation <script>alert(1)</script>",
                       outlets=[Outlet("Other Feed", "Same story", "https://o.example/1")])
    await EmailSender(channel(sink.port)).send([alert], "alert-1")

    [mail] = sink.messages
    assert mail.rcpt_tos == ["desk@example.org"]
    assert mail.mail_from == "watcher@example.org"
    assert not mail.authenticated
    assert mail.message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.message.iter_parts()] == ["text/plain",
                                                                          "text/html"]
    assert mail.subject == "[watcher] kursk: Kursk evacuation <script>alert(1)</script>"
    assert mail.message_id == "<alert-1@watcher.invalid>"
    html, text = mail.part("html"), mail.part("plain")
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<a href="https://news.example/1"><mark>Kursk evacuation</mark>' in html
    for needle in ("https://news.example/1", "Example News", "2025-02-24 10:00 UTC",
                   "Score: 92.5", "Also reported by:", "Other Feed: Same story"):
        assert needle in text


async def test_digest_of_three_is_one_message_newest_first(sink: SmtpSink) -> None:
    alerts = [make_alert(i, published=T0 + timedelta(hours=i)) for i in (1, 2, 3)]
    await EmailSender(channel(sink.port)).send(alerts, "digest-1")

    [mail] = sink.messages
    assert mail.subject == "[watcher] kursk: 3 new stories"
    assert mail.message_id == "<digest-1@watcher.invalid>"
    text = mail.part("plain")
    positions = [text.index(f"https://news.example/{i}") for i in (3, 2, 1)]
    assert positions == sorted(positions)


async def test_451_is_temporary_and_retry_keeps_message_id(sink: SmtpSink) -> None:
    sink.fail_next("451 4.3.0 try later")
    sender = EmailSender(channel(sink.port))
    with pytest.raises(TemporaryDeliveryError) as err:
        await sender.send([make_alert()], "alert-1")
    assert err.value.channel == "desk-email"
    assert "451" in str(err.value) and f"127.0.0.1:{sink.port}" in str(err.value)
    assert sink.messages == []

    await sender.send([make_alert()], "alert-1")
    assert [m.message_id for m in sink.messages] == ["<alert-1@watcher.invalid>"]


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_550_is_permanent(sink: SmtpSink, stage: str) -> None:
    sink.fail_next("550 5.1.1 no such user", stage=stage)  # type: ignore[arg-type]
    with pytest.raises(PermanentDeliveryError) as err:
        await EmailSender(channel(sink.port)).send([make_alert()], "alert-1")
    assert "550" in str(err.value) and "no such user" in str(err.value)


async def test_connection_refused_is_temporary() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(TemporaryDeliveryError) as err:
        await EmailSender(channel(port)).send([make_alert()], "alert-1")
    assert f"127.0.0.1:{port}" in str(err.value)


async def test_server_down_then_up(sink: SmtpSink) -> None:
    sender = EmailSender(channel(sink.port))
    sink.stop()
    with pytest.raises(TemporaryDeliveryError):
        await sender.send([make_alert()], "alert-1")
    sink.start()
    await sender.send([make_alert()], "alert-1")
    assert len(sink.messages) == 1


async def test_silent_server_times_out_as_temporary() -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TemporaryDeliveryError) as err:
            await EmailSender(channel(port, timeout="0.3s")).send([make_alert()], "alert-1")
        assert "timed out" in str(err.value)
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_security_none_never_upgrades(ca: LocalCA) -> None:
    # The server insists on STARTTLS; a "none" channel must not quietly upgrade.
    with SmtpSink(security="starttls", ca=ca) as tls_sink:
        with pytest.raises(PermanentDeliveryError) as err:
            await EmailSender(channel(tls_sink.port)).send([make_alert()], "alert-1")
        assert "530" in str(err.value)
        assert tls_sink.messages == []


async def test_starttls_trusting_ca_via_ssl_cert_file(
        ca: LocalCA, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))  # what a daemon subprocess would do
    with SmtpSink(security="starttls", ca=ca) as tls_sink:
        sender = make_sender(channel(tls_sink.port, security="starttls"), Path("."), session)
        await sender.send([make_alert()], "alert-1")
        await sender.aclose()
        assert [m.message_id for m in tls_sink.messages] == ["<alert-1@watcher.invalid>"]


async def test_implicit_tls_with_auth(ca: LocalCA, session: aiohttp.ClientSession,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHER_TEST_SMTP_PASSWORD", "s3cret")
    with SmtpSink(security="tls", ca=ca, auth={"watcher": "s3cret"}) as tls_sink:
        ch = channel(tls_sink.port, security="tls", username="watcher",
                     password_env="WATCHER_TEST_SMTP_PASSWORD")
        sender = make_sender(ch, Path("."), session)
        assert isinstance(sender, EmailSender)
        sender.tls_context = ca.client_context()
        await sender.send([make_alert()], "alert-1")
        assert [m.authenticated for m in tls_sink.messages] == [True]

        sender.password = "wrong"
        with pytest.raises(PermanentDeliveryError) as err:
            await sender.send([make_alert()], "alert-2")
        assert "535" in str(err.value) and "password" in str(err.value)


async def test_untrusted_certificate_is_temporary(ca: LocalCA) -> None:
    with SmtpSink(security="tls", ca=ca) as tls_sink, pytest.raises(TemporaryDeliveryError):
        await EmailSender(channel(tls_sink.port, security="tls")).send([make_alert()], "a")

