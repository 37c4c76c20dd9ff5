"""Real local servers for tests and scripts: an SMTP sink and a webhook receiver.

Both listen on 127.0.0.1 on a free port (kept across stop/start, so "down then up" works).

SmtpSink (aiosmtpd) ALWAYS runs in its own background thread with its own event loop
(that is how aiosmtpd's Controller works). `start()`, `stop()` and `restart()` are plain
calls that return within milliseconds, so they are fine both in async pytest tests and in
sync code; `with SmtpSink() as sink:` starts and stops it.

WebhookReceiver (aiohttp) runs either
  * on the caller's event loop:  `await receiver.start()` ... `await receiver.stop()`
    (or `async with WebhookReceiver() as r:`) — use this inside pytest-asyncio tests;
  * in a background thread:      `receiver.start_in_thread()` ... `receiver.stop_thread()`
    (or `with WebhookReceiver() as r:`) — use this from sync code, e.g. when a test
    spawns a daemon subprocess.

Recorded data (`sink.messages`, `receiver.requests`) is appended under a lock;
`wait_for(n, timeout)` blocks until n items arrived (`await wait_for_async(...)` from async
code). TLS needs `trustme` (LocalCA): the sink serves STARTTLS or implicit TLS with a
certificate for 127.0.0.1/localhost; clients trust it via `ca.client_context()` or by
pointing SSL_CERT_FILE at `ca.ca_file` (what a daemon subprocess would do).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.message
import email.policy
import hashlib
import hmac
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class LocalCA:
    """A throwaway CA (trustme) and a server certificate for 127.0.0.1 and localhost."""

    def __init__(self) -> None:
        import trustme

        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert(HOST, "localhost")
        self.ca_file = Path(tempfile.mkdtemp(prefix="watcher-ca-")) / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx


class _Recorder:
    """Thread-safe list with blocking waits."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._cond = threading.Condition()

    def append(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def snapshot(self) -> list[Any]:
        with self._cond:
            return list(self._items)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def wait_for(self, count: int, timeout: float, pred: Callable[[Any], bool]) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(found := [i for i in self._items if pred(i)]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {count} items within {timeout}s, "
                                       f"got {len(found)}")
                self._cond.wait(left)
            return found


# ---------------------------------------------------------------- SMTP


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: email.message.EmailMessage
    authenticated: bool = False

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def part(self, subtype: str) -> str:
        """The decoded text/<subtype> body ("plain" or "html")."""
        body = self.message.get_body(preferencelist=(subtype,))
        return "" if body is None else str(body.get_content())  # type: ignore[attr-defined]


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if reply := self.sink._take_failure("rcpt"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if reply := self.sink._take_failure("data"):
            return reply
        raw = bytes(envelope.original_content or envelope.content)
        for marker, refusal in self.sink.content_filter.items():  # a relay's content filter
            if marker in raw:
                return refusal
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.sink._received.append(ReceivedMail(
            envelope.mail_from, list(envelope.rcpt_tos), raw, msg,  # type: ignore[arg-type]
            bool(session.authenticated)))
        return "250 OK queued"


class SmtpSink:
    """aiosmtpd server recording every accepted message; see the module docstring."""

    def __init__(self, *, port: int | None = None,
                 security: Literal["none", "starttls", "tls"] = "none",
                 ca: LocalCA | None = None, auth: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.host = HOST
        self.security = security
        self.ca = ca if ca is not None or security == "none" else LocalCA()
        self.auth = auth
        self._received = _Recorder()
        self._failures: list[tuple[str, str]] = []  # (stage, reply)
        # a message holding a key (bytes) is refused at DATA with its value as the reply
        self.content_filter: dict[bytes, str] = {}
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[ReceivedMail]:
        return self._received.snapshot()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def fail_next(self, reply: str, count: int = 1,
                  stage: Literal["rcpt", "data"] = "data") -> None:
        """Answer the next `count` RCPT or DATA commands with `reply` (e.g. '451 try later')."""
        with self._lock:
            self._failures.extend([(stage, reply)] * count)

    def _take_failure(self, stage: str) -> str | None:
        with self._lock:
            for i, (s, reply) in enumerate(self._failures):
                if s == stage:
                    del self._failures[i]
                    return reply
        return None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and self.auth is not None
              and self.auth.get(data.login.decode()) == data.password.decode())
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd replies 235/535

    def _kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"server_hostname": "watcher-test-sink"}
        if self.security == "tls":
            kw["ssl_context"] = self.ca.server_context()  # type: ignore[union-attr]
        elif self.security == "starttls":
            kw["tls_context"] = self.ca.server_context()  # type: ignore[union-attr]
            kw["require_starttls"] = True
        if self.auth is not None:
            # AUTH is offered (also over implicit TLS, which aiosmtpd doesn't count as TLS)
            # but not enforced; ReceivedMail.authenticated tells whether the client logged in.
            kw.update(authenticator=self._authenticate, auth_require_tls=False)
        return kw

    def start(self) -> SmtpSink:
        if self._controller is None:
            controller = Controller(_SinkHandler(self), hostname=self.host, port=self.port,
                                    **self._kwargs())
            controller.start()
            self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        return self._received.wait_for(count, timeout, lambda _: True)

    async def wait_for_async(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        return await asyncio.to_thread(self.wait_for, count, timeout)

    def clear(self) -> None:
        self._received.clear()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- webhook


@dataclass
class Reply:
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0  # seconds before answering (cut short when the server stops)
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int  # what the receiver answered
    delivery_id: str | None
    signature_ok: bool | None  # None when the receiver has no secret


class WebhookReceiver:
    """aiohttp server recording requests; see the module docstring."""

    def __init__(self, *, secret: str | None = None, port: int | None = None,
                 path: str = "/hook", reject_bad_signatures: bool = True) -> None:
        self.port = port or free_port()
        self.path = path
        self.secret = secret
        self.reject_bad_signatures = reject_bad_signatures
        self._received = _Recorder()
        self._script: list[Reply] = []
        # a request whose body holds a key (bytes) gets its reply, whatever the script says
        self.content_filter: dict[bytes, Reply] = {}
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"

    def script(self, *replies: int | Reply) -> None:
        """Answer the next requests with these statuses/replies, then 200 again."""
        with self._lock:
            self._script.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self._received.snapshot()

    @property
    def accepted(self) -> list[ReceivedRequest]:
        return [r for r in self.requests if 200 <= r.status < 300]

    @property
    def unique_deliveries(self) -> list[str]:
        """Distinct X-Watcher-Delivery ids answered 2xx, in arrival order."""
        return list(dict.fromkeys(r.delivery_id or "" for r in self.accepted))

    @property
    def duplicates(self) -> list[str]:
        """Delivery ids answered 2xx again after a first 2xx (one entry per repeat)."""
        seen: set[str] = set()
        dupes = []
        for r in self.accepted:
            key = r.delivery_id or ""
            if key in seen:
                dupes.append(key)
            seen.add(key)
        return dupes

    def _check_signature(self, body: bytes, header: str | None) -> bool | None:
        if self.secret is None:
            return None
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return header is not None and hmac.compare_digest(expected, header)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._script.pop(0) if self._script else Reply()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signature_ok = self._check_signature(body, request.headers.get("X-Watcher-Signature"))
        reply = next((r for key, r in self.content_filter.items() if key in body), None) \
            or self._next_reply()
        if signature_ok is False and self.reject_bad_signatures:
            reply = Reply(401, body="bad signature")
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        self._received.append(ReceivedRequest(
            request.method, request.path, dict(request.headers), body, parsed, reply.status,
            request.headers.get("X-Watcher-Delivery"), signature_ok))
        if reply.delay and self._release is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), reply.delay)
        headers = dict(reply.headers)
        if reply.retry_after is not None:
            headers["Retry-After"] = reply.retry_after
        return web.Response(status=reply.status, text=reply.body, headers=headers)

    async def start(self) -> WebhookReceiver:
        """Serve on the running event loop."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._release = asyncio.Event()
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> WebhookReceiver:
        """Serve on a private event loop in a daemon thread (for sync callers)."""
        ready = threading.Event()
        errors: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop_thread(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None

    def wait_for(self, count: int = 1, timeout: float = 10.0,
                 accepted_only: bool = True) -> list[ReceivedRequest]:
        def pred(r: ReceivedRequest) -> bool:
            return not accepted_only or 200 <= r.status < 300
        return self._received.wait_for(count, timeout, pred)

    async def wait_for_async(self, count: int = 1, timeout: float = 10.0,
                             accepted_only: bool = True) -> list[ReceivedRequest]:
        return await asyncio.to_thread(self.wait_for, count, timeout, accepted_only)

    def clear(self) -> None:
        self._received.clear()

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __enter__(self) -> WebhookReceiver:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

