"""The stages wired together over one store, shared by `watcher run` and `watcher once`.

`Runtime` opens the state store and builds what works on it: the fetcher, the parse workers
(`parse_executor`), the pipeline, the outbox and its senders (`build_senders`,
`digest_channels`); it applies a new config all or nothing and closes every part even when
another fails. `run_once` is `watcher once` on it: every feed polled once, what is owed
delivered. The daemon (`watcher.daemon`) adds the clock, reloads and shutdown on top.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Executor
from datetime import timedelta
from typing import TYPE_CHECKING

from watcher import metrics, schedule
from watcher.config import Config, FeedSettings
from watcher.model import FeedState
from watcher.notify.base import Sender, make_sender, notify_session
from watcher.notify.outbox import Outbox
from watcher.pipeline import Embedding, Pipeline, PollSummary, build_rules, utcnow
from watcher.reader.fetch import Fetcher
from watcher.reader.parsepool import ParsePool
from watcher.store import Store, StoreError, open_config_store

if TYPE_CHECKING:
    import aiohttp

    from watcher.matching.decide import Rules
    from watcher.reader.fetchworker import FetchWorkers

# The daemon's own logger name, whichever of its modules logs (the name is in every
# record and the log settings go by it).
log = logging.getLogger("watcher.daemon")
STARTUP_SPREAD = 30.0  # seconds over which new feeds fall due at start

# What the parse workers' forkserver loads once for all of them (see watcher.reader.warm).
PARSE_PRELOAD = ("watcher.reader.parse", "feedparser", "watcher.reader.warm")


def parse_executor(feed_count: int) -> Executor:
    """The parse workers: every document is parsed under a deadline and a memory limit
    (in a thread a parse bomb could not be bounded), whatever the number of feeds."""
    return ParsePool(workers=1 if feed_count < 20 else 2, preload=PARSE_PRELOAD)


def build_senders(config: Config, session: aiohttp.ClientSession) -> dict[str, Sender]:
    return {ch.name: make_sender(ch, config.base_dir, session) for ch in config.channels}


def digest_channels(config: Config) -> set[str]:
    return {
        ch.name for ch in config.channels if isinstance(ch.digest, str) or ch.digest > timedelta(0)
    }


class Runtime:
    """The stages wired together over one store; shared by `run` and `once`."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        workers: Executor | None = None,
        rules: Rules | None = None,
        embedding: Embedding | None = None,
        fetch_workers: int = 0,
    ) -> None:
        self.config = config
        self.feeds = {f.url: f for f in config.feeds}  # by URL, for each claim
        self.store = store
        w = config.watcher
        self.fetcher = Fetcher(
            timeout=w.timeout.total_seconds(),
            max_bytes=w.max_bytes,
            concurrency=w.concurrency,
            per_host=w.per_host,
            fulltext_allow=w.fulltext_allow,
        )
        # what the fetcher (and its workers) were built with: a reload cannot change it
        self.fetcher_built_with = {key: getattr(w, key) for key in _RESTART_KEYS}
        self.fetcher_built_with["fetch_workers"] = fetch_workers
        # the daemon's feeds through worker processes (its claims keep them polite)
        self.feed_fetcher: Fetcher | FetchWorkers = self.fetcher
        if fetch_workers:
            from watcher.reader.fetchworker import FetchWorkers

            self.feed_fetcher = FetchWorkers(self.fetcher, fetch_workers)
        self.workers = workers
        self.notify_session = notify_session()  # the notify stage's own, not the fetcher's
        self.outbox = Outbox(store, {}, on_result=metrics.count_alert)
        self.embedding = embedding or Embedding(w.embedding)
        self.pipeline = Pipeline(
            config,
            store,
            self.feed_fetcher,
            workers,
            on_alerts=self.outbox.wake,
            embedding=self.embedding,
            rules=rules,
        )

    @classmethod
    async def open(cls, config: Config, *, warm: bool = True, daemon: bool = False) -> Runtime:
        """Open the store and wire the stages; on any failure what was opened is closed.

        `warm`: load the rules and the story engine and rebuild the story index now (the
        daemon); otherwise the first poll with new entries does (`once`: a round of
        unchanged feeds never loads them). `daemon`: feeds are fetched by worker processes
        as `[watcher] fetch_workers` says (`once` has no claims to keep them polite)."""
        store = await open_config_store(config)
        embedding = Embedding(config.watcher.embedding)
        try:
            rules = await build_rules(config, embedding) if warm else None
            runtime = cls(
                config,
                store,
                workers=parse_executor(len(config.feeds)),
                rules=rules,
                embedding=embedding,
                fetch_workers=config.watcher.fetch_workers if daemon else 0,
            )
        except BaseException:
            await store.close()
            raise
        try:
            runtime.outbox.configure(
                build_senders(config, runtime.notify_session),
                digest_channels(config),
                config.watcher.retry_base,
            )
            await runtime.pipeline.start()
            if warm:
                await runtime.pipeline.story_engine()
            await runtime.forget_dead_nodes()
        except BaseException:
            await runtime.close()
            raise
        return runtime

    async def forget_dead_nodes(self) -> None:
        """Nodes of this host whose process is gone crashed: release their leases now
        instead of waiting out their heartbeat."""
        for node in await self.store.nodes():
            if node.process_gone():
                log.warning(
                    "a watcher node on this host is gone (crashed?): its leases are released",
                    extra={"node": node.node},
                )
                await self.store.leave(node.node)

    async def poll(self, feed: FeedSettings, state: FeedState) -> PollSummary:
        started = time.perf_counter()
        summary = await self.pipeline.poll(feed, state)
        status = (
            "disabled" if summary.disabled else "error" if summary.error else str(summary.status)
        )
        metrics.observe_poll(status, time.perf_counter() - started)
        metrics.count_entries(summary.entries)
        return summary

    async def sync_feeds(self, config: Config | None = None) -> None:
        """Tell the store which feeds are configured; new ones fall due over a short spread."""
        config = config or self.config
        feeds = config.feeds
        shortest = min(
            (schedule.base_interval(f, config.watcher).total_seconds() for f in feeds),
            default=STARTUP_SPREAD,
        )
        await self.store.sync_feeds([f.url for f in feeds], utcnow(), min(STARTUP_SPREAD, shortest))

    async def apply(self, config: Config) -> None:
        """Switch to a new config, all or nothing: everything that can fail (channels:
        ConfigError; the store: StoreError) is done before anything is switched."""
        senders = build_senders(config, self.notify_session)
        try:
            if config.watcher.embedding != self.embedding.spec:
                log.warning("[watcher] embedding changes take effect after a restart")
            for key, built in self.fetcher_built_with.items():
                if getattr(config.watcher, key) != built:  # said at every reload until then
                    log.warning(f"[watcher] {key}: the fetcher keeps {_shown(built)} until "
                                "a restart")
            rules = await build_rules(config, self.embedding)
            await self.sync_feeds(config)
        except BaseException:
            await _close_senders(senders.values())
            raise
        self.config = config
        self.feeds = {f.url: f for f in config.feeds}
        self.feed_fetcher.fulltext_allow = config.watcher.fulltext_allow
        self.pipeline.apply(config, rules)
        self.outbox.configure(senders, digest_channels(config), config.watcher.retry_base)

    def stop_parsing(self) -> None:
        """Kill the parse workers now (shutdown): what waits on them fails with
        ParsePoolClosed, and no feed records that as its error."""
        if self.workers is not None:
            self.workers.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Close everything, each part even when another fails (no unclosed sessions)."""
        try:
            await _close_senders(self.outbox.senders.values())
            await self.notify_session.close()
            await self.feed_fetcher.aclose()  # the worker's closes the local one too
        finally:
            self.stop_parsing()
            self.embedding.close()
            try:
                await self.store.close()
            except StoreError as exc:
                log.warning("the state store did not close cleanly", extra={"reason": str(exc)})


# [watcher] keys the running fetcher (and its worker processes) were built with (the claims
# read concurrency and per_host from the reloaded config at once)
_RESTART_KEYS = ("fetch_workers", "timeout", "max_bytes", "concurrency", "per_host")


def _shown(value: object) -> str:
    return f"{value.total_seconds():g} s" if isinstance(value, timedelta) else str(value)


async def _close_senders(senders: Iterable[Sender]) -> None:
    for sender in senders:
        try:
            await sender.aclose()
        except Exception as exc:  # one channel's close must not keep the others open
            log.warning("channel did not close cleanly", extra={"reason": repr(exc)})


async def run_once(config: Config) -> int:
    """Poll every feed once, deliver what is owed, and return how many alerts remain owed."""
    runtime = await Runtime.open(config, warm=False)
    try:
        live = [n for n in await runtime.store.nodes() if n.alive(utcnow())]
        if live:
            raise StoreError(
                f"{len(live)} watcher node(s) are running on this state "
                f"({', '.join(n.node for n in live)}); `watcher once` would poll "
                "behind their backs — stop them first"
            )
        await runtime.store.sync_feeds([f.url for f in config.feeds], utcnow(), 0)
        states = await runtime.store.feed_states([f.url for f in config.feeds])
        # A feed counts as in flight until it is stored: fetched bodies never pile up in
        # front of the parse workers (peak memory stays flat as the feed count grows).
        slots = asyncio.Semaphore(config.watcher.concurrency * 2)

        async def poll(feed: FeedSettings) -> PollSummary:
            async with slots:
                return await runtime.poll(feed, states[feed.url])

        summaries = await asyncio.gather(*(poll(f) for f in config.feeds))
        failed = [s for s in summaries if s.error]
        metrics.mark_round()
        delivered = await runtime.outbox.deliver_due()
        counts = await runtime.store.channel_counts()
        owed = sum(c.owed for c in counts.values())
        log.info(
            "round done",
            extra={
                "feeds": len(summaries),
                "failed": len(failed),
                "new": sum(s.new for s in summaries),
                "delivered": delivered,
                "owed": owed,
            },
        )
        return owed
    finally:
        await runtime.close()
