"""Tests for watcher.metrics: helpers, and the real /metrics + /healthz listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from watcher import metrics


def sample(name: str, **labels: str) -> float:
    """Current value of one sample in the watcher registry (0 when absent)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse an exposition into {(sample name, labels): value}."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class Health:
    """A controllable health callback."""

    def __init__(self) -> None:
        self.result: dict[str, Any] = {"ok": True, "feeds": 3}
        self.error: Exception | None = None
        self.delay = 0.0

    async def __call__(self) -> dict[str, Any]:
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
async def server(health: Health) -> AsyncIterator[metrics.MetricsServer]:
    srv = metrics.MetricsServer("127.0.0.1:0", health)
    await srv.start()
    yield srv
    await srv.stop()


async def get(srv: metrics.MetricsServer, path: str) -> tuple[int, str, str]:
    """GET a path from the server: status, content type header, body."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{srv.port}{path}") as resp,
    ):
        return resp.status, resp.headers["Content-Type"], await resp.text()


def test_helpers_update_registry() -> None:
    before = {
        "polls": sample("watcher_polls_total", status="200"),
        "disabled": sample("watcher_polls_total", status="disabled"),
        "count": sample("watcher_poll_seconds_count"),
        "entries": sample("watcher_entries_parsed_total"),
        "match": sample("watcher_matches_total", topic="t-helpers"),
        "sent": sample("watcher_alerts_total", channel="c-helpers", result="sent"),
    }
    metrics.observe_poll(200, 0.2)
    metrics.observe_poll("disabled")
    metrics.count_entries(7)
    metrics.count_entries(0)
    metrics.count_match("t-helpers")
    metrics.count_alert("c-helpers", "sent")
    metrics.count_alert("c-helpers", "sent", 3)  # the outbox's on_result(channel, result, n)
    assert sample("watcher_polls_total", status="200") == before["polls"] + 1
    assert sample("watcher_polls_total", status="disabled") == before["disabled"] + 1
    assert sample("watcher_poll_seconds_count") == before["count"] + 1
    assert sample("watcher_entries_parsed_total") == before["entries"] + 7
    assert sample("watcher_matches_total", topic="t-helpers") == before["match"] + 1
    assert sample("watcher_alerts_total", channel="c-helpers", result="sent") == before["sent"] + 4


def test_poll_histogram_buckets_cover_10ms_to_30s() -> None:
    assert metrics.POLL_BUCKETS[0] == 0.01
    assert metrics.POLL_BUCKETS[-1] == 30.0
    le = sample("watcher_poll_seconds_bucket", le="0.25")
    metrics.observe_poll("304", 0.12)
    assert sample("watcher_poll_seconds_bucket", le="0.25") == le + 1


def test_gauges() -> None:
    metrics.set_feeds(12)
    metrics.mark_round(1_700_000_000.0)
    metrics.set_owed("gone", 4)
    metrics.set_owed_all({"desk-email": 2, "ops-hook": 0})
    assert sample("watcher_feeds") == 12
    assert sample("watcher_last_round_timestamp_seconds") == 1_700_000_000.0
    assert sample("watcher_alerts_owed", channel="desk-email") == 2
    assert metrics.REGISTRY.get_sample_value("watcher_alerts_owed", {"channel": "gone"}) is None


@pytest.mark.parametrize(
    "address", ["", "9464", "localhost", ":9464", "host:port", "h:70000", "::1:9464", "[::1]:"]
)
def test_bad_address_raises_clear_valueerror(address: str) -> None:
    with pytest.raises(ValueError, match="bad metrics address"):
        metrics.MetricsServer(address, Health())


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert metrics.parse_address(address) == expected


async def test_scrape_shows_counters(server: metrics.MetricsServer) -> None:
    assert server.port > 0
    metrics.observe_poll("error", 1.5)
    metrics.count_match("scrape-topic")
    metrics.count_match("scrape-topic")
    metrics.count_alert("scrape-hook", "retried")
    metrics.set_owed("scrape-hook", 3)
    expected_matches = sample("watcher_matches_total", topic="scrape-topic")
    status, ctype, text = await get(server, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    values = scraped(text)
    assert values[("watcher_matches_total", frozenset({("topic", "scrape-topic")}))] == (
        expected_matches
    )
    assert expected_matches >= 2
    key = frozenset({("channel", "scrape-hook"), ("result", "retried")})
    assert values[("watcher_alerts_total", key)] >= 1
    assert values[("watcher_alerts_owed", frozenset({("channel", "scrape-hook")}))] == 3
    assert values[("watcher_polls_total", frozenset({("status", "error")}))] >= 1
    assert "watcher_poll_seconds_bucket" in text
    assert "watcher_build_info" in text
    assert "python_info" in text
    assert "# TYPE watcher_polls_total counter" in text
    assert "_created" not in text


async def test_healthz_ok(server: metrics.MetricsServer) -> None:
    status, ctype, body = await get(server, "/healthz")
    assert status == 200
    assert ctype.startswith("application/json")
    assert body == '{"ok": true, "feeds": 3}'


async def test_healthz_not_ok_is_503(server: metrics.MetricsServer, health: Health) -> None:
    health.result = {"ok": False, "reason": "store unavailable"}
    status, _, body = await get(server, "/healthz")
    assert status == 503
    assert body == '{"ok": false, "reason": "store unavailable"}'


async def test_healthz_check_raising_is_503(server: metrics.MetricsServer, health: Health) -> None:
    health.error = RuntimeError("password=hunter2")
    status, _, body = await get(server, "/healthz")
    assert status == 503
    assert '"ok": false' in body
    assert "RuntimeError" in body
    assert "hunter2" not in body


async def test_healthz_hung_check_is_503(
    server: metrics.MetricsServer, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics.MetricsServer, "HEALTH_TIMEOUT", 0.05)
    health.delay = 1.0
    status, _, body = await get(server, "/healthz")
    assert status == 503
    assert "TimeoutError" in body


async def test_unknown_path_is_404(server: metrics.MetricsServer) -> None:
    status, _, _ = await get(server, "/")
    assert status == 404


async def test_stop_closes_listener_and_is_idempotent(health: Health) -> None:
    srv = metrics.MetricsServer("127.0.0.1:0", health)
    await srv.start()
    port = srv.port
    await srv.stop()
    await srv.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/healthz")


async def test_port_in_use_raises_oserror(server: metrics.MetricsServer, health: Health) -> None:
    other = metrics.MetricsServer(f"127.0.0.1:{server.port}", health)
    with pytest.raises(OSError):
        await other.start()
    await other.stop()
