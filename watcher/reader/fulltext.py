"""Full text for thin feeds: fetch each new entry's article page and extract its main text.

For feeds with `fulltext = true` the pipeline calls `fetch_fulltext` on the entries that
are new in a poll (never the first poll's backlog) before matching; topics see the text as
the `content` field (`fields = ["title", "summary", "content"]`).

The page is fetched through the same `Fetcher` as feeds, so it shares the per-host and
global concurrency limits, the timeout, the size cap and the User-Agent; one call fetches
at most `concurrency` pages at a time (default 4), so a feed with a burst of new entries
holds few of the global slots other feeds need, and at most `max_pages` per poll. Only
http(s) links are followed: a feed must not make us read file:// paths. Links come from
feed content, so they are fetched through the fetcher's address guard (`Fetcher.fetch_link`):
loopback, private, link-local, multicast and reserved addresses are refused, after DNS
resolution and on every redirect, unless `[watcher] fulltext_allow` names their network;
such an entry keeps its feed text, with the refusal logged as the reason. Extraction runs
off the event loop, in the given executor (the parse process pool) or the default thread
pool, with a time limit. A page that cannot be fetched or yields no article text falls
back to the feed's own text (`content` = the summary), with a logged reason.

Extractor: trafilatura, over readability-lxml and the other maintained choices, because

- it is the most accurate open-source main-text extractor in the independent comparisons
  (ScrapingHub's article-extraction-benchmark; Bevendorff et al., "An Empirical Comparison
  of Web Content Extraction Algorithms", SIGIR 2023), and it falls back on its own to a
  readability port and jusText when its first pass finds too little;
- it returns plain text directly, which is what matching needs; readability-lxml returns
  cleaned HTML that would need its own HTML-to-text step;
- `favor_precision` cuts navigation, "related stories" and comment blocks harder: a
  sidebar headline about another story is exactly what must not trigger a topic;
- it is actively maintained (releases through 2025), Apache-2.0, pure Python on lxml,
  and decodes pages whose charset only the <meta> tag gives.

Its cost is a few more dependencies (lxml, justext, htmldate, courlan, dateparser).
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import Executor

import trafilatura
from msgspec.structs import replace

from watcher.model import Entry
from watcher.reader.parse import FeedParseError
from watcher.reader.parsepool import ParsePoolClosed
from watcher.reader.result import FeedFetcher

log = logging.getLogger("watcher.fulltext")
CONCURRENCY = 4  # pages fetched at once per call
MAX_PAGES = 50  # pages fetched per call (per poll of one feed); the rest use the feed text
MIN_CHARS = 200  # less than this is a teaser, a paywall or a consent page, not an article
MAX_CHARS = 30_000  # text kept per article (alerts carry the entry, so it is stored)
EXTRACT_TIMEOUT = 30.0  # seconds one extraction may take
_HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "application/xml",
               "text/xml")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def extract_text(body: bytes, content_type: str | None = None,
                 url: str | None = None) -> str | None:
    """The main text of an HTML page as one line of plain text, or None (picklable)."""
    html: str | bytes = body
    if content_type and (m := _CHARSET.search(content_type)):
        try:
            html = body.decode(m.group(1), errors="replace")
        except LookupError:
            html = body  # an unknown charset: let trafilatura look at the page itself
    text = trafilatura.extract(html, url=url, favor_precision=True, include_comments=False,
                               include_tables=True, include_images=False, with_metadata=False)
    if not text:
        return None
    return _SPACE.sub(" ", text).strip()[:MAX_CHARS].rstrip()


class _Failed(Exception):
    """Why an entry keeps its feed text."""


async def fetch_fulltext(fetcher: FeedFetcher, entries: list[Entry], executor: Executor | None,
                         *, concurrency: int = CONCURRENCY,
                         max_pages: int = MAX_PAGES) -> list[Entry]:
    """The entries, in order, with `content` set to their article's main text (or, where
    that cannot be had, to their summary, the reason logged). Never raises for a page."""
    gate = asyncio.Semaphore(concurrency)
    fetched, overflow = entries[:max_pages], entries[max_pages:]

    async def one(entry: Entry) -> Entry:
        async with gate:
            try:
                return replace(entry, content=await _article_text(fetcher, entry, executor))
            except _Failed as why:
                return _fall_back(entry, str(why))

    done = list(await asyncio.gather(*(one(entry) for entry in fetched)))
    if overflow:
        log.warning("full text: too many new entries in one poll, the rest use the feed text",
                    extra={"feed": overflow[0].feed_url, "fetched": len(fetched),
                           "reason": f"more than {max_pages} new entries",
                           "skipped": len(overflow)})
    return done + [replace(entry, content=entry.summary) for entry in overflow]


async def _article_text(fetcher: FeedFetcher, entry: Entry, executor: Executor | None) -> str:
    url = (entry.link or "").strip()
    if not url.lower().startswith(("http://", "https://")):
        raise _Failed("the entry has no http(s) link" if not url else
                      "the entry's link is not http(s)")
    result = await fetcher.fetch_link(url)
    if not result.ok or result.body is None:
        raise _Failed(f"fetching the page failed: {result.error or f'HTTP {result.status}'}")
    mime = (result.content_type or "").split(";")[0].strip().lower()
    if mime and mime not in _HTML_TYPES:
        raise _Failed(f"the page is {mime}, not HTML")
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(EXTRACT_TIMEOUT):  # not wait_for: it can swallow a cancel
            text = await loop.run_in_executor(
                executor, extract_text, result.body, result.content_type, url)
    except TimeoutError:
        raise _Failed(f"extraction took longer than {EXTRACT_TIMEOUT:g} s") from None
    except FeedParseError as exc:  # the parse pool's deadline or memory limit
        raise _Failed(str(exc)) from None
    except ParsePoolClosed:  # shutting down: the entry is not matched on a stand-in text
        raise
    except Exception as exc:  # a crashed worker or an extractor bug: keep the feed text
        raise _Failed(f"extraction failed: {type(exc).__name__}: {exc}") from exc
    if not text or len(text) < MIN_CHARS:
        raise _Failed(f"no article text found in the page ({len(text or '')} characters)")
    return text


def _fall_back(entry: Entry, reason: str) -> Entry:
    log.warning("full text unavailable, matching the feed text", extra={
        "feed": entry.feed_url, "url": entry.link or "-", "reason": reason})
    return replace(entry, content=entry.summary)

