"""OPML: read the subscription lists feed readers export; write ours (pure, no network).

Readers differ (see tests/data/opml/README.md for each one's documented format):

- Miniflux: OPML 2.0, every feed inside one category outline (`text` only), `title` and
  `text` on feeds, its own settings in the https://miniflux.app/opml namespace
  (`miniflux:crawler="true"` fetches full articles, `miniflux:disabled`).
- FreshRSS: OPML 2.0, category outlines, feeds with `text` (no `title`), settings in the
  https://freshrss.org/opml namespace (`frss:cssFullContent` fetches full articles); it
  imports Inoreader-style `category="/tag1,/tag2"` attributes.
- newsboat: `-e` writes flat OPML 1.0 with `title` only (often empty); `--export-to-opml2`
  adds `text` and `category="tag one,tag_two"`; a tag "~Name" is newsboat's title override.
- Feedly / Inoreader: OPML 1.0, category outlines with `text` and `title`, a feed listed
  once per category it is in, titles with stray trailing spaces.

What we take: every outline with an `xmlUrl` (any letter case; `url` on rss/atom outlines)
is a feed. Enclosing outlines without one are categories and become tags, one per level;
`category` attributes add tags (comma-separated; the slashes around Inoreader's "/tag" are
dropped, inner ones kept as in newsboat: "tag/three" is one tag). A feed listed
twice is one feed with the tags of both. Titles fall back from `title` to `text`. Skipped
and reported: URLs other than http(s) (newsboat's exec:/filter:/query:, Liferea's
"|command"; feed:// is read as http://), outline types that are not feeds (FreshRSS's
"HTML+XPath" scrapers) and feeds disabled in Miniflux. A raw "&" in a URL, the classic
export bug, is read as "&amp;"; other malformed XML goes to lxml's recovering parser.
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tomli
import tomli_w

from watcher.config import FeedSettings, validate_feed
from watcher.reader.import_guard import private_host

WATCHER_NS = "https://github.com/watcher-rss/watcher/opml"
MINIFLUX_NS = "https://miniflux.app/opml"
FRESHRSS_NS = "https://freshrss.org/opml"
FEED_TYPES = {"rss", "atom", "feed", "jsonfeed", "json", ""}
_RAW_AMP = re.compile(rb"&(?!(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);)")
_SPACE = re.compile(r"\s+")
_TRUE = {"1", "true", "yes", "on"}
ET.register_namespace("watcher", WATCHER_NS)
FILE_HEADER = ("# Feeds imported from OPML by `watcher feeds import`. The main config reads this\n"
               "# file through its include list, e.g. include = [\"feeds.d/*.toml\"].\n")


class OpmlError(ValueError):
    """The file is not OPML we can read, or the feeds file cannot be merged into."""


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    url: str
    title: str = ""
    tags: tuple[str, ...] = ()
    fulltext: bool = False  # the reader fetched full articles for it (Miniflux, FreshRSS)


@dataclass(slots=True)
class OpmlRead:
    feeds: list[OpmlFeed] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (url, reason)


# ---------------------------------------------------------------- reading


def read_opml(data: bytes, *, allow_private: bool = False) -> OpmlRead:
    """The feeds, and the outlines skipped with the reason (for the import report).

    A shared OPML list is someone else's input: feeds on loopback, private or link-local
    addresses and on intranet-looking names (no dot, .local, .internal...) are skipped
    unless `allow_private` (watcher trusts a configured feed's own host, so importing
    one would let the list's author make the daemon request an intranet URL)."""
    root = _xml_root(data)
    if _local(root.tag).lower() != "opml":
        raise OpmlError(f"not an OPML document (the root element is <{_local(root.tag)}>)")
    body = next((el for el in root if _local(el.tag).lower() == "body"), root)
    out = OpmlRead()
    merged: dict[str, OpmlFeed] = {}
    for feed in _walk(body, (), out, allow_private):
        key = url_key(feed.url)
        merged[key] = _merge(merged[key], feed) if key in merged else feed
    out.feeds = list(merged.values())
    return out


def _xml_root(data: bytes) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        fixed = _RAW_AMP.sub(b"&amp;", data)  # "?a=1&b=2": the classic export bug
        try:
            return ET.fromstring(fixed)
        except ET.ParseError:
            pass
        recovered = _recover(fixed)
        if recovered is None:
            raise OpmlError(f"not well-formed XML: {exc}") from exc
        return recovered


def _recover(data: bytes) -> ET.Element | None:
    """lxml's recovering parser (no entities, no network), converted to ElementTree."""
    try:
        from lxml import etree
    except ImportError:
        return None
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True,
                             huge_tree=False)
    try:
        tree = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None
    if tree is None:
        return None
    try:  # ElementTree reads lxml's output without its DTD: an entity it defined is unknown
        return ET.fromstring(etree.tostring(tree))
    except ET.ParseError:
        return None


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1] if isinstance(name, str) else ""


def _attrs(el: ET.Element) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """(plain attributes by lower-cased name, namespaced ones by (namespace, name))."""
    plain: dict[str, str] = {}
    spaced: dict[tuple[str, str], str] = {}
    for name, value in el.attrib.items():
        if name.startswith("{"):
            ns, _, local = name[1:].partition("}")
            spaced[(ns, local)] = value
        else:
            plain.setdefault(name.lower(), value)
    return plain, spaced


def _walk(parent: ET.Element, path: tuple[str, ...], out: OpmlRead,
          allow_private: bool) -> Iterator[OpmlFeed]:
    for el in parent:
        if _local(el.tag).lower() != "outline":
            continue
        plain, spaced = _attrs(el)
        raw_url = plain.get("xmlurl") or (
            plain.get("url") if plain.get("type", "").lower() in FEED_TYPES else None)
        if raw_url and raw_url.strip():
            feed = _feed(raw_url.strip(), plain, spaced, path)
            if isinstance(feed, OpmlFeed) and not allow_private:
                feed = private_host(feed.url) or feed
            if isinstance(feed, str):
                out.skipped.append((raw_url.strip(), feed))
            else:
                yield feed
            yield from _walk(el, path, out, allow_private)
            continue
        label = clean(plain.get("text") or plain.get("title") or "")
        yield from _walk(el, (*path, label) if label else path, out, allow_private)


def _feed(raw_url: str, plain: dict[str, str], spaced: dict[tuple[str, str], str],
          path: tuple[str, ...]) -> OpmlFeed | str:
    """The feed of an outline, or why it was skipped."""
    url = _http_url(raw_url)
    if url is None:
        return "not an http(s) URL"
    kind = plain.get("type", "").strip()
    if kind.lower() not in FEED_TYPES:
        return f"type {kind!r} is not an RSS/Atom/JSON feed (a scraped page?)"
    if spaced.get((MINIFLUX_NS, "disabled"), "").lower() in _TRUE:
        return "disabled in the reader it came from"
    title = clean(plain.get("title") or "") or clean(plain.get("text") or "")
    tags, override = _categories(plain.get("category", ""))
    title = title or override
    fulltext = (spaced.get((MINIFLUX_NS, "crawler"), "").lower() in _TRUE
                or bool(spaced.get((FRESHRSS_NS, "cssFullContent"), "").strip())
                or spaced.get((WATCHER_NS, "fulltext"), "").lower() in _TRUE)
    return OpmlFeed(url, "" if title == url else title, _unique([*path, *tags]), fulltext)


def _categories(value: str) -> tuple[list[str], str]:
    """Tags from a category attribute, and a newsboat title override ("~Name")."""
    tags: list[str] = []
    override = ""
    for item in value.split(","):
        item = item.strip()
        if item.startswith("~"):
            override = override or clean(item[1:])
        elif item and not item.startswith("!"):
            tags.append(clean(item.strip("/")))
    return [t for t in tags if t], override


def _http_url(url: str) -> str | None:
    lowered = url.lower()
    if lowered.startswith("feed://"):
        url = "http://" + url[len("feed://"):]
    elif lowered.startswith("feed:"):
        url = url[len("feed:"):]
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def clean(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def _merge(first: OpmlFeed, again: OpmlFeed) -> OpmlFeed:
    return replace(first, title=first.title or again.title,
                   tags=_unique([*first.tags, *again.tags]),
                   fulltext=first.fulltext or again.fulltext)


def url_key(url: str) -> str:
    """A URL for duplicate checks: scheme and host lower-cased, default port, fragment and
    an empty path dropped. Anything else may matter to the server, so it stays."""
    try:
        parts = urlsplit(url.strip())
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return url.strip()
    netloc = host if port in (None, {"http": 80, "https": 443}.get(scheme)) else f"{host}:{port}"
    if parts.username or parts.password:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    return urlunsplit((scheme, netloc, parts.path if parts.path != "/" else "", parts.query, ""))


# ---------------------------------------------------------------- merging into a feeds file


def merge_into_feeds_file(path: Path, feeds: Sequence[OpmlFeed], existing_urls: Iterable[str],
                          ) -> tuple[list[OpmlFeed], list[tuple[OpmlFeed, str]]]:
    """Append the feeds not configured yet to a TOML feeds file as [[feeds]] tables.

    `existing_urls` are the configured feeds (main config and includes); the file's own
    feeds count too, even when the config does not include it yet. Returns (added,
    skipped with the reason). The file is replaced atomically, its text kept as it was."""
    text = _read_feeds_file(path)
    known = {url_key(u) for u in existing_urls} | {url_key(u) for u in _file_urls(path, text)}
    added: list[OpmlFeed] = []
    skipped: list[tuple[OpmlFeed, str]] = []
    for feed in feeds:
        key = url_key(feed.url)
        if key in known:
            skipped.append((feed, "already configured"))
            continue
        known.add(key)
        added.append(feed)
    if added:
        _write_atomic(path, _append_tables(text or FILE_HEADER, added))
    return added, skipped


def _read_feeds_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise OpmlError(f"{path}: cannot read: {exc}") from exc


def _file_urls(path: Path, text: str) -> list[str]:
    try:
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise OpmlError(f"{path}: not valid TOML, not touched: {exc}") from exc
    feeds = data.get("feeds", [])
    if not isinstance(feeds, list):
        raise OpmlError(f"{path}: feeds: expected an array of tables ([[feeds]])")
    return [f["url"] for f in feeds if isinstance(f, dict) and isinstance(f.get("url"), str)]


def feed_table(feed: OpmlFeed) -> dict[str, Any]:
    """The [[feeds]] table for a feed (validated as the config would)."""
    table: dict[str, Any] = {"url": feed.url}
    if feed.title:
        table["name"] = feed.title
    if feed.tags:
        table["tags"] = list(feed.tags)
    if feed.fulltext:
        table["fulltext"] = True
    validate_feed(table)
    return table


def _toml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _append_tables(text: str, feeds: Sequence[OpmlFeed]) -> str:
    blocks = []
    for feed in feeds:
        lines = ["[[feeds]]"] + [f"{k} = {_toml_value(v)}" for k, v in feed_table(feed).items()]
        blocks.append("\n".join(lines) + "\n")
    result = text.rstrip("\n") + "\n\n" + "\n".join(blocks)
    tomli.loads(result)  # never write a file the config loader would reject
    return result


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- export


def export_opml(feeds: Sequence[FeedSettings], *, title: str = "watcher feeds",
                now: datetime | None = None) -> bytes:
    """OPML 2.0: a feed sits in the category outline of its first tag and lists all its
    tags in `category`; `watcher:fulltext` keeps that setting. file: feeds are left out
    (no other reader could poll them)."""
    root = ET.Element("opml", {"version": "2.0"})
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(now or datetime.now(UTC),
                                                              usegmt=True)
    body = ET.SubElement(root, "body")
    folders: dict[str, ET.Element] = {}
    for feed in feeds:
        if not exportable(feed.url):
            continue
        parent = body
        if feed.tags:
            tag = feed.tags[0]
            if tag not in folders:
                folders[tag] = ET.SubElement(body, "outline", {"text": tag, "title": tag})
            parent = folders[tag]
        ET.SubElement(parent, "outline", _outline_attrs(feed))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def exportable(url: str) -> bool:
    """Whether a feed goes into an OPML export (http(s); file: feeds are left out)."""
    return _http_url(url) is not None


def _outline_attrs(feed: FeedSettings) -> dict[str, str]:
    name = feed.name or feed.url
    attrs = {"type": "rss", "text": name, "title": name, "xmlUrl": feed.url}
    if feed.tags:  # the list separator cannot appear inside a tag
        attrs["category"] = ",".join(t.replace(",", "_") for t in feed.tags)
    if feed.fulltext:
        attrs[f"{{{WATCHER_NS}}}fulltext"] = "true"
    return attrs
