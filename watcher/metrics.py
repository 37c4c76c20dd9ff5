"""Prometheus metrics and the optional /metrics + /healthz HTTP listener.

All metrics live in REGISTRY (not prometheus_client's global one) and are named watcher_*.
The daemon updates them through the helper functions below and, when the config sets
`[watcher] metrics = "host:port"`, runs a MetricsServer on its own asyncio loop.
Label values come from the config (topic and channel names) or a short fixed set
(poll status), so cardinality stays bounded.

The registry is made (prometheus_client imported) when a MetricsServer is created or
REGISTRY is first read; until then the helpers count nothing, so the commands that serve no
/metrics (`once`, `check`, `status`, a daemon without `metrics`) never import it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from watcher import __version__

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
# the metric objects, made (with prometheus_client imported) by the first `registry()` call:
# a command that serves no /metrics (`once`, `check`, `status`) never imports it
_METRICS: dict[str, Any] = {}


def registry() -> CollectorRegistry:
    """The watcher registry (made on first use; the helpers below count from then on)."""
    if not _METRICS:
        _METRICS.update(_make_metrics())
    return _METRICS["REGISTRY"]


def _make_metrics() -> dict[str, Any]:
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        Info,
        disable_created_metrics,
    )
    from prometheus_client.gc_collector import GCCollector
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector

    disable_created_metrics()  # no *_created series: noise for a single long-running daemon
    reg = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    build = Info("watcher_build", "watcher version", registry=reg)
    build.info({"version": __version__})
    return {
        "REGISTRY": reg,
        "BUILD": build,
        "POLLS": Counter("watcher_polls", "Feed polls by outcome (HTTP status, error, disabled)",
                         ["status"], registry=reg),
        "POLL_SECONDS": Histogram("watcher_poll_seconds", "Time to fetch and parse one feed",
                                  buckets=POLL_BUCKETS, registry=reg),
        "ENTRIES": Counter("watcher_entries_parsed", "Feed entries parsed", registry=reg),
        "MATCHES": Counter("watcher_matches", "Entries matched, by topic", ["topic"],
                           registry=reg),
        "ALERTS": Counter("watcher_alerts",
                          "Alert delivery attempts by channel and result (sent/failed/retried)",
                          ["channel", "result"], registry=reg),
        "OWED": Gauge("watcher_alerts_owed", "Alerts in the outbox not yet delivered",
                      ["channel"], registry=reg),
        "FEEDS": Gauge("watcher_feeds", "Feeds configured", registry=reg),
        "LAST_ROUND": Gauge("watcher_last_round_timestamp_seconds",
                            "Unix time the last poll round finished", registry=reg),
        "RELOADS": Counter("watcher_reloads", "Config reloads by result (ok/failed)",
                           ["result"], registry=reg),
    }


def __getattr__(name: str) -> Any:
    """`metrics.REGISTRY`, `metrics.POLLS`...: the metric objects (made on first use)."""
    if name.isupper() and name != "POLL_BUCKETS":
        registry()
        if name in _METRICS:
            return _METRICS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def observe_poll(status: str | int, seconds: float | None = None) -> None:
    """Count one poll ("200", "304", "error", "disabled", ...) and its duration if timed."""
    if _METRICS:
        _METRICS["POLLS"].labels(status=str(status)).inc()
        if seconds is not None:
            _METRICS["POLL_SECONDS"].observe(max(0.0, seconds))


def count_entries(n: int = 1) -> None:
    """Count entries parsed from a feed."""
    if n > 0 and _METRICS:
        _METRICS["ENTRIES"].inc(n)


def count_match(topic: str) -> None:
    """Count one entry matched by a topic."""
    if _METRICS:
        _METRICS["MATCHES"].labels(topic=topic).inc()


def count_alert(channel: str, result: str, n: int = 1) -> None:
    """Count n alerts delivered as "sent", "failed" or "retried" (a digest carries many)."""
    if n > 0 and _METRICS:
        _METRICS["ALERTS"].labels(channel=channel, result=result).inc(n)


def set_owed(channel: str, n: int) -> None:
    """Set how many alerts the outbox owes a channel."""
    if _METRICS:
        _METRICS["OWED"].labels(channel=channel).set(n)


def set_owed_all(counts: Mapping[str, int]) -> None:
    """Replace every channel's owed count (drops channels no longer configured)."""
    if _METRICS:
        _METRICS["OWED"].clear()
        for channel, n in counts.items():
            set_owed(channel, n)


def set_feeds(n: int) -> None:
    """Set the number of configured feeds."""
    if _METRICS:
        _METRICS["FEEDS"].set(n)


def mark_round(timestamp: float | None = None) -> None:
    """Record that a poll round finished (now, unless a Unix time is given)."""
    if _METRICS:
        _METRICS["LAST_ROUND"].set(time.time() if timestamp is None else timestamp)


def count_reload(ok: bool) -> None:
    """Count one config reload attempt."""
    if _METRICS:
        _METRICS["RELOADS"].labels(result="ok" if ok else "failed").inc()


def parse_address(address: str) -> tuple[str, int]:
    """Split "host:port" (or "[v6]:port") into host and port; ValueError if malformed."""
    expected = 'expected "host:port", e.g. "127.0.0.1:9464" or "[::1]:9464"'
    host, sep, port_text = address.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"bad metrics address {address!r}: {expected}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"bad metrics address {address!r}: put an IPv6 host in brackets")
    port = int(port_text)
    if not host or port > 65535:
        raise ValueError(f"bad metrics address {address!r}: {expected}, port 0-65535")
    return host, port


HealthCheck = Callable[[], Awaitable[dict[str, Any]]]
_dumps = functools.partial(json.dumps, default=str)


class MetricsServer:
    """aiohttp listener on the daemon's loop serving GET /metrics and GET /healthz."""

    HEALTH_TIMEOUT = 5.0

    def __init__(self, address: str, health: HealthCheck) -> None:
        """Validate the address now so a bad config fails before start-up; from now on
        the helpers count."""
        self.host, self._port = parse_address(address)
        registry()
        self._health = health
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when the address asked for port 0)."""
        if self._runner is not None:
            for addr in self._runner.addresses:
                if isinstance(addr, tuple):
                    return int(addr[1])
        return self._port

    def _app(self) -> web.Application:
        """Routes (GET also answers HEAD)."""
        from aiohttp import web
        from prometheus_client.aiohttp import make_aiohttp_handler

        app = web.Application()
        app.router.add_get("/metrics", make_aiohttp_handler(registry()))
        app.router.add_get("/healthz", self._healthz)
        return app

    async def start(self) -> None:
        """Bind and serve; OSError if the address is in use or not local."""
        from aiohttp import web

        if self._runner is not None:
            return
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Close the listener; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        """200 with the health JSON when ok, else 503."""
        from aiohttp import web

        try:
            async with asyncio.timeout(self.HEALTH_TIMEOUT):
                body = dict(await self._health())
        except Exception as exc:  # a failing check is itself unhealthy
            log.warning("health check failed", extra={"error": type(exc).__name__})
            body = {"ok": False, "error": f"health check failed: {type(exc).__name__}"}
        status = 200 if body.get("ok") is True else 503
        return web.json_response(body, status=status, dumps=_dumps)
