"""Which feed hosts a shared OPML list may add: `watcher feeds import`'s guard.

watcher trusts a configured feed's own host, even a private one (an intranet feed), so a
list someone else wrote could make the daemon request a loopback service, a cloud's
metadata address or the intranet. Feeds on such hosts are skipped, with the reason, unless
the user passes --allow-private: private and link-local addresses, IP addresses in the
legacy forms the C library still reads ("127.1", "0x7f.0.0.1"), intranet-looking names, and
public-looking names that resolve to a private address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from watcher.http import address_kind

if TYPE_CHECKING:
    from watcher.reader.opml import OpmlFeed

_INTRANET_SUFFIXES = (".localhost", ".local", ".internal", ".intranet", ".lan", ".home.arpa",
                      ".corp", ".home")


def private_host(url: str) -> str | None:
    """Why a feed URL's host looks private (the skip reason), or None for a public one."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if (legacy := _legacy_ipv4(host)) is not None:  # "127.1", "0x7f.0.0.1", "0177.0.0.1"
            return (f"{host!r} is the address {legacy} written in a legacy form "
                    "(import with --allow-private if you mean it)")
        if host == "localhost" or "." not in host or host.endswith(_INTRANET_SUFFIXES):
            return (f"{host!r} looks like a local or intranet name "
                    "(import with --allow-private if you mean it)")
        return None
    if address_kind(ip) is None:  # as the daemon's guard judges it (NAT64, 6to4, fec0::)
        return None
    return f"{ip} is not a public address (import with --allow-private if you mean it)"


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address written as the C library still reads it (octal, hex, fewer parts)."""
    if not host[:1].isdigit() or any(c not in "0123456789abcdefx." for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def resolving_private(feeds: Sequence[OpmlFeed], workers: int = 16
                      ) -> tuple[list[OpmlFeed], list[tuple[str, str]]]:
    """The feeds whose host name does not resolve to a private address, and the others with
    the reason. A public-looking name of a shared list may point at 127.0.0.1 or the
    intranet; the daemon would take it for an intranet feed. A name that does not resolve
    now is kept (the daemon reports it)."""
    hosts = sorted({(urlsplit(f.url).hostname or "").rstrip(".").lower() for f in feeds})
    with ThreadPoolExecutor(max_workers=workers) as pool:
        verdicts = dict(zip(hosts, pool.map(_resolves_private, hosts), strict=True))
    kept, skipped = [], []
    for feed in feeds:
        why = verdicts.get((urlsplit(feed.url).hostname or "").rstrip(".").lower())
        if why:
            skipped.append((feed.url, why))
        else:
            kept.append(feed)
    return kept, skipped


def _resolves_private(host: str) -> str | None:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address_kind(ip) is not None:
            return (f"{host!r} resolves to {ip}, not a public address "
                    "(import with --allow-private if you mean it)")
    return None
