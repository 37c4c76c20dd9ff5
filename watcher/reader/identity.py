"""Entry identity: how an entry of a feed is known again, in this poll and in later ones.

A link's identity is its canonical form (`canonical_link`: lower-cased scheme and host, no
default port, fragment or tracking parameters, the query sorted); a link that cannot identify
an entry (a site's front page, one link for items with different titles) is taken off the
entries before the store looks them up (`link_identities`, called by the pipeline). An
entry's key is its guid, else its canonical link, else a hash of its title and summary
(`_entry_key`); `_distinct` keeps each item of a document once and keys by their content the
items whose guid or link the document gives to different titles. Pure and light: the parse
workers run it (through watcher.reader.parse).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from msgspec.structs import replace

from watcher.model import Entry

_TRACKING_PREFIXES = ("utm_", "at_", "mc_", "pk_", "hsa_")
_TRACKING_KEYS = frozenset({  # not "cid": sites use it for content ids
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "ocid",
    "cmpid", "_ga", "_hsenc", "_hsmi", "mkt_tok", "ncid", "sr_share", "smid", "ito", "xtor",
    "ref_src", "rss", "feed", "from_rss"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A guid or link longer than this (UTF-8 bytes) is known by its hash: PostgreSQL's index
# rows hold ~2.7 KB, and a feed's 3,000-character guid failed every write of the round.
MAX_IDENTITY_BYTES = 1024


# --- links ---

def canonical_link(link: str | None) -> str | None:
    """A link's identity: lower-cased scheme and host; no default port, fragment, trackers."""
    if not link:
        return None
    try:
        parts = urlsplit(link.strip())
        port = parts.port
    except ValueError:
        return _bounded(link.strip()) if link.strip() else None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    if port and _DEFAULT_PORTS.get(scheme) != port:
        host = f"{host}:{port}"
    path = parts.path or "/"
    if not host and path.startswith("//"):
        path = "/" + path.lstrip("/")  # would read back as a host
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not _is_tracking(k)]
    return _bounded(urlunsplit((scheme, host, path, urlencode(sorted(query)), "")).strip())


def _bounded(identity: str) -> str:
    """The identity itself, or its hash when it is too long to index."""
    if len(identity) * 4 <= MAX_IDENTITY_BYTES:
        return identity
    encoded = identity.encode(errors="surrogatepass")
    return identity if len(encoded) <= MAX_IDENTITY_BYTES else \
        "sha1:" + hashlib.sha1(encoded).hexdigest()


def _is_tracking(key: str) -> bool:
    low = key.lower()
    return low in _TRACKING_KEYS or low.startswith(_TRACKING_PREFIXES)


def link_identities(entries: list[Entry]) -> list[Entry]:
    """Entries whose canonical link cannot identify them lose it (it is then neither
    looked up nor stored): a site's front page, and a link the document gives to several
    items with different titles. Otherwise every later item would be dropped as seen."""
    titles: dict[str, set[str]] = {}
    for entry in entries:
        if entry.canonical_link:
            titles.setdefault(entry.canonical_link, set()).add(entry.title)
    shared = {link for link, names in titles.items() if len(names) > 1}
    return [replace(e, canonical_link=None) if e.canonical_link and (
        e.canonical_link in shared or _front_page(e.canonical_link)) else e for e in entries]


def _front_page(link: str) -> bool:
    parts = urlsplit(link)
    return parts.path in ("", "/") and not parts.query


# --- entry keys ---

def _entry_key(guid: str | None, link: str | None, title: str, summary: str) -> str:
    if guid:
        return _bounded(guid)
    return link or "sha1:" + hashlib.sha1(f"{title}\n{summary}".encode()).hexdigest()


def _distinct(candidates: Iterable[Entry]) -> list[Entry]:
    """The document's entries, each once, with keys that tell its items apart.

    A guid or link that the document gives to items with different titles is no identity
    (front-page links, one guid for every item): those items are keyed by their content, so
    none is dropped as "seen"; the very same item repeated is kept once."""
    built = [e for e in candidates if e.title or e.summary or e.link]  # skip empty <item/>s
    titles: dict[str, set[str]] = {}
    for entry in built:
        titles.setdefault(entry.key, set()).add(entry.title)
    seen: set[str] = set()
    entries: list[Entry] = []
    for entry in built:
        if len(titles[entry.key]) > 1:
            entry = replace(entry, key=_entry_key(None, None, entry.title, entry.summary))
        if entry.key not in seen:
            seen.add(entry.key)
            entries.append(entry)
    return entries
