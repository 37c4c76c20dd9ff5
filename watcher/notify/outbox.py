"""The outbox worker: delivers owed alerts, retries with backoff, never drops one.

An alert row is written in the same transaction that records its match, so it is either owed
or was never owed. This worker is the only place that changes its delivery state.

When the store fails (a full disk, a lock, PostgreSQL away) delivery pauses: the worker
waits STORE_BACKOFF (1 s, doubling to 60 s) between attempts, logs one line when it pauses
and one when it resumes, and recovers by itself. Owed alerts stay owed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from watcher import schedule
from watcher.model import OwedAlert
from watcher.notify.base import (
    PermanentDeliveryError,
    Progress,
    Sender,
    TemporaryDeliveryError,
)
from watcher.redact import mask_text
from watcher.store.base import OutboxStore, StoreError

log = logging.getLogger("watcher.notify")
BATCH = 200
IDLE_WAKE = 5.0  # seconds: look for due retries (and `watcher retry` re-queues) this often
STORE_BACKOFF = (1.0, 60.0)  # seconds: first and longest pause while the store fails


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; whether it was set.

    Not `asyncio.wait_for(event.wait(), t)`: in Python 3.11 that swallows a cancellation
    arriving in the loop turn the event is set in (it returns the finished wait), so a
    worker woken as the daemon stops would go on running and the shutdown wait forever."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()


def digest_id(alerts: list[OwedAlert]) -> str:
    """A stable delivery id for one digest: the same alerts give the same id on every retry."""
    ids = "\n".join(sorted(a.id for a in alerts))
    return "digest-" + hashlib.sha256(ids.encode()).hexdigest()[:24]


class Outbox:
    """Delivers what the store says is owed, channel by channel."""

    def __init__(self, store: OutboxStore, senders: Mapping[str, Sender], *,
                 digest_channels: set[str] | None = None,
                 clock: Callable[[], datetime] = _utcnow,
                 on_result: Callable[[str, str, int], None] | None = None,
                 store_backoff: tuple[float, float] = STORE_BACKOFF) -> None:
        self.store = store
        self.senders = dict(senders)
        self.digest_channels = digest_channels or set()
        self.clock = clock
        self.on_result = on_result or (lambda channel, result, n: None)
        self._wake = asyncio.Event()
        self.retry_base = timedelta(seconds=15)
        self.store_backoff = store_backoff
        self.paused: str | None = None  # why delivery is paused (the store error), or None
        self.pause = 0.0  # seconds of the current pause; doubles while the store fails
        self._claimed_none = False  # the last pass found nothing it could claim

    def configure(self, senders: Mapping[str, Sender], digest_channels: set[str],
                  retry_base: timedelta = timedelta(seconds=15)) -> None:
        """Use new senders (after a reload); owed alerts stay owed."""
        self.senders = dict(senders)
        self.digest_channels = digest_channels
        self.retry_base = retry_base

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Deliver forever: when woken, when a retry is due, and every IDLE_WAKE seconds;
        while the store fails, every `pause` seconds (see the module docstring)."""
        while True:
            self._wake.clear()
            try:
                await self.deliver_due()
                timeout = await self._sleep_for()
            except Exception as exc:  # owed alerts stay owed: try again after a pause
                await asyncio.sleep(self._paused_by(exc))
                continue
            self._resumed()
            await wait_event(self._wake, timeout)

    def _paused_by(self, exc: Exception) -> float:
        """The next pause; one log line when delivery pauses (or the reason changes)."""
        first, longest = self.store_backoff
        self.pause = first if self.paused is None else min(longest, self.pause * 2)
        reason = mask_text(" ".join(str(exc).split()) or type(exc).__name__)
        if reason != self.paused:
            if isinstance(exc, StoreError):
                log.warning("store unavailable; delivery paused, owed alerts stay owed",
                            extra={"reason": reason, "retry_in": f"{self.pause:g}s"})
            else:  # a bug, not the store: show where
                log.error("outbox pass failed; delivery paused, owed alerts stay owed",
                          exc_info=exc, extra={"retry_in": f"{self.pause:g}s"})
        self.paused = reason
        return self.pause

    def _resumed(self) -> None:
        if self.paused is not None:
            log.info("store available again; delivery resumed")
            self.paused, self.pause = None, 0.0

    async def _sleep_for(self) -> float:
        nxt = await self.store.next_due_at(self.clock())
        if nxt is None:
            return IDLE_WAKE
        wait = (nxt - self.clock()).total_seconds()
        if wait <= 0 and self._claimed_none:
            # due but not ours to claim (another node's delivery lease, or ours left by an
            # interrupted pass): look again at the idle pace, not every 50 ms
            return IDLE_WAKE
        return min(IDLE_WAKE, max(0.05, wait))

    async def deliver_due(self) -> int:
        """One pass over everything due now; returns how many alerts were delivered."""
        delivered = 0
        self._claimed_none = True
        while True:
            due = await self.store.due_alerts(self.clock(), BATCH)
            if not due:
                return delivered
            self._claimed_none = False
            by_channel: dict[str, list[OwedAlert]] = defaultdict(list)
            for alert in due:
                by_channel[alert.channel].append(alert)
            results = await asyncio.gather(*(self._deliver_channel(ch, alerts)
                                             for ch, alerts in by_channel.items()),
                                           return_exceptions=True)
            for result in results:  # every channel finished its pass; now raise the first
                if isinstance(result, BaseException):
                    raise result
            delivered += sum(r for r in results if isinstance(r, int))
            if len(due) < BATCH:
                return delivered

    async def _deliver_channel(self, channel: str, alerts: list[OwedAlert]) -> int:
        sender = self.senders.get(channel)
        if sender is None:
            reason = f"channel {channel!r} is not in the config any more; kept until it returns"
            await self.store.mark_retry([a.id for a in alerts], reason,
                                        self.clock() + timedelta(hours=1))
            log.warning("alerts owed to a missing channel", extra={
                "channel": channel, "owed": len(alerts)})
            return 0
        if channel in self.digest_channels:
            return await self._attempt(channel, sender, alerts, digest_id(alerts))
        delivered = 0
        for alert in alerts:
            delivered += await self._attempt(channel, sender, [alert], alert.id)
        return delivered

    async def _attempt(self, channel: str, sender: Sender, alerts: list[OwedAlert],
                       delivery_id: str) -> int:
        ids = [a.id for a in alerts]
        context = {"channel": channel, "alert_id": delivery_id, "topic": alerts[0].message.topic}
        try:
            await sender.send([a.message for a in alerts], delivery_id,
                              self._progress(alerts))
        except TemporaryDeliveryError as exc:
            attempts = max(a.attempts for a in alerts)
            wait = schedule.delivery_backoff(attempts, exc.retry_after, self.retry_base)
            wait *= random.uniform(0.8, 1.2) if exc.retry_after is None else 1.0
            reason = mask_text(str(exc))
            await self.store.mark_retry(ids, reason, self.clock() + wait)
            log.warning("delivery failed, will retry", extra={
                **context, "reason": reason, "attempt": attempts + 1,
                "retry_in": f"{wait.total_seconds():.0f}s"})
            self.on_result(channel, "retried", len(ids))
            return 0
        except PermanentDeliveryError as exc:
            reason = mask_text(str(exc))
            await self.store.mark_failed(ids, reason)
            log.error("delivery failed permanently; see `watcher status`, requeue with "
                      "`watcher retry`", extra={**context, "reason": reason})
            self.on_result(channel, "failed", len(ids))
            return 0
        except Exception as exc:  # a bug in a sender must not lose the alert
            await self.store.mark_retry(ids, mask_text(f"unexpected error: {exc!r}"),
                                        self.clock() + schedule.delivery_backoff(
                                            max(a.attempts for a in alerts), None,
                                            self.retry_base))
            log.exception("delivery crashed, will retry", extra=context)
            self.on_result(channel, "retried", len(ids))
            return 0
        await self.store.mark_delivered(ids, self.clock())
        log.info("alert delivered", extra={**context, "alerts": len(ids)})
        self.on_result(channel, "sent", len(ids))
        return len(ids)

    def _progress(self, alerts: list[OwedAlert]) -> Progress:
        """The targets that already got these alerts (all of them, for a digest) and how
        to record more: durably, with every alert, so a restart does not re-send."""
        done = frozenset.intersection(*(frozenset(a.sent_to) for a in alerts))

        async def note(targets: list[str]) -> None:
            for alert in alerts:
                await self.store.note_sent(alert.id, targets)

        return Progress(done, note)
