"""Timing rules: intervals, adaptive intervals, backoff, digest periods (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.config import FeedSettings, WatcherSettings
from watcher.model import FeedState
from watcher.schedule import (
    AUTO_MAX,
    MAX_ERROR_BACKOFF,
    after_failure,
    after_success,
    base_interval,
    delivery_backoff,
    digest_due,
    error_backoff,
    feed_interval,
)

SETTINGS = WatcherSettings.from_table({"interval": "10m", "interval_floor": "2m"})
NOW = datetime(2025, 2, 24, 10, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(("configured", "expected"), [
    (None, timedelta(minutes=10)), ("5m", timedelta(minutes=5)),
    ("30s", timedelta(minutes=2)),  # the floor wins
])
def test_base_interval(configured: str | None, expected: timedelta) -> None:
    feed = FeedSettings.from_table({"url": "https://x.example/rss", "interval": configured})
    assert base_interval(feed, SETTINGS) == expected


@pytest.mark.parametrize(("errors", "retry_after", "expected"), [
    (1, None, timedelta(minutes=10)),
    (3, None, timedelta(minutes=40)),
    (30, None, MAX_ERROR_BACKOFF),  # capped at 24 h
    (1, 3600.0, timedelta(hours=1)),  # Retry-After lengthens the wait ...
    (3, 0.0, timedelta(minutes=40)),  # ... never shortens it
    (1, 10 * 86400.0, MAX_ERROR_BACKOFF),
])
def test_error_backoff(errors: int, retry_after: float | None, expected: timedelta) -> None:
    assert error_backoff(errors, timedelta(minutes=10), retry_after) == expected


def test_adaptive_interval_follows_the_feed_pace_within_bounds() -> None:
    feed = FeedSettings.from_table({"url": "https://x.example/rss", "interval": "auto"})
    state = FeedState(url=feed.url, primed=True, interval_s=1800)
    assert feed_interval(feed, state, SETTINGS, 0, NOW) == timedelta(minutes=45)  # quiet
    assert feed_interval(feed, state, SETTINGS, 5, NOW) == timedelta(minutes=15)  # busy
    assert feed_interval(feed, state, SETTINGS, 1, NOW) == timedelta(minutes=30)
    quiet = FeedState(url=feed.url, primed=True, interval_s=AUTO_MAX.total_seconds())
    assert feed_interval(feed, quiet, SETTINGS, 0, NOW) == AUTO_MAX
    busy = FeedState(url=feed.url, primed=True, interval_s=60)
    assert feed_interval(feed, busy, SETTINGS, 9, NOW) == timedelta(minutes=5)


def test_delivery_backoff_grows_and_caps_and_honours_retry_after() -> None:
    waits = [delivery_backoff(n).total_seconds() for n in range(12)]
    assert waits[0] == 15 and waits == sorted(waits) and waits[-1] == 3600
    assert delivery_backoff(2, retry_after=120).total_seconds() == 120
    assert delivery_backoff(0, base=timedelta(seconds=2)).total_seconds() == 2
    assert delivery_backoff(3, base=timedelta(seconds=2)).total_seconds() == 16


@pytest.mark.parametrize(("digest", "tz", "expected"), [
    (timedelta(0), "UTC", NOW),
    (timedelta(minutes=15), "UTC", datetime(2025, 2, 24, 10, 15, tzinfo=UTC)),
    ("08:00", "UTC", datetime(2025, 2, 25, 8, 0, tzinfo=UTC)),
    ("12:30", "Europe/Kyiv", datetime(2025, 2, 24, 10, 30, tzinfo=UTC)),
])
def test_digest_due(digest: timedelta | str, tz: str, expected: datetime) -> None:
    assert digest_due(digest, NOW, tz) == expected


def middle(low: float, high: float) -> float:
    return (low + high) / 2  # no jitter: the draw in the middle of its range


def test_after_success_clears_errors_keeps_validators_and_moves_on_one_interval() -> None:
    feed = FeedSettings(url="https://x.example/rss")
    failing = FeedState(url=feed.url, error_count=4, last_error="HTTP 500", etag='"old"')
    state = after_success(feed, failing, SETTINGS, now=NOW, status=200, etag='"new"',
                          last_modified="Mon, 24 Feb 2025 10:00:00 GMT",
                          moved_to="https://y.example/rss", new_entries=2, draw=middle)
    assert (state.error_count, state.last_error, state.last_status) == (0, None, 200)
    assert (state.etag, state.current_url) == ('"new"', "https://y.example/rss")
    assert state.next_poll_at == NOW + timedelta(minutes=10)
    assert state.last_success_at == NOW and state.interval_s is None
    assert failing.error_count == 4  # the old state is not changed


@pytest.mark.parametrize(("status", "errors", "retry_after", "wait", "disabled"), [
    (500, 0, None, timedelta(minutes=10), False),
    (500, 2, None, timedelta(minutes=40), False),  # the third failure in a row
    (429, 0, 7200.0, timedelta(hours=2), False),  # the server's wait is longer
    (410, 0, None, timedelta(minutes=10), True),  # gone: disabled for good
    (0, 0, None, timedelta(minutes=10), False),  # no response at all
])
def test_after_failure_backs_off_and_disables_a_gone_feed(
        status: int, errors: int, retry_after: float | None, wait: timedelta,
        disabled: bool) -> None:
    feed = FeedSettings(url="https://x.example/rss")
    before = FeedState(url=feed.url, error_count=errors, etag='"e"')
    state, delay = after_failure(feed, before, SETTINGS, now=NOW, status=status,
                                 reason="it failed", retry_after=retry_after, moved_to=None,
                                 draw=middle)
    assert delay == wait and state.next_poll_at == NOW + wait
    assert (state.error_count, state.last_error, state.etag) == (errors + 1, "it failed", '"e"')
    assert state.last_status == (status or None)
    assert (state.disabled_reason is not None) == disabled
