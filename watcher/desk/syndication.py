"""A topic's stories as Atom 1.0 and JSON Feed 1.1 (pure): one item per story, its outlets
listed in the item's content. Feed text is escaped for the HTML content and XML-safe."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from io import BytesIO
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from watcher.desk.api import outlet_json, rfc3339
from watcher.desk.model import StoryView
from watcher.desk.security import safe_link

ATOM_NS = "http://www.w3.org/2005/Atom"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
JSON_FEED_TYPE = "application/feed+json; charset=utf-8"
# characters XML 1.0 cannot carry (a hostile feed's control bytes would break the document)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ET.register_namespace("", ATOM_NS)


def xml_text(text: str | None) -> str:
    return _NOT_XML.sub("", text or "")


def story_id(story: StoryView) -> str:
    return f"urn:watcher:story:{story.id}"


def outlets_html(story: StoryView) -> str:
    """The story's outlets as an HTML list (every feed string escaped)."""
    items = []
    for o in story.outlets:
        link = safe_link(o.link)
        name = Markup('<a href="{}">{}</a>').format(link, o.feed) if link else escape(o.feed)
        lang = f", {o.language}" if o.language else ""
        items.append(Markup("<li>{} ({}{}): {}</li>").format(
            name, f"{o.seen_at:%Y-%m-%d %H:%M} UTC", lang, o.title))
    count = len(story.outlets)
    head = Markup("<p>{}</p>").format(
        f"Reported by {count} outlet{'s' if count != 1 else ''}:" if count else "No outlets.")
    return str(head + Markup("<ul>") + Markup("").join(items) + Markup("</ul>"))


def desk_url(stories_url: str, story: StoryView) -> str:
    """A story's desk page: `stories_url` (".../stories/") and the story id, URL-quoted;
    concatenated, never formatted (the prefix holds the request's Host header)."""
    return stories_url + quote(story.id, safe="")


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        el.text = xml_text(text)
    return el


def atom(topic: str, stories: Sequence[StoryView], *, self_url: str, home_url: str,
         stories_url: str) -> bytes:
    """Atom 1.0; `stories_url` is the desk's ".../stories/", each entry links its page."""
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _el(feed, "id", f"urn:watcher:topic:{topic}")
    _el(feed, "title", f"watcher: {topic}")
    _el(feed, "subtitle", f"Stories matched by the topic {topic}, one entry per story")
    _el(feed, "updated", rfc3339(max((s.last_seen for s in stories), default=_EPOCH)))
    _el(feed, "link", rel="self", href=self_url, type="application/atom+xml")
    _el(feed, "link", rel="alternate", href=home_url, type="text/html")
    _el(_el(feed, "author"), "name", "watcher")
    _el(feed, "generator", "watcher")
    for story in stories:
        entry = _el(feed, "entry")
        _el(entry, "id", story_id(story))
        _el(entry, "title", story.title, type="text")
        if link := safe_link(story.link):
            _el(entry, "link", rel="alternate", href=link, type="text/html")
        _el(entry, "link", rel="related", href=desk_url(stories_url, story),
            type="text/html")
        _el(entry, "published", rfc3339(story.opened_at))
        _el(entry, "updated", rfc3339(story.last_seen))
        _el(_el(entry, "author"), "name", story.first.feed if story.first else "watcher")
        if story.summary:
            _el(entry, "summary", story.summary, type="text")
        _el(entry, "content", outlets_html(story), type="html")
    out = BytesIO()
    ET.ElementTree(feed).write(out, encoding="utf-8", xml_declaration=True)
    return out.getvalue()


def json_feed(topic: str, stories: Sequence[StoryView], *, self_url: str, home_url: str,
              stories_url: str) -> bytes:
    """JSON Feed 1.1; each item's `_watcher` extension lists the outlets as data."""
    items: list[dict[str, Any]] = []
    for story in stories:
        item: dict[str, Any] = {
            "id": story_id(story), "title": xml_text(story.title),
            "content_html": xml_text(outlets_html(story)),
            "date_published": rfc3339(story.opened_at),
            "date_modified": rfc3339(story.last_seen),
            "authors": [{"name": story.first.feed if story.first else "watcher"}],
            "_watcher": {"story": story.id, "topic": story.topic,
                         "desk_url": desk_url(stories_url, story),
                         "outlets": [outlet_json(o) for o in story.outlets]},
        }
        if link := safe_link(story.link):
            item["url"] = link
        if story.summary:
            item["summary"] = xml_text(story.summary)
        items.append(item)
    body = {"version": JSON_FEED_VERSION, "title": f"watcher: {topic}",
            "home_page_url": home_url, "feed_url": self_url,
            "description": f"Stories matched by the topic {topic}, one item per story",
            "authors": [{"name": "watcher"}], "items": items}
    return json.dumps(body, ensure_ascii=False, indent=1).encode()
