"""HTTP helpers shared by the stages that speak HTTP (reader, notify)."""

from __future__ import annotations

import email.utils
import ipaddress
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

from watcher import __version__

USER_AGENT = f"watcher/{__version__} (+https://github.com/watcher-rss/watcher; RSS monitor)"


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_kind(ip: IPAddress) -> str | None:
    """What kind of non-public address this is ('loopback', 'private'...), None if public.

    IPv6 addresses standing for IPv4 ones are judged by those: mapped (::ffff:127.0.0.1),
    NAT64 (64:ff9b::/96) and 6to4 (2002::/16)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_kind(ip.ipv4_mapped)
        if ip in _NAT64:
            return address_kind(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and (kind := address_kind(ip.sixtofour)) is not None:
            return kind
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local  # fec0::/10
    for kind, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                       ("site-local", site_local),
                       ("multicast", ip.is_multicast), ("unspecified", ip.is_unspecified),
                       ("reserved", ip.is_reserved), ("private", ip.is_private)):
        if flag:
            return kind
    return None if ip.is_global else "non-global"


# The longest wait a server's Retry-After can impose (a feed's host, a receiver): a day. A
# server's "3000000000" blocked its host until 2121, and a larger one crashed the poll.
MAX_RETRY_AFTER = 24 * 3600.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if
    absent or unreadable. An HTTP-date is always GMT (RFC 9110), so a date without a zone
    ("-0000") is read as UTC; a date in the past means no wait."""
    if not value or not (value := value.strip()):
        return None
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(MAX_RETRY_AFTER, max(0.0, (when - (now or datetime.now(UTC))).total_seconds()))


# "http(s)://host[:port]" then a path, query, fragment or nothing, the host of plain name
# characters: nearly every feed URL. Such a URL is read here as urlsplit reads it (~1 µs
# where urlsplit takes ~4, twice a poll); any other goes to urlsplit.
_PLAIN_URL = re.compile(r"https?://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?(?=[/?#]|$)")


def url_host(url: str) -> str:
    """The URL's host, lower-case ('' when it has none), as urlsplit's `hostname`."""
    if (plain := _PLAIN_URL.match(url)) is not None:
        return plain.group(1).lower()
    return urlsplit(url).hostname or ""


def feed_host(url: str) -> str:
    """The politeness key of a fetch URL: lower-case host[:port]; '' for file:// feeds."""
    if (plain := _PLAIN_URL.match(url)) is not None:
        host, port = plain.group(1).lower(), int(plain.group(2) or 0)
        if port > 65535:  # urlsplit's port refuses it
            return ""
        return f"{host}:{port}" if port else host
    try:
        parts = urlsplit(url)
        host, parsed_port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return ""
    if not host or parts.scheme not in ("http", "https"):
        return ""
    return f"{host}:{parsed_port}" if parsed_port else host
