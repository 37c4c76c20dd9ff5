"""`watcher run`: the daemon's lifecycle — start-up, signals, systemd notify, shutdown.

`Daemon` opens the `Runtime` (watcher.runtime), installs the signal handlers (SIGTERM and
SIGINT stop, SIGHUP reloads), starts the clock, the outbox worker, the config watcher, the
watchdog, /metrics and the desk, tells systemd it is ready and, when stopped, lets the
polls in flight finish within `SHUTDOWN_GRACE`, makes a last delivery pass and leaves the
store. Its poll loop is `watcher.daemon_poll.PollLoop` and its reloads are
`watcher.daemon_reload.ConfigReload`, both mixed in. What other code imports from here
(`run_once`, `Runtime`, ...) is re-exported, wherever it is defined.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from watcher import metrics, sdnotify
from watcher.config import Config, load_config
from watcher.daemon_poll import (
    CONFLICT_REPEAT,
    HEARTBEAT,
    LEASE,
    PRUNE_KEEP_SEEN,
    TICK,
    PollLoop,
    StoreHealth,
    spawn,
)
from watcher.daemon_reload import RELOAD_RETRY, ConfigReload
from watcher.runtime import (
    PARSE_PRELOAD,
    STARTUP_SPREAD,
    Runtime,
    build_senders,
    digest_channels,
    parse_executor,
    run_once,
)
from watcher.store import StoreError

if TYPE_CHECKING:
    from datetime import datetime

    from watcher.desk import Desk

# What callers, tests and benchmarks import from here, wherever it is defined.
__all__ = [
    "CANCEL_WAIT",
    "CONFLICT_REPEAT",
    "HEARTBEAT",
    "LEASE",
    "PARSE_PRELOAD",
    "PRUNE_KEEP_SEEN",
    "RELOAD_RETRY",
    "SHUTDOWN_GRACE",
    "STARTUP_SPREAD",
    "TICK",
    "Daemon",
    "Runtime",
    "StoreHealth",
    "build_senders",
    "digest_channels",
    "parse_executor",
    "run_once",
]

log = logging.getLogger("watcher.daemon")
SHUTDOWN_GRACE = 10.0  # seconds in-flight polls and the last delivery pass may take


class Daemon(PollLoop, ConfigReload):
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
        self.runtime = runtime = await Runtime.open(config, daemon=True)
        server: metrics.MetricsServer | None = None
        try:
            self._install_signals()
            await runtime.sync_feeds()
            self._start_clock()
            self._tasks = [
                asyncio.create_task(runtime.outbox.run(), name="outbox"),
                asyncio.create_task(self._watch_config(), name="config-watch"),
            ]
            if interval := sdnotify.watchdog_interval():
                self._tasks.append(asyncio.create_task(sdnotify.watchdog_loop(interval)))
            server = await self._start_metrics(config)
            if config.watcher.web and not await self._start_desk(config, runtime):
                return self.exit_code
            metrics.set_feeds(len(config.feeds))
            sdnotify.ready(f"polling {len(config.feeds)} feeds")
            log.info(
                "watcher started",
                extra={
                    "feeds": len(config.feeds),
                    "topics": len(config.topics),
                    "config": str(self.config_path),
                },
            )
            # What start-up built (config, rules, story index, sessions) lives as long as
            # the daemon or until a reload: out of the collector's sight, a full collection
            # no longer walks it (~7 ms a round of 1000 unchanged feeds); it is thawed for
            # the collection after a reload and once a day (daemon_poll.collect_everything)
            gc.freeze()
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
        loop.add_signal_handler(
            signal.SIGHUP, lambda: spawn(self._reload_guarded("SIGHUP"))
        )

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
        return {
            "ok": self.scheduler.running,
            "feeds": len(self.runtime.config.feeds),
            "owed": sum(c.owed for c in counts.values()),
        }

    async def _start_desk(self, config: Config, runtime: Runtime) -> bool:
        """Serve the desk on `web` (imported only then: it is heavy); False if it cannot."""
        from watcher import desk

        try:
            self.desk = await desk.start(
                config, runtime.store, embedding=runtime.embedding, on_retry=runtime.outbox.wake
            )
        except desk.DeskError as exc:
            log.error(
                "the desk cannot start", extra={"reason": str(exc), "web": config.watcher.web}
            )
            self.exit_code = 1
            return False
        return True

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
                    log.warning(
                        "last delivery pass cut short; owed alerts stay owed",
                        extra={"reason": str(exc) or type(exc).__name__},
                    )
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
        log.error(
            f"a {what} ignored the shutdown; stopping without it", extra={"task": task.get_name()}
        )
