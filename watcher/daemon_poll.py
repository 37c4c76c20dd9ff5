"""The daemon's clock and poll loop: which feeds are due, claimed and polled, and when.

APScheduler ticks (`TICK`); each tick claims the due feeds from the store within the
concurrency budget, under a lease (`LEASE`), and polls them; a backlog is claimed again as
soon as half the budget is free. Beside the tick run the heartbeat (our leases stay valid;
nodes on different configs are named), the gauges, the daily prune and story expiry.
`StoreHealth` backs the loop off while the store fails; a lost or damaged state file stops
the daemon (exit 1). `PollLoop` is mixed into `watcher.daemon.Daemon`, which sets the
attributes declared on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from watcher import metrics
from watcher.config import FeedSettings
from watcher.model import FeedState, fingerprint_conflicts
from watcher.pipeline import utcnow
from watcher.reader.parsepool import ParsePoolClosed
from watcher.store import StoreDamaged, StoreError, StoreFull, StoreLost

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from watcher.runtime import Runtime

# The daemon's own logger name, whichever of its modules logs (the name is in every
# record and the log settings go by it).
log = logging.getLogger("watcher.daemon")
TICK = 1.0  # seconds between looks for due feeds
LEASE = 300.0  # seconds a claimed feed stays ours if the poll never reports back
HEARTBEAT = 4.0  # seconds between heartbeats (a node silent for the node TTL is dead)
CONFLICT_REPEAT = timedelta(minutes=5)  # how often to repeat the config-mismatch warning
# Seen entries kept per feed by the daily prune: above the 10,000 entries one document may
# carry, so an entry still in a feed is never forgotten (and re-alerted).
PRUNE_KEEP_SEEN = 20_000


_SPAWNED: set[asyncio.Task[object]] = set()


def collect_everything() -> None:
    """A full collection that also sees what the daemon froze at start (`Daemon.run`), which
    is frozen again after: once a day, and after a reload (a frozen object that became
    garbage in a reference cycle is otherwise never freed)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def spawn(coro: Coroutine[object, None, object]) -> asyncio.Task[object]:
    """Start `coro` as a task the loop keeps a reference to until it ends (a task nothing
    references may be garbage-collected before it finishes)."""
    task = asyncio.ensure_future(coro)
    _SPAWNED.add(task)
    task.add_done_callback(_SPAWNED.discard)
    return task


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
        wait = min(2.0**self.failures, 60.0)
        self.retry_at = now + timedelta(seconds=wait)
        kind = "disk full" if isinstance(exc, StoreFull) else "unavailable"
        if kind != self.failing:
            self.failing = kind
            log.error(
                f"state store {kind}: backing off; feeds are not claimed until it is back",
                extra={"during": during, "reason": str(exc)},
            )
        else:
            log.debug(
                "state store still failing",
                extra={"during": during, "reason": str(exc), "retry_in": f"{wait:.0f}s"},
            )

    def succeeded(self) -> None:
        if self.failing is not None:
            log.warning("state store is back", extra={"failed_calls": self.failures})
        self.failures, self.failing, self.retry_at = 0, None, utcnow()


class PollLoop:
    """The scheduled half of `Daemon`: the clock, claims of due feeds and their polls,
    heartbeats and housekeeping."""

    # set by Daemon.__init__
    runtime: Runtime | None
    scheduler: AsyncIOScheduler
    stop_event: asyncio.Event
    inflight: set[asyncio.Task[None]]
    node: str
    health: StoreHealth
    exit_code: int
    _lost: bool
    _claiming: asyncio.Lock
    _backlog: bool
    _claim_again: bool
    _to_release: set[str]
    _conflict_warned_at: datetime | None

    def _start_clock(self) -> None:
        """APScheduler is the in-process clock: it ticks; the store says which feeds are due."""
        from apscheduler.triggers.interval import IntervalTrigger

        self.scheduler.add_job(
            self._job(self._tick),
            IntervalTrigger(seconds=TICK),
            id="tick",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )
        self.scheduler.add_job(
            self._job(self._expire_stories),
            IntervalTrigger(minutes=10),
            id="expire-stories",
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self._job(self._heartbeat),
            IntervalTrigger(seconds=HEARTBEAT),
            id="heartbeat",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )
        if self.runtime is not None and self.runtime.config.watcher.metrics:
            self.scheduler.add_job(
                self._job(self._refresh_gauges),
                IntervalTrigger(seconds=15),
                id="gauges",
                max_instances=1,
                coalesce=True,
                next_run_time=utcnow(),
            )
        self.scheduler.add_job(
            self._job(self._prune),
            IntervalTrigger(hours=24),
            id="prune",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow() + timedelta(minutes=5),
        )
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
                self.node, now, LEASE, budget, per_host=self.runtime.config.watcher.per_host
            )
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
            asyncio.get_running_loop().call_soon(lambda: spawn(self._tick()))

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
            log.error(
                "NODES RUN DIFFERENT CONFIGS: every node must load the same topics, "
                "feeds and channels",
                extra={
                    "ours": config.fingerprint[:12],
                    "others": ", ".join(f"{n.node}={n.config_fingerprint[:12]}" for n in conflicts),
                },
            )

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
                utcnow(),
                keep_seen_per_feed=PRUNE_KEEP_SEEN,
                keep_entries=self.runtime.config.watcher.keep_entries,
            )
        except StoreError as exc:
            log.warning("prune failed", extra={"reason": str(exc)})
        else:
            log.info("state pruned", extra={"counts": str(counts)})
        collect_everything()

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
            log.debug(
                "poll could not be recorded; the feed is released once the store is back",
                extra={"feed": feed.url, "reason": str(exc)},
            )
        except ParsePoolClosed:  # nothing of it was stored: the next poll reads it all again
            log.info(
                "poll interrupted by the shutdown; the feed is polled again at the next start",
                extra={"feed": feed.url},
            )
        except Exception:
            log.exception(
                "poll crashed; the feed is retried after its lease expires",
                extra={"feed": feed.url},
            )
