"""Timing rules (pure): poll intervals, adaptive intervals, error backoff, digest periods,
and a feed's next state after a poll."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from msgspec.structs import replace

from watcher.config import FeedSettings, WatcherSettings
from watcher.model import FeedState

MAX_ERROR_BACKOFF = timedelta(hours=24)
MAX_DELIVERY_BACKOFF = timedelta(hours=1)
AUTO_MIN = timedelta(minutes=5)
AUTO_MAX = timedelta(hours=6)
AUTO_START = timedelta(minutes=30)


def base_interval(feed: FeedSettings, settings: WatcherSettings,
                  state: FeedState | None = None) -> timedelta:
    """The feed's poll interval now: configured, adaptive, or the default; never under the floor."""
    if feed.interval == "auto":
        value = timedelta(seconds=state.interval_s) if state and state.interval_s else AUTO_START
    else:
        value = feed.interval or settings.interval
    return max(value, settings.interval_floor)


def feed_interval(feed: FeedSettings, state: FeedState, settings: WatcherSettings,
                  new_entries: int, now: datetime) -> timedelta:
    """The interval to use after a successful poll that found `new_entries`."""
    current = base_interval(feed, settings, state)
    if feed.interval != "auto" or not state.primed:
        return current
    if new_entries == 0:
        adapted = current * 1.5  # quiet: look less often
    elif new_entries >= 3:
        adapted = current / 2  # busy: we may be missing the middle of a burst
    else:
        adapted = current
    low = max(AUTO_MIN, settings.interval_floor)
    return min(max(adapted, low), AUTO_MAX)


Draw = Callable[[float, float], float]  # random.uniform, or a fixed draw in tests


def after_success(feed: FeedSettings, state: FeedState, settings: WatcherSettings, *,
                  now: datetime, status: int, etag: str | None, last_modified: str | None,
                  moved_to: str | None, new_entries: int,
                  draw: Draw = random.uniform) -> FeedState:
    """The feed's state after a successful poll (200 or 304): errors cleared, validators
    kept, next poll one (jittered) interval away."""
    interval = feed_interval(feed, state, settings, new_entries, now)
    jitter = settings.jitter
    return replace(
        state, current_url=moved_to or state.current_url, etag=etag,
        last_modified=last_modified, last_poll_at=now, last_status=status, last_error=None,
        error_count=0, last_success_at=now,
        next_poll_at=now + interval * draw(1 - jitter, 1 + jitter),
        interval_s=interval.total_seconds() if feed.interval == "auto" else None)


def after_failure(feed: FeedSettings, state: FeedState, settings: WatcherSettings, *,
                  now: datetime, status: int, reason: str, retry_after: float | None,
                  moved_to: str | None, draw: Draw = random.uniform) -> tuple[FeedState,
                                                                              timedelta]:
    """The feed's state after a failed poll, and the wait before the next one: backoff
    doubling from the interval (a Retry-After may lengthen it); HTTP 410 disables the feed."""
    errors = state.error_count + 1
    delay = error_backoff(errors, base_interval(feed, settings, state), retry_after)
    disabled = f"HTTP 410 Gone at {now:%Y-%m-%d %H:%M} UTC: the feed was removed" \
        if status == 410 else None
    return replace(state, last_poll_at=now, last_status=status or None, last_error=reason,
                   error_count=errors, disabled_reason=disabled,
                   next_poll_at=now + delay * draw(0.9, 1.1),
                   current_url=moved_to or state.current_url), delay


def error_backoff(errors: int, interval: timedelta, retry_after: float | None) -> timedelta:
    """Wait after `errors` consecutive failures: doubling from the interval, capped at 24 h.

    A server's Retry-After can lengthen the wait (up to the cap), never shorten it."""
    backoff = min(interval * 2 ** min(errors - 1, 16), MAX_ERROR_BACKOFF)
    if retry_after is not None:
        return min(max(timedelta(seconds=retry_after), backoff), MAX_ERROR_BACKOFF)
    return backoff


def delivery_backoff(attempts: int, retry_after: float | None = None,
                     base: timedelta = timedelta(seconds=15)) -> timedelta:
    """Wait before the next delivery attempt: `base` doubling, capped at 1 h (or Retry-After)."""
    if retry_after is not None:
        return timedelta(seconds=min(max(retry_after, 1.0), 6 * 3600))
    return min(base * 2 ** min(attempts, 16), MAX_DELIVERY_BACKOFF)


def digest_due(digest: timedelta | str, now: datetime, timezone: str = "UTC") -> datetime:
    """When an alert created `now` is delivered: now, the end of its period, or the daily time."""
    if isinstance(digest, str):
        return _next_daily(digest, now, ZoneInfo(timezone))
    if digest <= timedelta(0):
        return now
    period = digest.total_seconds()
    return datetime.fromtimestamp(math.floor(now.timestamp() / period + 1) * period, tz=UTC)


def _next_daily(hhmm: str, now: datetime, tz: ZoneInfo) -> datetime:
    hour, minute = (int(p) for p in hhmm.split(":"))
    local = now.astimezone(tz)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = (candidate + timedelta(days=1)).replace(hour=hour, minute=minute)
    return candidate.astimezone(UTC)
