"""Fetch stage: conditional HTTP GET with limits; file:// for local feeds.

aiohttp is the client: it streams bodies (so the size cap holds before a body is read whole,
also for gzip bombs, since the cap applies to decompressed bytes), pools connections with a
per-host limit, and is the fastest mature asyncio client for thousands of concurrent polls.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from watcher import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"watcher/{__version__} (+https://github.com/watcher-rss/watcher; RSS monitor)"
MAX_REDIRECTS = 5
_PERMANENT = {301, 308}


@dataclass(frozen=True, slots=True)
class Validators:
    """What the server gave us to ask 'has it changed?' next time."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str  # the URL asked for
    status: int  # HTTP status; 0 when no response came (DNS, refused, timeout, too big...)
    body: bytes | None = None
    validators: Validators = Validators()
    content_type: str | None = None
    moved_to: str | None = None  # the new URL after only permanent (301/308) redirects
    retry_after: float | None = None  # seconds, from a 429/503 Retry-After
    error: str | None = None  # why this is not a usable body, for the user

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def ok(self) -> bool:
        return self.error is None and self.body is not None


def body_hash(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Fetcher:
    """Polls URLs politely: global and per-host concurrency, timeouts, a body size cap."""

    def __init__(self, *, timeout: float = 30.0, max_bytes: int = 10 * 1024 * 1024,
                 concurrency: int = 64, per_host: int = 4) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.per_host = per_host
        self._global = asyncio.Semaphore(concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._session: aiohttp.ClientSession | None = None
        self._concurrency = concurrency

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared HTTP session (also used by webhook senders)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._concurrency, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": USER_AGENT},
                auto_decompress=True,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, url: str, validators: Validators = Validators()) -> FetchResult:
        """Fetch a feed; never raises for network or server problems (see FetchResult.error)."""
        if url.startswith("file://"):
            return await asyncio.to_thread(self._read_file, url)
        try:
            host = urlsplit(url).hostname or ""
        except ValueError as exc:
            return FetchResult(url, 0, error=f"invalid URL: {exc}")
        gate = self._hosts.setdefault(host, asyncio.Semaphore(self.per_host))
        async with gate, self._global:  # host first: a queue for one host holds no global slot
            try:
                return await asyncio.wait_for(self._get(url, validators), self.timeout)
            except TimeoutError:
                return FetchResult(url, 0, error=f"no complete response within {self.timeout:g} s"
                                   " (the [watcher] timeout): the server is too slow or stalled")
            except aiohttp.TooManyRedirects as exc:
                last = exc.history[-1].headers.get("Location") if exc.history else None
                return FetchResult(url, 0, error=f"more than {MAX_REDIRECTS} redirects, a redirect"
                                   f" loop?{f' (last to {last})' if last else ''}")
            except aiohttp.InvalidURL as exc:
                return FetchResult(url, 0, error=f"invalid URL: {exc}")
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                return FetchResult(url, 0, error=_describe(exc))

    async def _get(self, url: str, validators: Validators) -> FetchResult:
        headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9,"
                             " text/xml;q=0.9, */*;q=0.5"}
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        async with self.session.get(url, headers=headers, max_redirects=MAX_REDIRECTS) as resp:
            moved = _permanent_target(url, resp)
            base = {"url": url, "status": resp.status, "moved_to": moved}
            if resp.status == 304:  # validators stay, unless the server sent new ones
                return FetchResult(**base, validators=Validators(
                    resp.headers.get("ETag") or validators.etag,
                    resp.headers.get("Last-Modified") or validators.last_modified))
            if not 200 <= resp.status < 300:
                return FetchResult(**base, retry_after=parse_retry_after(
                    resp.headers.get("Retry-After")), error=_http_error(resp))
            body = await self._read_capped(resp)
            if body is None:
                return FetchResult(**base, error=f"response larger than {_size(self.max_bytes)}"
                                   " (the [watcher] max_bytes limit); stopped reading")
            return FetchResult(**base, body=body, content_type=resp.headers.get("Content-Type"),
                               validators=Validators(resp.headers.get("ETag"),
                                                     resp.headers.get("Last-Modified")))

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes | None:
        """The body, decompressed, or None once it passes max_bytes (read no further)."""
        declared = resp.content_length
        if declared is not None and declared > self.max_bytes and not resp.headers.get(
                "Content-Encoding"):
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _read_file(self, url: str) -> FetchResult:
        path = Path(unquote(urlsplit(url).path))
        try:
            with path.open("rb") as file:  # read() with a cap: /dev/zero has size 0
                body = file.read(self.max_bytes + 1)
        except OSError as exc:
            return FetchResult(url, 0, error=f"cannot read {path}: {exc.strerror or exc}")
        if len(body) > self.max_bytes:
            return FetchResult(url, 0, error=f"file larger than {_size(self.max_bytes)}"
                               " (the [watcher] max_bytes limit)")
        return FetchResult(url, 200, body=body)


def _permanent_target(url: str, resp: aiohttp.ClientResponse) -> str | None:
    """Where we ended up, if every redirect on the way was permanent."""
    if not resp.history or any(r.status not in _PERMANENT for r in resp.history):
        return None
    final = str(resp.url)
    return final if final != url else None


_HINTS = {
    401: "the feed needs credentials", 403: "the server refuses us (it may block bots)",
    404: "check the feed URL", 410: "the feed was removed", 429: "rate limited",
    451: "unavailable for legal reasons", 500: "the server failed", 502: "bad gateway",
    503: "the server is unavailable", 504: "gateway timeout",
}


def _http_error(resp: aiohttp.ClientResponse) -> str:
    text = f"HTTP {resp.status} {resp.reason or ''}".rstrip()
    if 300 <= resp.status < 400:
        return f"{text}: a redirect without a usable Location"
    hint = _HINTS.get(resp.status)
    retry = resp.headers.get("Retry-After")
    if retry and resp.status in (429, 503):
        hint = f"{hint}; the server asks us to wait ({retry.strip()[:40]})"
    return f"{text}: {hint}" if hint else text


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MB" if n >= 1024 * 1024 else f"{n} bytes"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"broken response body: {exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
