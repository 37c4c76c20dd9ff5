"""Fetch stage: conditional HTTP GET with limits; file:// for local feeds.

aiohttp is the client: it streams bodies (so the size cap holds before a body is read whole,
also for gzip bombs, since the cap applies to decompressed bytes), pools connections with a
per-host limit, and is the fastest mature asyncio client for thousands of concurrent polls.

Address guard (server-side request forgery): links found in feed content (full text) and
redirects from feeds on public hosts may only reach public addresses, unless the address is
in a network `[watcher] fulltext_allow` names. The check sits in the guarded session's
socket factory, so it applies to the very address each connection is made to: after DNS
resolution (a name rebound to 127.0.0.1 between a check and the connect cannot slip
through) and on every redirect hop. A configured feed whose own host is loopback or
private (an intranet feed, the tests' local servers) may reach those addresses and no
other private one: its session's guard admits exactly the addresses the host is (an IP
literal) or resolved to when every address it resolved to was private. So a feed's own
DNS cannot open the guard: a public name that once answers with a private address, or
answers public then private (rebinding), reaches nothing private but that one answer, and
a redirect from it to 169.254.169.254 or another intranet host is refused (name such
networks in `fulltext_allow` to let feeds redirect there). A feed on a public host is
fetched through the plain guard. Webhooks (configured by the operator) use the unguarded
session.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from watcher.http import (
    USER_AGENT,
    IPAddress,
    address_kind,
    parse_retry_after,
    url_host,
)
from watcher.reader.result import FetchResult, Validators, body_hash, read_local, size_text

__all__ = ["AddressGuard", "AddressRefused", "FetchResult", "Fetcher", "Validators", "body_hash",
           "read_local"]
log = logging.getLogger("watcher.fetch")

MAX_REDIRECTS = 5
MAX_ADOPTED_URL_BYTES = 2000  # a permanent redirect's target kept as the feed's new URL
_PERMANENT = {301, 308}
TRUST_TTL = 300.0  # seconds a configured host's public/private verdict is cached
PUBLIC_MEMORY = 86400.0  # seconds a name seen public is not trusted as an intranet one
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NOT_PUBLIC = "not a public one"  # marks the guard's refusals in aggregated errors


def _plain(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it stands for (as the guard sees it)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _literal_addresses(host: str) -> frozenset[IPAddress] | None:
    """For a host that is an IP literal, the private addresses it may reach (itself when
    private, none when public); None for a name. Every poll of a feed asks: a name that
    starts with a letter is no literal (IPv4 forms start with a digit, IPv6 ones hold ":")."""
    if not host or (not host[0].isdigit() and ":" not in host):
        return None
    return _parsed_literal(host)


@functools.lru_cache(maxsize=4096)
def _parsed_literal(host: str) -> frozenset[IPAddress] | None:
    try:
        literal = _plain(ipaddress.ip_address(host))
    except ValueError:
        return None
    return frozenset() if address_kind(literal) is None else frozenset({literal})


class AddressRefused(OSError):
    """The guard refused to connect to a non-public address."""


class AddressGuard:
    """Refuses connections to non-public addresses outside the allowed networks (and the
    `pinned` addresses of one trusted configured host; a pinned guard follows its
    `parent`'s allowed networks as they change on reload)."""

    def __init__(self, allow: Iterable[Network] = (), *, pinned: Iterable[IPAddress] = (),
                 parent: AddressGuard | None = None) -> None:
        self.allow: tuple[Network, ...] = tuple(allow)
        self.pinned: frozenset[IPAddress] = frozenset(pinned)
        self.parent = parent

    def networks(self) -> tuple[Network, ...]:
        return self.allow + (self.parent.networks() if self.parent is not None else ())

    def refusal(self, address: str) -> str | None:
        """Why a connection to this IP address is refused, or None when it is allowed."""
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%")[0])  # no IPv6 scope id
        except ValueError:
            return f"{address} is not an IP address, {_NOT_PUBLIC}"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        kind = address_kind(ip)
        if kind is None or ip in self.pinned or any(
                ip in net for net in self.networks() if net.version == ip.version):
            return None
        return f"{ip} is a {kind} address, {_NOT_PUBLIC}"

    def socket(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """aiohttp's socket_factory: the socket for this resolved address, or AddressRefused."""
        family, type_, proto, _, sockaddr = addr_info
        why = self.refusal(str(sockaddr[0]))
        if why:
            raise AddressRefused(errno.EACCES, why)
        return socket.socket(family=family, type=type_, proto=proto)


class Fetcher:
    """Polls URLs politely: global and per-host concurrency, timeouts, a body size cap.

    `fulltext_allow`: private networks links from feed content (and redirects from public
    feeds) may reach; everything else that is not a public address is refused."""

    def __init__(self, *, timeout: float = 30.0, max_bytes: int = 10 * 1024 * 1024,
                 concurrency: int = 64, per_host: int = 4,
                 fulltext_allow: Iterable[Network] = ()) -> None:
        self.timeout = timeout
        # aiohttp's own deadline for the whole exchange (connect, redirects, headers, body
        # until the connection is released): one timer per request, where an asyncio.timeout
        # around it added a second (~10 µs a poll, benchmarks/daemon_rounds.py)
        # (a connection attempt still gives up after 30 s, as aiohttp's default had it)
        self._deadline = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 30.0))
        self.max_bytes = max_bytes
        self.per_host = per_host
        self.guard = AddressGuard(fulltext_allow)
        self._global = asyncio.Semaphore(concurrency)
        # per-host limits, of the hosts being fetched now (not one object per host ever seen)
        self._hosts: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._guarded: aiohttp.ClientSession | None = None
        # host -> (the private addresses it may reach, checked at); empty: a public host
        self._trust: dict[str, tuple[frozenset[IPAddress], float]] = {}
        # names that resolved to a public address (when, last: each verdict lookup, every
        # TRUST_TTL, refreshes it): not pinned to a private one until a day without a public
        # answer (a feed's own DNS answering 127.0.0.1 once the cached verdict expires:
        # rebinding); a name really moved into the intranet is trusted again then
        self._seen_public: dict[str, float] = {}
        # one session per set of pinned addresses (intranet feeds are few)
        self._pinned: dict[frozenset[IPAddress], aiohttp.ClientSession] = {}
        self.concurrency = concurrency

    @property
    def fulltext_allow(self) -> tuple[Network, ...]:
        return self.guard.allow

    @fulltext_allow.setter
    def fulltext_allow(self, networks: Iterable[Network]) -> None:
        """Change the allowed networks (on reload); applies to the next connection."""
        self.guard.allow = tuple(networks)

    def _new_session(self, guard: AddressGuard | None) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=300,
                                         socket_factory=guard.socket if guard else None)
        return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT},
                                     auto_decompress=True)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared unguarded HTTP session: configured URLs (also webhook senders)."""
        if self._session is None or self._session.closed:
            self._session = self._new_session(None)
        return self._session

    @property
    def guarded_session(self) -> aiohttp.ClientSession:
        """The session whose connections may only reach public (or allowed) addresses."""
        if self._guarded is None or self._guarded.closed:
            self._guarded = self._new_session(self.guard)
        return self._guarded

    def pinned_session(self, addresses: frozenset[IPAddress]) -> aiohttp.ClientSession:
        """A guarded session that may also reach these private addresses (a trusted host's)."""
        session = self._pinned.get(addresses)
        if session is None or session.closed:
            guard = AddressGuard(pinned=addresses, parent=self.guard)
            session = self._pinned[addresses] = self._new_session(guard)
        return session

    async def aclose(self) -> None:
        for session in (self._session, self._guarded, *self._pinned.values()):
            if session is not None:
                await session.close()

    async def fetch_link(self, url: str) -> FetchResult:
        """Fetch a URL found in feed content: only public or allowed addresses, ever."""
        if not url.lower().startswith(("http://", "https://")):
            return FetchResult(url, 0, error="only http(s) links are followed")
        return await self.fetch(url, guarded=True)

    async def fetch(self, url: str, validators: Validators = Validators(), *,
                    guarded: bool | None = None) -> FetchResult:
        """Fetch a feed; never raises for network or server problems (see FetchResult.error).

        `guarded` None: through the address guard, which also admits the URL's own host's
        addresses when they are private; False: unguarded (operator-configured endpoints)."""
        if url.startswith("file://"):
            return await asyncio.to_thread(read_local, url, self.max_bytes)
        try:
            host = url_host(url)
        except ValueError as exc:
            return FetchResult(url, 0, error=f"invalid URL: {exc}")
        if guarded is None:
            pinned = self._known_private_addresses(host)
            if pinned is None:
                pinned = await self._private_addresses(host)
            session = self.pinned_session(pinned) if pinned else self.guarded_session
        else:
            session = self.guarded_session if guarded else self.session
        # the host's slot first: a queue for one host holds no global slot
        gate = self._enter_host(host)
        try:
            async with gate, self._global:
                return await self._fetch_within_timeout(session, url, validators)
        finally:
            self._leave_host(host)

    async def _fetch_within_timeout(self, session: aiohttp.ClientSession, url: str,
                                    validators: Validators) -> FetchResult:
        try:
            return await self._get(session, url, validators)
        except TimeoutError:  # aiohttp's deadline (also its connect and socket timeouts)
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

    def _enter_host(self, host: str) -> asyncio.Semaphore:
        """One more user of `host`'s per_host slots (its semaphore lives while in use)."""
        slot = self._hosts.get(host)
        if slot is None:
            slot = self._hosts[host] = (asyncio.Semaphore(self.per_host), [0])
        slot[1][0] += 1
        return slot[0]

    def _leave_host(self, host: str) -> None:
        users = self._hosts[host][1]
        users[0] -= 1
        if not users[0]:
            del self._hosts[host]

    def _known_private_addresses(self, host: str) -> frozenset[IPAddress] | None:
        """`_private_addresses` without a DNS lookup: for an IP literal or a host whose
        verdict is cached; None when only a lookup can tell."""
        if (literal := _literal_addresses(host)) is not None:
            return literal
        known = self._trust.get(host)
        if known is not None and time.monotonic() - known[1] < TRUST_TTL:
            return known[0]
        return None

    async def _private_addresses(self, host: str) -> frozenset[IPAddress]:
        """The private addresses a configured host may reach: itself when it is a private IP
        literal; what its name resolves to when every resolved address is private (an
        intranet name); none for a public host or one answering public and private."""
        if (known := self._known_private_addresses(host)) is not None:
            return known
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None,
                                                                 type=socket.SOCK_STREAM)
        except OSError:
            return frozenset()  # the guarded request reports the DNS failure itself
        resolved = {_plain(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
                    for info in infos}
        kinds = {address_kind(ip) for ip in resolved}
        now = time.monotonic()
        if None in kinds:
            self._seen_public[host] = now
        recently_public = now - self._seen_public.get(host, -PUBLIC_MEMORY) < PUBLIC_MEMORY
        # a name is an intranet feed's when all it resolves to is private (and it has not
        # answered public within a day); its link-local addresses are never pinned (a
        # cloud's metadata service is 169.254.169.254, also in NAT64 or 6to4 form)
        private = frozenset(ip for ip in resolved if address_kind(ip) != "link-local") \
            if resolved and None not in kinds and not recently_public else frozenset()
        self._trust[host] = (private, time.monotonic())
        return private

    async def _get(self, session: aiohttp.ClientSession, url: str,
                   validators: Validators) -> FetchResult:
        headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9,"
                             " text/xml;q=0.9, */*;q=0.5"}
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        async with session.get(url, headers=headers, max_redirects=MAX_REDIRECTS,
                               timeout=self._deadline) as resp:
            status, moved = resp.status, _permanent_target(url, resp)
            if status == 304:  # validators stay, unless the server sent new ones
                return FetchResult(url, status, moved_to=moved, validators=Validators(
                    resp.headers.get("ETag") or validators.etag,
                    resp.headers.get("Last-Modified") or validators.last_modified))
            if not 200 <= status < 300:
                return FetchResult(url, status, moved_to=moved, error=_http_error(resp),
                                   retry_after=parse_retry_after(resp.headers.get("Retry-After")))
            body = await self._read_capped(resp)
            if body is None:
                return FetchResult(url, status, moved_to=moved, error=(
                    f"response larger than {size_text(self.max_bytes)} (the [watcher] max_bytes"
                    " limit); stopped reading"))
            return FetchResult(url, status, body=body, moved_to=moved,
                               content_type=resp.headers.get("Content-Type"),
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


def _permanent_target(url: str, resp: aiohttp.ClientResponse) -> str | None:
    """Where we ended up, if every redirect on the way was permanent."""
    if not resp.history or any(r.status not in _PERMANENT for r in resp.history):
        return None
    final = str(resp.url)
    # a URL too long to keep as a feed's identity in the store is followed, not adopted
    return final if final != url and len(final.encode()) <= MAX_ADOPTED_URL_BYTES else None


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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError) and _NOT_PUBLIC in str(exc.os_error):
        reason = str(exc.os_error.strerror or exc.os_error).removeprefix("Multiple exceptions: ")
        return (f"refused to connect to {exc.host}: {reason}; links in feed content and"
                " redirects from feeds on public hosts may only reach public addresses"
                " (allow a private network with [watcher] fulltext_allow)")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"broken response body: {exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
