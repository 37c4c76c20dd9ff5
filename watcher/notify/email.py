"""Email channel: one multipart/alternative (text + HTML) message per alert or digest.

security = "none" never upgrades (aiosmtplib's start_tls=None would STARTTLS whenever the
server offers it, so it is passed False); "starttls" requires the upgrade; "tls" is
implicit TLS (usually port 465). Certificates are verified against the system store,
which honours SSL_CERT_FILE; tests can also pass an `ssl.SSLContext`.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING

from watcher.config import EmailChannel, resolve_secret
from watcher.model import AlertMessage
from watcher.notify.base import (
    DeliveryError,
    PermanentDeliveryError,
    Progress,
    TemporaryDeliveryError,
)
from watcher.notify.render import render_email

if TYPE_CHECKING:
    import aiohttp
    import aiosmtplib

log = logging.getLogger(__name__)
# C0/C1 controls, DEL, and the Unicode line/paragraph separators
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_value(text: str) -> str:
    """A header value that cannot become more headers: controls (CR, LF, ...) turn into
    spaces and every RFC 2047 encoded-word opener `=?` is broken up (`= ?`), so no
    Python version's header folder decodes an encoded CR LF into the message
    (CVE-2024-6923: 3.11.7 does). Readable text stays as it was."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text.replace("=?", "= ?")


def message_id(delivery_id: str) -> str:
    """A Message-ID that is the same on every retry, so receivers can drop repeats."""
    safe = "".join(ch if ch.isalnum() or ch in "-._" else "-" for ch in delivery_id)
    return f"<{safe or 'alert'}@watcher.invalid>"


def build_message(channel: EmailChannel, messages: Sequence[AlertMessage],
                  delivery_id: str) -> EmailMessage:
    subject, text, html = render_email(messages)
    msg = EmailMessage()
    msg["Subject"] = header_value(subject)
    msg["From"] = header_value(channel.from_)
    msg["To"] = header_value(", ".join(channel.to))
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id(delivery_id)
    msg["X-Watcher-Delivery"] = header_value(delivery_id)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


class EmailSender:
    def __init__(self, channel: EmailChannel, password: str = "", *,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.channel = channel
        self.password = password
        self.tls_context = tls_context

    @property
    def target(self) -> str:
        return f"{self.channel.host}:{self.channel.port}"

    async def send(self, messages: Sequence[AlertMessage], delivery_id: str,
                   progress: Progress | None = None) -> None:
        if not messages:
            return
        msg = build_message(self.channel, messages, delivery_id)
        try:
            errors, _ = await self._send(msg)
        except Exception as exc:
            raise classify_smtp_error(self.channel.name, self.target, exc) from exc
        for rcpt, response in errors.items():
            log.warning("channel %r: %s refused recipient %s: %s %s", self.channel.name,
                        self.target, rcpt, response.code, response.message)

    async def _send(self, msg: EmailMessage) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        import aiosmtplib  # here: `watcher check` builds senders without connecting

        ch = self.channel
        return await aiosmtplib.send(
            msg, hostname=ch.host, port=ch.port, timeout=ch.timeout.total_seconds(),
            use_tls=ch.security == "tls", start_tls=ch.security == "starttls",
            tls_context=self.tls_context if ch.security != "none" else None,
            username=ch.username or None, password=self.password if ch.username else None)

    async def aclose(self) -> None:
        return None


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}".strip()


def classify_smtp_error(channel: str, target: str, exc: BaseException) -> DeliveryError:
    """4xx replies and network trouble are temporary; 5xx replies and bad settings are not."""
    import aiosmtplib

    where = f"SMTP server {target}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = [(e.code, f"{e.recipient}: {_reply(e.code, e.message)}") for e in exc.recipients]
        text = "; ".join(r for _, r in replies)
        if any(400 <= code < 500 for code, _ in replies):
            return TemporaryDeliveryError(channel, f"{where} deferred recipients: {text}")
        return PermanentDeliveryError(channel, f"{where} rejected all recipients: {text}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = _reply(exc.code, exc.message)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError) and exc.code >= 500:
            return PermanentDeliveryError(channel, f"{where} refused the login (check username"
                                                   f" and password): {reply}")
        if 400 <= exc.code < 500 or exc.code == -1:
            return TemporaryDeliveryError(channel, f"{where} replied {reply}")
        return PermanentDeliveryError(channel, f"{where} rejected the message: {reply}")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return TemporaryDeliveryError(channel, f"{where} timed out: {exc or 'no reply'}")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentDeliveryError(channel, f"{where}: {exc} (check the security setting)")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return TemporaryDeliveryError(channel, f"TLS with {where} failed: {exc}")
    if isinstance(exc, ConnectionError | OSError | aiosmtplib.SMTPException):
        return TemporaryDeliveryError(channel, f"cannot reach {where}: {exc}")
    if isinstance(exc, ValueError):
        return PermanentDeliveryError(channel, f"cannot send via {where}: {exc}")
    return TemporaryDeliveryError(channel, f"sending via {where} failed: "
                                           f"{type(exc).__name__}: {exc}")


def make_email_sender(channel: EmailChannel, base_dir: Path,
                      session: aiohttp.ClientSession | None) -> EmailSender:
    del session  # email does not use HTTP
    password = resolve_secret(channel.password_env, channel.password_file, base_dir)
    return EmailSender(channel, password)
