"""The outbox worker: delivers owed alerts, retries with backoff, never drops one.

An alert row is written in the same transaction that records its match, so it is either owed
or was never owed. This worker is the only place that changes its delivery state.

A channel that fails for a while (a timeout, a 503) is tried twice a pass: once two alerts
in a row fail, the rest wait with them, untried, so a dead receiver costs two timeouts a
pass instead of one per owed alert, which every other channel's alerts would wait for; an
alert that fails alone (its own content) holds no other back. A digest refused
for good is sent again in halves, to fail only the alert a relay's filter refuses.

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
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class _Sent:
    """How one send went, when not refused for good: alerts delivered, or when to retry."""

    delivered: int
    retry_at: datetime | None = None
    reason: str = ""


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
        self._failing: dict[str, _Sent] = {}  # channels failing in this pass, and how

    def configure(self, senders: Mapping[str, Sender], digest_channels: set[str],
                  retry_base: timedelta = timedelta(seconds=15)) -> None:
        """Use new senders (after a reload); owed alerts stay owed."""
        self.senders = dict(senders)
        self.digest_channels = digest_channels
        self.retry_base = retry_base
        self._failing = {}  # a channel the reload fixed is tried again at once

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
        self._failing = {}
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
                                        self.clock() + timedelta(hours=1), tried=False)
            log.warning("alerts owed to a missing channel", extra={
                "channel": channel, "owed": len(alerts)})
            return 0
        if (failing := self._failing.get(channel)) is not None:  # in an earlier batch
            await self._defer(channel, alerts, failing)
            return 0
        if channel in self.digest_channels:
            outcome = await self._attempt(channel, sender, alerts, digest_id(alerts))
            if isinstance(outcome, PermanentDeliveryError):
                return await self._isolate(channel, sender, alerts, outcome)
            if outcome.retry_at is not None:
                self._failing[channel] = outcome
            return outcome.delivered
        delivered, failed_before = 0, False
        # the least tried first: alerts that keep failing on their own (their payload) sink
        # below the others, which a failing pair at the head would otherwise hold back
        alerts = sorted(alerts, key=lambda a: a.attempts)
        for n, alert in enumerate(alerts):
            outcome = await self._attempt(channel, sender, [alert], alert.id)
            if isinstance(outcome, PermanentDeliveryError):  # the channel answered
                await self._fail(channel, [alert], alert.id, outcome)
                failed_before = False
                continue
            delivered += outcome.delivered
            if outcome.retry_at is None:
                failed_before = False
            elif failed_before:  # two in a row: the channel fails, not one alert
                self._failing[channel] = outcome
                await self._defer(channel, alerts[n + 1:], outcome)
                break
            else:  # maybe this alert's own trouble: the next one is tried all the same
                failed_before = True
        return delivered

    async def _defer(self, channel: str, alerts: list[OwedAlert], failed: _Sent) -> None:
        """Alerts not tried because their channel has just failed twice in a row: each
        attempt could cost the channel's whole timeout, and every other channel's alerts
        wait for the pass."""
        if alerts:
            await self.store.mark_retry([a.id for a in alerts],
                                        f"not tried: the channel is failing ({failed.reason})",
                                        failed.retry_at or self.clock(), tried=False)
            log.info("alerts wait for their failing channel", extra={
                "channel": channel, "deferred": len(alerts)})

    async def _isolate(self, channel: str, sender: Sender, alerts: list[OwedAlert],
                       refusal: PermanentDeliveryError) -> int:
        """A digest the channel refused for good is sent again in halves, so one alert it
        refuses (a relay's content filter) does not fail the others. When both halves are
        refused too the refusal is the channel's, not an alert's: all of them fail."""
        if len(alerts) == 1:
            await self._fail(channel, alerts, digest_id(alerts), refusal)
            return 0
        log.info("digest refused; sending it in halves to find the alert refused", extra={
            "channel": channel, "alert_id": digest_id(alerts), "alerts": len(alerts)})
        middle = len(alerts) // 2
        halves = [alerts[:middle], alerts[middle:]]
        outcomes = [await self._attempt(channel, sender, half, digest_id(half))
                    for half in halves]
        delivered = sum(o.delivered for o in outcomes if isinstance(o, _Sent))
        refused = [(half, o) for half, o in zip(halves, outcomes, strict=True)
                   if isinstance(o, PermanentDeliveryError)]
        if len(refused) == 1:
            return delivered + await self._isolate(channel, sender, *refused[0])
        for half, outcome in refused:
            await self._fail(channel, half, digest_id(half), outcome)
        return delivered

    async def _attempt(self, channel: str, sender: Sender, alerts: list[OwedAlert],
                       delivery_id: str) -> _Sent | PermanentDeliveryError:
        """Send once and record the outcome, except a refusal for good: returned, for the
        caller to record (`_fail`) or to split the digest (`_isolate`)."""
        ids = [a.id for a in alerts]
        context = {"channel": channel, "alert_id": delivery_id, "topic": alerts[0].message.topic}
        attempts = max(a.attempts for a in alerts)
        try:
            await sender.send([a.message for a in alerts], delivery_id,
                              self._progress(alerts))
        except TemporaryDeliveryError as exc:
            wait = schedule.delivery_backoff(attempts, exc.retry_after, self.retry_base)
            wait *= random.uniform(0.8, 1.2) if exc.retry_after is None else 1.0
            reason = mask_text(str(exc))
            await self.store.mark_retry(ids, reason, self.clock() + wait)
            log.warning("delivery failed, will retry", extra={
                **context, "reason": reason, "attempt": attempts + 1,
                "retry_in": f"{wait.total_seconds():.0f}s"})
            self.on_result(channel, "retried", len(ids))
            return _Sent(0, self.clock() + wait, reason)
        except PermanentDeliveryError as exc:
            return exc
        except Exception as exc:  # a bug in a sender must not lose the alert
            reason = mask_text(f"unexpected error: {exc!r}")
            retry_at = self.clock() + schedule.delivery_backoff(attempts, None, self.retry_base)
            await self.store.mark_retry(ids, reason, retry_at)
            log.exception("delivery crashed, will retry", extra=context)
            self.on_result(channel, "retried", len(ids))
            return _Sent(0, retry_at, reason)
        await self.store.mark_delivered(ids, self.clock())
        log.info("alert delivered", extra={**context, "alerts": len(ids)})
        self.on_result(channel, "sent", len(ids))
        return _Sent(len(ids))

    async def _fail(self, channel: str, alerts: list[OwedAlert], delivery_id: str,
                    exc: PermanentDeliveryError) -> None:
        reason = mask_text(str(exc))
        await self.store.mark_failed([a.id for a in alerts], reason)
        log.error("delivery failed permanently; see `watcher status`, requeue with "
                  "`watcher retry`", extra={"channel": channel, "alert_id": delivery_id,
                                            "topic": alerts[0].message.topic,
                                            "reason": reason})
        self.on_result(channel, "failed", len(alerts))

    def _progress(self, alerts: list[OwedAlert]) -> Progress:
        """The targets that already got these alerts (all of them, for a digest) and how
        to record more: durably, with every alert, so a restart does not re-send."""
        done = frozenset.intersection(*(frozenset(a.sent_to) for a in alerts))

        async def note(targets: list[str]) -> None:
            for alert in alerts:
                await self.store.note_sent(alert.id, targets)

        return Progress(done, note)
