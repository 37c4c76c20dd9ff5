"""Webhook channel: POST one JSON document per alert or digest.

Redirects are not followed: a 3xx is a permanent failure naming the new location, since
following would re-send a signed payload to another URL (and 301/302/303 turn POST into
GET); the channel's url should be updated instead.

The channel's URL may hold its token in the path (`/hooks/T…/B…/X…`), the query
(`?apikey=...`) or the userinfo, and receivers echo them ("Cannot POST /hooks/..."): every
error (stored, logged, shown in the desk) is scrubbed of the URL's own `secret_parts`,
in whatever form the receiver quotes them, besides the masking every error gets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from watcher.config import WebhookChannel, resolve_secret
from watcher.http import USER_AGENT, parse_retry_after
from watcher.model import AlertMessage
from watcher.notify.base import (
    DeliveryError,
    PermanentDeliveryError,
    Progress,
    TemporaryDeliveryError,
)
from watcher.notify.render import one_line, webhook_payload
from watcher.redact import MASK, mask_fragments, mask_url, secret_fragments

if TYPE_CHECKING:
    import aiohttp

EXCERPT_CHARS = 200
MIN_SECRET_CHARS = 3  # a shorter query value is no secret, and masking it would garble


def sign(secret: str, body: bytes) -> str:
    """The X-Watcher-Signature value: 'sha256=' + hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def encode_body(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _public_parts(url: str) -> tuple[set[str], list[str]]:
    """(what of the URL is never secret: the whole, its host, port and query parameter
    names, each secret piece being masked on its own; its query values)."""
    public = {url, url.partition("://")[2]}
    try:
        parts = urlsplit(url)
        public.update((parts.hostname or "", str(parts.port or "")))
    except ValueError:  # a bad port or IPv6 host: the host is not known
        return public, []
    pairs = [p.partition("=") for p in parts.query.replace(";", "&").split("&") if p]
    public.update(name for name, eq, _ in pairs if eq)
    return public - {""}, [value for _, eq, value in pairs if eq and value]


def secret_parts(url: str) -> tuple[str, ...]:
    """What of a webhook URL may be secret, as its receiver may quote it: the pieces of
    `redact.secret_fragments` but its host, port and parameter names, and every query value
    of MIN_SECRET_CHARS or more; each also percent-decoded and encoded; longest first."""
    public, values = _public_parts(url)
    found = {f for f in secret_fragments(url) if f not in public and f.lower() not in public}
    found.update(values)
    found.update({form for f in found
                  for form in (unquote(f), unquote_plus(f), quote(unquote(f)))})
    return tuple(sorted((f for f in found if len(f) >= MIN_SECRET_CHARS),
                        key=len, reverse=True))


class WebhookSender:
    """POSTs to `url` (the channel's url, or the one read from url_env / url_file);
    errors name it masked (`shown`) and hold none of its `secrets`, since its path or
    query may hold a token."""

    def __init__(self, channel: WebhookChannel, session: aiohttp.ClientSession | None,
                 secret: str = "", url: str = "") -> None:
        self.channel = channel
        self.session = session
        self.secret = secret
        self.url = url or channel.url
        self.secrets = secret_parts(self.url)
        self.shown = self.scrub(mask_url(self.url))

    def scrub(self, text: str) -> str:
        """`text` (an error, a receiver's answer) without the URL's secret parts."""
        return mask_fragments(text, self.secrets)

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-Watcher-Delivery": delivery_id}
        if self.secret:
            headers["X-Watcher-Signature"] = sign(self.secret, body)
        return headers

    async def send(self, messages: Sequence[AlertMessage], delivery_id: str,
                   progress: Progress | None = None) -> None:
        if not messages:
            return
        import aiohttp

        if self.session is None:
            raise RuntimeError(f"channel {self.channel.name!r}: built to be checked, not to send")
        body = encode_body(webhook_payload(self.channel.format, messages, delivery_id))
        timeout = aiohttp.ClientTimeout(total=self.channel.timeout.total_seconds())
        try:
            async with self.session.post(self.url, data=body, timeout=timeout,
                                         headers=self.headers(body, delivery_id),
                                         allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return
                raise await self._status_error(resp)
        except DeliveryError:
            raise
        except TimeoutError as exc:
            raise TemporaryDeliveryError(self.channel.name, f"POST {self.shown} timed "
                                         f"out after {timeout.total:g}s") from exc
        except aiohttp.InvalidURL as exc:
            raise PermanentDeliveryError(self.channel.name,
                                         f"invalid webhook url {self.shown}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TemporaryDeliveryError(self.channel.name, f"POST {self.shown} failed: "
                                         f"{type(exc).__name__}: {self.scrub(str(exc))}") \
                from exc

    async def _status_error(self, resp: aiohttp.ClientResponse) -> DeliveryError:
        status = resp.status
        where = f"POST {self.shown} got HTTP {status}"
        if 300 <= status < 400:
            location = self.scrub(resp.headers.get("Location", "(no Location header)"))
            return PermanentDeliveryError(self.channel.name, f"{where}, a redirect to "
                                          f"{location}; redirects are not followed, set the "
                                          "channel url to the final address")
        excerpt = await _excerpt(resp, self.secrets)
        reason = f"{where}: {excerpt}" if excerpt else where
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            return TemporaryDeliveryError(self.channel.name, reason, retry_after)
        return PermanentDeliveryError(self.channel.name, reason)

    async def aclose(self) -> None:
        return None  # the session belongs to the caller (the notify stage's own)


async def _excerpt(resp: aiohttp.ClientResponse, secrets: tuple[str, ...]) -> str:
    """The start of the response body, one line, without the URL's `secrets`."""
    import aiohttp

    limit = 4 * EXCERPT_CHARS
    try:
        raw = await resp.content.read(limit)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return ""
    text = mask_fragments(raw.decode("utf-8", "replace"), secrets)
    if len(raw) == limit:  # more may follow: a secret may be cut short at the end
        text = _mask_cut_secret(text, secrets)
    return one_line(text, EXCERPT_CHARS)


def _mask_cut_secret(text: str, secrets: tuple[str, ...]) -> str:
    """`text` without the start of a secret that it ends with."""
    for secret in secrets:
        for n in range(len(secret) - 1, MIN_SECRET_CHARS - 1, -1):
            if text.endswith(secret[:n]):
                return text[:-n] + MASK
    return text


def make_webhook_sender(channel: WebhookChannel, base_dir: Path,
                        session: aiohttp.ClientSession | None) -> WebhookSender:
    """Secrets (signing key, and the URL when it comes from url_env / url_file) are read now."""
    secret = resolve_secret(channel.secret_env, channel.secret_file, base_dir)
    url = channel.url or resolve_secret(channel.url_env, channel.url_file, base_dir)
    return WebhookSender(channel, session, secret, url)
