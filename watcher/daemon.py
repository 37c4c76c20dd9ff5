"""Lifecycle: wire the stages, schedule polls, reload on change, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import random
import signal
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from watcher import metrics, schedule, sdnotify
from watcher.config import Config, ConfigError, FeedSettings, load_config
from watcher.fetch import Fetcher
from watcher.notify.base import Sender, make_sender
from watcher.notify.outbox import Outbox
from watcher.pipeline import Pipeline, PollSummary, utcnow
from watcher.store import Store, open_store

log = logging.getLogger("watcher.daemon")
SHUTDOWN_GRACE = 10.0  # seconds in-flight polls and the last delivery pass may take
STARTUP_SPREAD = 30.0  # seconds over which overdue feeds are spread at start


def parse_executor(feed_count: int) -> Executor | None:
    """A process pool for feedparser when there is enough to parse to pay for it."""
    if feed_count < 20:
        return None  # the default thread pool is plenty
    return ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("forkserver"))


def build_senders(config: Config, session: aiohttp.ClientSession) -> dict[str, Sender]:
    return {ch.name: make_sender(ch, config.base_dir, session) for ch in config.channels}


def digest_channels(config: Config) -> set[str]:
    return {ch.name for ch in config.channels
            if isinstance(ch.digest, str) or ch.digest > timedelta(0)}


class Runtime:
    """The stages wired together over one store; shared by `run` and `once`."""

    def __init__(self, config: Config, store: Store, *, workers: Executor | None = None) -> None:
        self.config = config
        self.store = store
        w = config.watcher
        self.fetcher = Fetcher(timeout=w.timeout.total_seconds(), max_bytes=w.max_bytes,
                               concurrency=w.concurrency, per_host=w.per_host)
        self.workers = workers
        self.outbox = Outbox(store, {}, on_result=metrics.count_alert)
        self.pipeline = Pipeline(config, store, self.fetcher, workers,
                                 on_alerts=self.outbox.wake)

    @classmethod
    async def open(cls, config: Config) -> Runtime:
        store = open_store(config.state_location())
        await store.open()
        runtime = cls(config, store, workers=parse_executor(len(config.feeds)))
        runtime.outbox.configure(build_senders(config, runtime.fetcher.session),
                                 digest_channels(config))
        await runtime.pipeline.start()
        return runtime

    async def poll(self, feed: FeedSettings, *, force: bool = False) -> PollSummary:
        started = time.perf_counter()
        summary = await self.pipeline.poll(feed, force=force)
        status = "error" if summary.error else str(summary.status)
        metrics.observe_poll(status, time.perf_counter() - started)
        metrics.count_entries(summary.entries)
        return summary

    async def apply(self, config: Config) -> None:
        self.config = config
        await self.pipeline.apply(config)
        self.outbox.configure(build_senders(config, self.fetcher.session),
                              digest_channels(config))

    async def close(self) -> None:
        for sender in self.outbox.senders.values():
            with contextlib.suppress(Exception):
                await sender.aclose()
        await self.fetcher.aclose()
        if self.workers is not None:
            self.workers.shutdown(wait=False, cancel_futures=True)
        await self.store.close()


async def run_once(config: Config) -> int:
    """Poll every feed once, deliver what is owed, and return how many alerts remain owed."""
    runtime = await Runtime.open(config)
    try:
        summaries = await asyncio.gather(*(runtime.poll(f, force=True) for f in config.feeds))
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
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.inflight: set[asyncio.Task[object]] = set()
        self.runtime: Runtime | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()

    async def run(self) -> int:
        config = load_config(self.config_path)
        self.runtime = runtime = await Runtime.open(config)
        try:
            self._install_signals()
            self.scheduler.start()
            self._schedule_all(config)
            self._tasks = [asyncio.create_task(runtime.outbox.run(), name="outbox"),
                           asyncio.create_task(self._watch_config(), name="config-watch")]
            if interval := sdnotify.watchdog_interval():
                self._tasks.append(asyncio.create_task(sdnotify.watchdog_loop(interval)))
            server = await self._start_metrics(config)
            metrics.set_feeds(len(config.feeds))
            sdnotify.ready(f"polling {len(config.feeds)} feeds")
            log.info("watcher started", extra={"feeds": len(config.feeds),
                                               "topics": len(config.topics),
                                               "config": str(self.config_path)})
            await self.stop_event.wait()
            if server is not None:
                await server.stop()
        finally:
            await self._shutdown()
        return 0

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(
            self.reload("SIGHUP")))

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
        for channel, c in counts.items():
            metrics.set_owed(channel, c.owed)
        return {"ok": self.scheduler.running, "feeds": len(self.runtime.config.feeds),
                "owed": sum(c.owed for c in counts.values())}

    # --- scheduling ---

    def _schedule_all(self, config: Config) -> None:
        for feed in config.feeds:
            self._schedule(feed)

    def _schedule(self, feed: FeedSettings) -> None:
        assert self.runtime is not None
        w = self.runtime.config.watcher
        state = self.runtime.pipeline.states.get(feed.url)
        interval = schedule.base_interval(feed, w, state)
        first = self._first_run(interval, state.last_poll_at if state else None)
        self.scheduler.add_job(
            self._poll_job, IntervalTrigger(seconds=interval.total_seconds(),
                                            jitter=interval.total_seconds() * w.jitter),
            args=[feed.url], id=feed.url, name=feed.name or feed.url, replace_existing=True,
            next_run_time=first, max_instances=1, coalesce=True, misfire_grace_time=None)

    def _first_run(self, interval: timedelta, last_poll: datetime | None) -> datetime:
        now = utcnow()
        spread = timedelta(seconds=random.uniform(0, min(STARTUP_SPREAD,
                                                         interval.total_seconds())))
        if last_poll is None or last_poll + interval <= now:
            return now + spread
        return last_poll + interval + spread / 10

    async def _poll_job(self, url: str) -> None:
        assert self.runtime is not None
        feed = next((f for f in self.runtime.config.feeds if f.url == url), None)
        if feed is None or self.stop_event.is_set():
            return
        task = asyncio.current_task()
        assert task is not None
        self.inflight.add(task)
        try:
            await self.runtime.poll(feed)
            self._adapt(feed)
        except Exception:
            log.exception("poll crashed", extra={"feed": url})
        finally:
            self.inflight.discard(task)

    def _adapt(self, feed: FeedSettings) -> None:
        """Reschedule an `auto` feed whose adaptive interval changed."""
        assert self.runtime is not None
        if feed.interval != "auto":
            return
        job = self.scheduler.get_job(feed.url)
        state = self.runtime.pipeline.states.get(feed.url)
        interval = schedule.base_interval(feed, self.runtime.config.watcher, state)
        if job is not None and job.trigger.interval != interval:
            job.reschedule(IntervalTrigger(seconds=interval.total_seconds(),
                                           jitter=interval.total_seconds() *
                                           self.runtime.config.watcher.jitter))

    # --- reload ---

    async def reload(self, why: str) -> bool:
        """Load and apply the config again; on errors keep running on the old one."""
        assert self.runtime is not None
        async with self._reload_lock:
            try:
                new = load_config(self.config_path)
            except ConfigError as exc:
                metrics.count_reload(ok=False)
                for problem in exc.problems:
                    log.error("config reload rejected, still running on the previous config",
                              extra={"problem": problem, "trigger": why})
                return False
            if new.digest == self.runtime.config.digest:
                return True
            sdnotify.reloading()
            old = {f.url: f for f in self.runtime.config.feeds}
            await self.runtime.apply(new)
            current = {f.url: f for f in new.feeds}
            for url in old.keys() - current.keys():
                self.scheduler.remove_job(url)
            for url, feed in current.items():
                if old.get(url) != feed:
                    self._schedule(feed)
            metrics.count_reload(ok=True)
            metrics.set_feeds(len(new.feeds))
            sdnotify.ready(f"polling {len(new.feeds)} feeds")
            log.info("config reloaded", extra={
                "trigger": why, "feeds": len(new.feeds), "topics": len(new.topics),
                "added": len(current.keys() - old.keys()),
                "removed": len(old.keys() - current.keys())})
            return True

    async def _watch_config(self) -> None:
        """Reload when the config or an included file changes (editors' saves debounced)."""
        from watchfiles import awatch  # noqa: PLC0415 - only the daemon watches files

        assert self.runtime is not None
        while not self.stop_event.is_set():
            files = {p.resolve() for p in self.runtime.config.files}
            folders = {p.parent for p in files}
            async for changes in awatch(*folders, debounce=800, step=100,
                                        stop_event=self.stop_event, recursive=False):
                touched = {Path(path).resolve() for _, path in changes}
                if touched & files or self._new_include(touched):
                    await self.reload("file change")
                    break

    def _new_include(self, touched: set[Path]) -> bool:
        assert self.runtime is not None
        return any(p.suffix == ".toml" for p in touched) and len(
            self.runtime.config.files) > 1

    # --- shutdown ---

    async def _shutdown(self) -> None:
        sdnotify.stopping()
        log.info("shutting down")
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.inflight:
            _, pending = await asyncio.wait(self.inflight, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.runtime is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.runtime.outbox.deliver_due(), SHUTDOWN_GRACE)
            await self.runtime.close()
        log.info("stopped")
