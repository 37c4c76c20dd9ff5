"""Lifecycle: wire the stages, schedule polls, reload on change, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from watcher import metrics, schedule, sdnotify
from watcher.config import Config, ConfigError, FeedSettings, load_config
from watcher.model import FeedState, fingerprint_conflicts
from watcher.notify.base import Sender, make_sender, notify_session
from watcher.notify.outbox import Outbox
from watcher.pipeline import Embedding, Pipeline, PollSummary, build_rules, utcnow
from watcher.reader.fetch import Fetcher
from watcher.reader.parsepool import ParsePool, ParsePoolClosed
from watcher.store import Store, StoreDamaged, StoreError, StoreFull, StoreLost, open_config_store

if TYPE_CHECKING:
    import aiohttp

    from watcher.desk import Desk
    from watcher.matching.decide import Rules

log = logging.getLogger("watcher.daemon")
SHUTDOWN_GRACE = 10.0  # seconds in-flight polls and the last delivery pass may take
STARTUP_SPREAD = 30.0  # seconds over which new feeds fall due at start
TICK = 1.0  # seconds between looks for due feeds
LEASE = 300.0  # seconds a claimed feed stays ours if the poll never reports back
HEARTBEAT = 4.0  # seconds between heartbeats (a node silent for the node TTL is dead)
RELOAD_RETRY = 5.0  # seconds before a reload that failed on the store is tried again
CONFLICT_REPEAT = timedelta(minutes=5)  # how often to repeat the config-mismatch warning
# Seen entries kept per feed by the daily prune: above the 10,000 entries one document may
# carry, so an entry still in a feed is never forgotten (and re-alerted).
PRUNE_KEEP_SEEN = 20_000


# What the parse workers' forkserver loads once for all of them (see watcher.reader.warm).
PARSE_PRELOAD = ("watcher.reader.parse", "feedparser", "watcher.reader.warm")


def parse_executor(feed_count: int) -> Executor:
    """The parse workers: every document is parsed under a deadline and a memory limit
    (in a thread a parse bomb could not be bounded), whatever the number of feeds."""
    return ParsePool(workers=1 if feed_count < 20 else 2, preload=PARSE_PRELOAD)


def build_senders(config: Config, session: aiohttp.ClientSession) -> dict[str, Sender]:
    return {ch.name: make_sender(ch, config.base_dir, session) for ch in config.channels}


def digest_channels(config: Config) -> set[str]:
    return {ch.name for ch in config.channels
            if isinstance(ch.digest, str) or ch.digest > timedelta(0)}


class Runtime:
    """The stages wired together over one store; shared by `run` and `once`."""

    def __init__(self, config: Config, store: Store, *, workers: Executor | None = None,
                 rules: Rules | None = None, embedding: Embedding | None = None) -> None:
        self.config = config
        self.feeds = {f.url: f for f in config.feeds}  # by URL, for each claim
        self.store = store
        w = config.watcher
        self.fetcher = Fetcher(timeout=w.timeout.total_seconds(), max_bytes=w.max_bytes,
                               concurrency=w.concurrency, per_host=w.per_host,
                               fulltext_allow=w.fulltext_allow)
        self.workers = workers
        self.notify_session = notify_session()  # the notify stage's own, not the fetcher's
        self.outbox = Outbox(store, {}, on_result=metrics.count_alert)
        self.embedding = embedding or Embedding(w.embedding)
        self.pipeline = Pipeline(config, store, self.fetcher, workers,
                                 on_alerts=self.outbox.wake, embedding=self.embedding,
                                 rules=rules)

    @classmethod
    async def open(cls, config: Config, *, warm: bool = True) -> Runtime:
        """Open the store and wire the stages; on any failure what was opened is closed.

        `warm`: load the rules and the story engine and rebuild the story index now (the
        daemon); otherwise the first poll with new entries does (`once`: a round of
        unchanged feeds never loads them)."""
        store = await open_config_store(config)
        embedding = Embedding(config.watcher.embedding)
        try:
            rules = await build_rules(config, embedding) if warm else None
            runtime = cls(config, store, workers=parse_executor(len(config.feeds)),
                          rules=rules, embedding=embedding)
        except BaseException:
            await store.close()
            raise
        try:
            runtime.outbox.configure(build_senders(config, runtime.notify_session),
                                     digest_channels(config),
                                     config.watcher.retry_base)
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
                log.warning("a watcher node on this host is gone (crashed?): its leases are "
                            "released", extra={"node": node.node})
                await self.store.leave(node.node)

    async def poll(self, feed: FeedSettings, state: FeedState) -> PollSummary:
        started = time.perf_counter()
        summary = await self.pipeline.poll(feed, state)
        status = "disabled" if summary.disabled else "error" if summary.error \
            else str(summary.status)
        metrics.observe_poll(status, time.perf_counter() - started)
        metrics.count_entries(summary.entries)
        return summary

    async def sync_feeds(self, config: Config | None = None) -> None:
        """Tell the store which feeds are configured; new ones fall due over a short spread."""
        config = config or self.config
        feeds = config.feeds
        shortest = min((schedule.base_interval(f, config.watcher).total_seconds()
                        for f in feeds), default=STARTUP_SPREAD)
        await self.store.sync_feeds([f.url for f in feeds], utcnow(),
                                    min(STARTUP_SPREAD, shortest))

    async def apply(self, config: Config) -> None:
        """Switch to a new config, all or nothing: everything that can fail (channels:
        ConfigError; the store: StoreError) is done before anything is switched."""
        senders = build_senders(config, self.notify_session)
        try:
            if config.watcher.embedding != self.embedding.spec:
                log.warning("[watcher] embedding changes take effect after a restart")
            rules = await build_rules(config, self.embedding)
            await self.sync_feeds(config)
        except BaseException:
            await _close_senders(senders.values())
            raise
        self.config = config
        self.feeds = {f.url: f for f in config.feeds}
        self.fetcher.fulltext_allow = config.watcher.fulltext_allow
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
            await self.fetcher.aclose()
        finally:
            self.stop_parsing()
            self.embedding.close()
            try:
                await self.store.close()
            except StoreError as exc:
                log.warning("the state store did not close cleanly", extra={"reason": str(exc)})


async def _close_senders(senders: Iterable[Sender]) -> None:
    for sender in senders:
        try:
            await sender.aclose()
        except Exception as exc:  # one channel's close must not keep the others open
            log.warning("channel did not close cleanly", extra={"reason": repr(exc)})


class StoreHealth:
    """The daemon's own store calls (claims, heartbeats, poll records): back off while the
    store fails; log once when it starts failing (or fails differently) and once when
    it is back, not once per call."""

    def __init__(self) -> None:
        self.failures = 0
        self.retry_at = utcnow()
        self.failing: str | None = None  # the kind of failure last logged; None: healthy

    def ready(self, now: datetime) -> bool:
        return now >= self.retry_at

    def failed(self, during: str, exc: StoreError, now: datetime) -> None:
        self.failures += 1
        wait = min(2.0 ** self.failures, 60.0)
        self.retry_at = now + timedelta(seconds=wait)
        kind = "disk full" if isinstance(exc, StoreFull) else "unavailable"
        if kind != self.failing:
            self.failing = kind
            log.error(f"state store {kind}: backing off; feeds are not claimed until it is "
                      f"back", extra={"during": during, "reason": str(exc)})
        else:
            log.debug("state store still failing", extra={"during": during,
                                                          "reason": str(exc),
                                                          "retry_in": f"{wait:.0f}s"})

    def succeeded(self) -> None:
        if self.failing is not None:
            log.warning("state store is back", extra={"failed_calls": self.failures})
        self.failures, self.failing, self.retry_at = 0, None, utcnow()


async def run_once(config: Config) -> int:
    """Poll every feed once, deliver what is owed, and return how many alerts remain owed."""
    runtime = await Runtime.open(config, warm=False)
    try:
        live = [n for n in await runtime.store.nodes() if n.alive(utcnow())]
        if live:
            raise StoreError(f"{len(live)} watcher node(s) are running on this state "
                             f"({', '.join(n.node for n in live)}); `watcher once` would poll "
                             "behind their backs — stop them first")
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
        log.info("round done", extra={
            "feeds": len(summaries), "failed": len(failed),
            "new": sum(s.new for s in summaries), "delivered": delivered, "owed": owed})
        return owed
    finally:
        await runtime.close()


class Daemon:
    """`watcher run`: poll on schedule until SIGTERM/SIGINT; SIGHUP or a file change reloads."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.stop_event = asyncio.Event()
        from apscheduler.schedulers.asyncio import AsyncIOScheduler  # `run` only, not `once`

        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.inflight: set[asyncio.Task[None]] = set()
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self.runtime: Runtime | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()
        self.health = StoreHealth()
        self.exit_code = 0
        self._lost = False  # the state file went away: stop without touching it again
        self._reload_stalled = False  # the last reload failed on the store: retry later
        self._rejected: tuple[tuple[str, int, int], ...] | None = None  # files of a bad edit
        self._claiming = asyncio.Lock()
        self._backlog = False  # the last claim found work: more feeds may be due
        self._claim_again = False  # a tick came while a claim ran: claim once more
        self._to_release: set[str] = set()  # feeds whose poll failed to reach the store
        self._conflict_warned_at: datetime | None = None
        self.desk: Desk | None = None  # the web desk, when [watcher] web is set

    async def run(self) -> int:
        """Run until stopped; 0, or 1 when the state file was lost under us."""
        config = load_config(self.config_path)
        if config.watcher.metrics:
            metrics.registry()  # count from the start (metrics changes need a restart)
        self.runtime = runtime = await Runtime.open(config)
        server: metrics.MetricsServer | None = None
        try:
            self._install_signals()
            await runtime.sync_feeds()
            self._start_clock()
            self._tasks = [asyncio.create_task(runtime.outbox.run(), name="outbox"),
                           asyncio.create_task(self._watch_config(), name="config-watch")]
            if interval := sdnotify.watchdog_interval():
                self._tasks.append(asyncio.create_task(sdnotify.watchdog_loop(interval)))
            server = await self._start_metrics(config)
            if config.watcher.web and not await self._start_desk(config, runtime):
                return self.exit_code
            metrics.set_feeds(len(config.feeds))
            sdnotify.ready(f"polling {len(config.feeds)} feeds")
            log.info("watcher started", extra={"feeds": len(config.feeds),
                                               "topics": len(config.topics),
                                               "config": str(self.config_path)})
            await self.stop_event.wait()
        finally:
            if self.desk is not None:
                await self.desk.close()
            if server is not None:
                await server.stop()
            await self._shutdown()
        return self.exit_code

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(
            self._reload_guarded("SIGHUP")))

    async def _start_metrics(self, config: Config) -> metrics.MetricsServer | None:
        if not config.watcher.metrics:
            return None
        server = metrics.MetricsServer(config.watcher.metrics, self._health)
        await server.start()
        log.info("metrics listening", extra={"address": config.watcher.metrics})
        return server

    async def _health(self) -> dict[str, object]:
        assert self.runtime is not None
        counts = await self.runtime.store.channel_counts()
        metrics.set_owed_all({channel: c.owed for channel, c in counts.items()})
        return {"ok": self.scheduler.running, "feeds": len(self.runtime.config.feeds),
                "owed": sum(c.owed for c in counts.values())}

    # --- scheduling ---

    def _start_clock(self) -> None:
        """APScheduler is the in-process clock: it ticks; the store says which feeds are due."""
        from apscheduler.triggers.interval import IntervalTrigger

        self.scheduler.add_job(self._job(self._tick), IntervalTrigger(seconds=TICK), id="tick",
                               max_instances=1, coalesce=True, next_run_time=utcnow())
        self.scheduler.add_job(self._job(self._expire_stories), IntervalTrigger(minutes=10),
                               id="expire-stories", max_instances=1, coalesce=True)
        self.scheduler.add_job(self._job(self._heartbeat), IntervalTrigger(seconds=HEARTBEAT),
                               id="heartbeat", max_instances=1, coalesce=True,
                               next_run_time=utcnow())
        if self.runtime is not None and self.runtime.config.watcher.metrics:
            self.scheduler.add_job(self._job(self._refresh_gauges), IntervalTrigger(seconds=15),
                                   id="gauges", max_instances=1, coalesce=True,
                                   next_run_time=utcnow())
        self.scheduler.add_job(self._job(self._prune), IntervalTrigger(hours=24), id="prune",
                               max_instances=1, coalesce=True,
                               next_run_time=utcnow() + timedelta(minutes=5))
        self.scheduler.start()

    def _job(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """A scheduled job: the scheduler cancels a running one at shutdown, which is no
        error worth a traceback."""
        async def job() -> None:
            try:
                await fn()
            except asyncio.CancelledError:
                if not self.stop_event.is_set():
                    raise

        job.__name__ = job.__qualname__ = fn.__name__
        return job

    async def _tick(self) -> None:
        """Claim the feeds that are due and poll them, within the concurrency budget.

        Runs every TICK seconds, and again as soon as half the budget is free while the last
        claim found work (a backlog of due feeds drains at the speed of the polls, not the
        clock). A tick arriving while a claim runs makes that claim run once more (a re-claim
        is never lost to the lock: the round would wait for the next clock tick).
        """
        if self.stop_event.is_set():
            return
        if self._claiming.locked():
            self._claim_again = True
            return
        async with self._claiming:
            self._claim_again = True
            while self._claim_again and not self.stop_event.is_set():
                self._claim_again = False
                await self._claim()

    async def _claim(self) -> None:
        """One claim of due feeds (within the budget) and their polls started."""
        assert self.runtime is not None
        budget = self.runtime.config.watcher.concurrency * 2 - len(self.inflight)
        now = utcnow()
        try:
            await self.runtime.store.check_location()
        except StoreLost as exc:
            self._fatal(exc)
            return
        if budget <= 0 or not self.health.ready(now):
            return
        try:
            claimed = await self.runtime.store.claim_due(
                self.node, now, LEASE, budget, per_host=self.runtime.config.watcher.per_host)
        except StoreError as exc:
            self._store_failed("claiming due feeds", exc, now)
            return
        self.health.succeeded()
        if not claimed and not self.inflight:
            metrics.mark_round()  # nothing due, nothing in flight: caught up
        if self._to_release:
            urls, self._to_release = sorted(self._to_release), set()
            with contextlib.suppress(StoreError):
                await self.runtime.store.release(self.node, urls)
        # Something was due, or polls run whose end frees a host's turn (a claim skips hosts
        # at their per_host cap): when half the budget is free, look again.
        self._backlog = bool(claimed) or bool(self.inflight)
        for state in claimed:
            if (feed := self.runtime.feeds.get(state.url)) is not None:
                task = asyncio.create_task(self._poll(feed, state), name=f"poll {feed.url}")
                self.inflight.add(task)
                task.add_done_callback(self._poll_done)

    def _store_failed(self, during: str, exc: StoreError, now: datetime) -> None:
        if isinstance(exc, StoreDamaged):
            self._fatal(exc)
        else:
            self.health.failed(during, exc, now)

    def _fatal(self, exc: StoreLost | StoreDamaged) -> None:
        """The state file is gone, replaced or damaged: retrying cannot help. Stop claiming,
        say so in one line, exit 1 (systemd restarts us with that message in the journal)."""
        if not self._lost:
            self._lost = True
            self.exit_code = 1
            log.critical(str(exc))
            self.stop_event.set()

    def _poll_done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        if not self.inflight and not self._backlog:
            metrics.mark_round()  # every poll of the round is done
        # claim again once half the budget is free (not after every poll: one claim per
        # finished poll made a round of N feeds N claims, each reading the due feeds);
        # the claim's result says whether more may be due (_backlog)
        half = self.runtime.config.watcher.concurrency if self.runtime is not None else 0
        if self._backlog and len(self.inflight) <= half and not self.stop_event.is_set():
            self._backlog = False  # one re-claim per batch; a running claim runs once more
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._tick()))

    async def _heartbeat(self) -> None:
        """Tell the other nodes we are alive (our leases stay valid) and check their config."""
        assert self.runtime is not None
        store, config, now = self.runtime.store, self.runtime.config, utcnow()
        if self._lost:
            return
        try:
            await store.heartbeat(self.node, config.fingerprint, now, inflight=len(self.inflight))
            conflicts = fingerprint_conflicts(await store.nodes(), config.fingerprint, now)
        except StoreError as exc:
            self._store_failed("heartbeat", exc, now)
            return
        self.health.succeeded()
        quiet = self._conflict_warned_at and now - self._conflict_warned_at < CONFLICT_REPEAT
        if conflicts and not quiet:
            self._conflict_warned_at = now
            log.error("NODES RUN DIFFERENT CONFIGS: every node must load the same topics, "
                      "feeds and channels", extra={
                          "ours": config.fingerprint[:12],
                          "others": ", ".join(f"{n.node}={n.config_fingerprint[:12]}"
                                              for n in conflicts)})

    async def _refresh_gauges(self) -> None:
        """Alerts owed per channel, for /metrics (counters are updated as things happen)."""
        assert self.runtime is not None
        try:
            counts = await self.runtime.store.channel_counts()
        except StoreError:
            return
        metrics.set_owed_all({channel: c.owed for channel, c in counts.items()})

    async def _prune(self) -> None:
        """Forget what can never matter again (old stories, delivered alerts, old seen rows)."""
        assert self.runtime is not None
        try:
            counts = await self.runtime.store.prune(
                utcnow(), keep_seen_per_feed=PRUNE_KEEP_SEEN,
                keep_entries=self.runtime.config.watcher.keep_entries)
        except StoreError as exc:
            log.warning("prune failed", extra={"reason": str(exc)})
            return
        log.info("state pruned", extra={"counts": str(counts)})

    async def _expire_stories(self) -> None:
        """Close stories older than the window, so the index stays the size of the window."""
        assert self.runtime is not None
        closed = self.runtime.pipeline.expire_stories(utcnow())
        if closed:
            log.debug("stories closed", extra={"closed": closed})

    async def _poll(self, feed: FeedSettings, state: FeedState) -> None:
        assert self.runtime is not None
        try:
            await self.runtime.poll(feed, state)
        except StoreError as exc:
            self._to_release.add(feed.url)
            self._store_failed("recording a poll", exc, utcnow())
            log.debug("poll could not be recorded; the feed is released once the store is "
                     "back", extra={"feed": feed.url, "reason": str(exc)})
        except ParsePoolClosed:  # nothing of it was stored: the next poll reads it all again
            log.info("poll interrupted by the shutdown; the feed is polled again at the next "
                     "start", extra={"feed": feed.url})
        except Exception:
            log.exception("poll crashed; the feed is retried after its lease expires",
                          extra={"feed": feed.url})

    # --- reload ---

    async def reload(self, why: str) -> bool:
        """Load and apply the config again; on errors keep running on the old one, whole.

        systemd always hears READY after RELOADING, whatever happened."""
        assert self.runtime is not None
        async with self._reload_lock:
            old = self.runtime.config
            sdnotify.reloading()
            ok = False
            try:
                new = load_config(self.config_path)
                if new.fingerprint != old.fingerprint:
                    await self.runtime.apply(new)
                ok = True
            except ConfigError as exc:
                self._rejected = self._files_stamp()
                for problem in exc.problems:
                    log.error("config reload rejected, still running on the previous config",
                              extra={"problem": problem, "trigger": why})
            except StoreError as exc:
                self._reload_stalled = True
                log.error("config reload failed: the state store is unavailable; still "
                          "running on the previous config, the reload is retried",
                          extra={"reason": str(exc), "trigger": why})
            finally:
                feeds = len(self.runtime.config.feeds)
                sdnotify.ready(f"polling {feeds} feeds" + ("" if ok else " (reload failed)"))
            metrics.count_reload(ok=ok)
            if not ok:
                return False
            self._reload_stalled, self._rejected = False, None
            self._reload_desk(old, new)
            metrics.set_feeds(len(new.feeds))
            before, after = {f.url for f in old.feeds}, {f.url for f in new.feeds}
            changed = new.fingerprint != old.fingerprint
            # a SIGHUP is someone asking: they hear back either way
            log.log(logging.INFO if changed or why == "SIGHUP" else logging.DEBUG,
                    "config reloaded" if changed else "config unchanged",
                    extra={"trigger": why, "feeds": len(new.feeds), "topics": len(new.topics),
                            "added": len(after - before), "removed": len(before - after)})
            return True

    async def _start_desk(self, config: Config, runtime: Runtime) -> bool:
        """Serve the desk on `web` (imported only then: it is heavy); False if it cannot."""
        from watcher import desk

        try:
            self.desk = await desk.start(config, runtime.store, embedding=runtime.embedding,
                                         on_retry=runtime.outbox.wake)
        except desk.DeskError as exc:
            log.error("the desk cannot start", extra={"reason": str(exc),
                                                      "web": config.watcher.web})
            self.exit_code = 1
            return False
        return True

    def _reload_desk(self, old: Config, new: Config) -> None:
        from watcher.desk import DeskError

        if self.desk is not None:
            try:
                self.desk.reload(new)
            except DeskError as exc:
                log.error("desk: new token unreadable; keeping the previous one",
                          extra={"reason": str(exc)})
        if new.watcher.web != old.watcher.web:
            log.warning("[watcher] web changes take effect after a restart")

    async def _reload_guarded(self, why: str) -> bool:
        """reload() for the signal handler and the file watcher: nothing ends them."""
        try:
            return await self.reload(why)
        except Exception:
            log.exception("config reload crashed; still running on the previous config",
                          extra={"trigger": why})
            return False

    def _files_stamp(self) -> tuple[tuple[str, int, int], ...]:
        """(path, mtime, size) of the config's files and of what its includes would add."""
        assert self.runtime is not None
        config = self.runtime.config
        paths = {p.resolve() for p in config.files}
        for pattern in config.include_patterns():
            paths |= {p.resolve() for p in Path("/").glob(str(pattern).lstrip("/"))}
        stamp = []
        for path in sorted(paths):
            with contextlib.suppress(OSError):
                st = path.stat()
                stamp.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(stamp)

    async def _watch_config(self) -> None:
        """Reload when the config or an included file changes (editors' saves debounced)."""
        from watchfiles import awatch

        assert self.runtime is not None
        logging.getLogger("watchfiles").setLevel(logging.WARNING)
        while not self.stop_event.is_set():
            config = self.runtime.config
            files = {p.resolve() for p in config.files}
            patterns = [str(p) for p in config.include_patterns()]

            def relevant(_: object, path: str, files: set[Path] = files,
                         patterns: list[str] = patterns) -> bool:
                """Our files, and any file an include pattern would add."""
                resolved = Path(path).resolve()
                return resolved in files or any(fnmatch.fnmatch(str(resolved), pattern)
                                                for pattern in patterns)

            folders = {p.parent for p in files} | {
                Path(p).parent for p in patterns if Path(p).parent.is_dir()}
            watching = False
            async for changes in awatch(*folders, debounce=800, step=100,
                                        watch_filter=relevant, stop_event=self.stop_event,
                                        recursive=False, yield_on_timeout=True,
                                        rust_timeout=1000):
                if changes or not watching:  # the first timeout: now watching, catch up
                    if not watching:
                        log.debug("watching the config files for edits",
                                  extra={"folders": len(folders)})
                    watching = True
                    if changes or self._config_changed_on_disk():
                        await self._reload_guarded("file change")
                        if self._reload_stalled:  # the store is away: try again later
                            with contextlib.suppress(TimeoutError):
                                async with asyncio.timeout(RELOAD_RETRY):
                                    await self.stop_event.wait()
                        break

    def _config_changed_on_disk(self) -> bool:
        """Whether the files differ from the loaded config (edits made before we watched)."""
        assert self.runtime is not None
        if self._rejected is not None and self._rejected == self._files_stamp():
            return False  # the edit already rejected: wait for the next one
        if self._same_bytes(self.runtime.config):
            return False  # not parsed again (50,000 feeds: seconds, and a second copy)
        try:
            return (load_config(self.config_path).fingerprint
                    != self.runtime.config.fingerprint)
        except ConfigError:
            return True  # reload() reports the problems

    @staticmethod
    def _same_bytes(config: Config) -> bool:
        """Whether the config's files hold what was loaded (its fingerprint is the hash of
        their bytes, in order) and no new file matches an include pattern."""
        digest = hashlib.sha256()
        try:
            for path in config.files:
                digest.update(path.read_bytes())
        except OSError:
            return False
        loaded = {p.resolve() for p in config.files}
        for pattern in config.include_patterns():
            if any(p.resolve() not in loaded
                   for p in Path("/").glob(str(pattern).lstrip("/")) if p.is_file()):
                return False
        return digest.hexdigest() == config.fingerprint

    # --- shutdown ---

    async def _shutdown(self) -> None:
        sdnotify.stopping()
        log.info("shutting down", extra={"polls_in_flight": len(self.inflight)})
        try:
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)
            if self.runtime is not None:
                # a parse bomb must not hold SIGTERM for the grace: polls waiting on a parse
                # end now, unrecorded (their feeds are polled again after the restart)
                self.runtime.stop_parsing()
            await _settle(self.inflight, SHUTDOWN_GRACE, "poll")
            await _settle(self._tasks, 0.0, "task")
            if self.runtime is not None and not self._lost:
                try:  # the last delivery pass; what stays owed is sent after the restart
                    async with asyncio.timeout(SHUTDOWN_GRACE):
                        await self.runtime.outbox.deliver_due()
                except (TimeoutError, StoreError) as exc:
                    log.warning("last delivery pass cut short; owed alerts stay owed",
                                extra={"reason": str(exc) or type(exc).__name__})
                with contextlib.suppress(StoreError):  # leases then end with the heartbeat
                    await self.runtime.store.leave(self.node)
        finally:
            if self.runtime is not None:
                await self.runtime.close()
        log.info("stopped")


CANCEL_WAIT = 5.0  # seconds a cancelled task may take to unwind at shutdown


async def _settle(tasks: Iterable[asyncio.Task[None]], grace: float, what: str) -> None:
    """Let `tasks` finish within `grace` seconds, then cancel the rest and wait (bounded)
    for them to unwind; one that still runs is named in the log, not waited for forever."""
    pending = set(tasks)
    if pending and grace > 0:
        _, pending = await asyncio.wait(pending, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        _, pending = await asyncio.wait(pending, timeout=CANCEL_WAIT)
    for task in pending:
        log.error(f"a {what} ignored the shutdown; stopping without it",
                  extra={"task": task.get_name()})
