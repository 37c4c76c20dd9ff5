"""What `watcher status`, `alerts` and `retry` print: the commands that read the state store.

`status` shows the daemon, feeds, topics, latest stories, channels, nodes, blocked hosts and
failed alerts (`status_data` is the same as plain data; `_feed_data` is also the desk's view
of a feed); `alerts` lists past alerts with their delivery state (`alert_json` is one alert
as `--json` and the desk's API print it); `retry` puts failed alerts back in the outbox. None
of them creates a state file, and URLs and error texts are masked. `watcher test`'s output
is in watcher.report, which re-exports the names callers import from here.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from watcher import schedule
from watcher.config import Config, FeedSettings
from watcher.html import without_controls
from watcher.model import AlertRecord, FeedState, fingerprint_conflicts
from watcher.redact import mask_text, mask_url
from watcher.store import open_config_store
from watcher.store.base import ReportStore

_EPOCH_1970 = datetime(1970, 1, 1, tzinfo=UTC)


# --- status ---

def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    if seconds < 0:
        return "in " + _span(-seconds)
    return _span(seconds) + " ago"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _next_poll(state: FeedState, config: Config, url: str) -> datetime | None:
    if state.disabled_reason:
        return None
    if state.next_poll_at:
        return state.next_poll_at
    feed = next((f for f in config.feeds if f.url == url), None)
    if feed is None or state.last_poll_at is None:
        return None
    return state.last_poll_at + schedule.base_interval(feed, config.watcher, state)


def _table(rows: list[list[str]], out: TextIO) -> None:
    # cells hold feeds' titles and receivers' replies: no control reaches the terminal
    rows = [[" ".join(without_controls(cell).split()) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(),
              file=out)


async def status(config: Config, out: TextIO | None = None, *, as_json: bool = False) -> int:
    """Daemon, feeds, topics and channels as the state store sees them (works while the
    daemon runs; never creates a state file). URLs and errors are masked."""
    out = out or sys.stdout
    store = await open_config_store(config, create=False)
    try:
        data = await status_data(store, config, datetime.now(UTC))
    finally:
        await store.close()
    if as_json:
        out.write(json.dumps(data, ensure_ascii=False, default=_json_default, indent=2) + "\n")
    else:
        _print_status(data, datetime.now(UTC), out)
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return _iso(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


async def status_data(store: ReportStore, config: Config, now: datetime) -> dict[str, Any]:
    """What `watcher status` shows, as plain data (datetimes stay datetimes)."""
    nodes = await store.nodes()
    running = [n for n in nodes if n.alive(now)]
    states = await store.feed_states([f.url for f in config.feeds])
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = await store.alerts_since(midnight)
    counts = await store.channel_counts()
    names = [c.name for c in config.channels] + sorted(
        set(counts) - {c.name for c in config.channels})
    odd = {n.node for n in fingerprint_conflicts(nodes, config.fingerprint, now)}
    return {
        "daemon": {"running": bool(running), "nodes": [
            {"node": n.node, "host": n.hostname, "pid": n.pid} for n in running]},
        "feeds": [_feed_data(feed, states[feed.url], config, now, bool(running))
                  for feed in config.feeds],
        "topics": [{"name": t.name, "alerts_today": today.get(t.name, 0),
                    "channels": list(t.channels)} for t in config.topics],
        "stories": [{"title": s.title, "topic": s.topic, "opened_at": s.opened_at,
                     "outlets": s.outlets}
                    for s in await store.recent_stories(_EPOCH_1970, 10)],
        "channels": [{"name": name, "owed": counts[name].owed if name in counts else 0,
                      "failed": counts[name].failed if name in counts else 0,
                      "delivered": counts[name].delivered if name in counts else 0}
                     for name in names],
        "nodes": [{"node": n.node, "heartbeat_at": n.heartbeat_at, "alive": n.alive(now),
                   "leased": n.leased, "inflight": n.inflight,
                   "config_digest": n.config_fingerprint, "config_differs": n.node in odd}
                  for n in nodes],
        "blocked_hosts": [{"host": host, "until": until}
                          for host, until in (await store.blocked_hosts(now)).items()],
        "failed_alerts": [{"created_at": f.created_at, "channel": f.channel, "topic": f.topic,
                           "title": f.title, "error": mask_text(f.error)}
                          for f in await store.failed_alerts(10)],
    }


def _feed_data(feed: FeedSettings, st: FeedState, config: Config, now: datetime,
               running: bool) -> dict[str, Any]:
    next_at = _next_poll(st, config, feed.url)
    if st.disabled_reason:
        when = "disabled"
    elif next_at is None:
        when = "-"
    elif next_at <= now:
        when = "due now" if running else "overdue"
    else:
        when = _ago(next_at, now)
    return {"name": feed.name or mask_url(feed.url), "url": mask_url(feed.url),
            "last_poll_at": st.last_poll_at, "http_status": st.last_status,
            "entries": st.entries_total, "errors": st.error_count, "next_poll_at": next_at,
            "next_poll": when, "disabled": st.disabled_reason or None,
            "problem": mask_text(st.disabled_reason or st.last_error or "") or None}


def _print_status(data: dict[str, Any], now: datetime, out: TextIO) -> None:
    running = data["daemon"]["nodes"]
    if running:
        print("daemon: running on " + ", ".join(
            f"host {n['host']} (pid {n['pid']})" if n["host"] and n["pid"] else n["node"]
            for n in running), file=out)
    else:
        print("no daemon running", file=out)
    print(file=out)
    _table([["FEED", "LAST POLL", "HTTP", "ENTRIES", "ERRORS", "NEXT POLL", "PROBLEM"]] + [
        [f["name"][:48], _ago(f["last_poll_at"], now), str(f["http_status"] or "-"),
         str(f["entries"]), str(f["errors"]), f["next_poll"], (f["problem"] or "")[:70]]
        for f in data["feeds"]], out)
    print(file=out)
    _table([["TOPIC", "ALERTS TODAY", "CHANNELS"]] + [
        [t["name"], str(t["alerts_today"]), ", ".join(t["channels"])] for t in data["topics"]],
        out)
    if data["stories"]:
        print(file=out)
        _table([["LATEST STORIES", "TOPIC", "WHEN", "OUTLETS"]] + [
            [s["title"][:60], s["topic"], f"{s['opened_at']:%Y-%m-%d %H:%M}",
             f"{len(s['outlets'])}: {', '.join(s['outlets'])}"[:80]] for s in data["stories"]],
            out)
    print(file=out)
    _table([["CHANNEL", "OWED", "FAILED", "DELIVERED"]] + [
        [c["name"], str(c["owed"]), str(c["failed"]), str(c["delivered"])]
        for c in data["channels"]], out)
    if data["nodes"]:
        print(file=out)
        _table([["NODE", "HEARTBEAT", "FEEDS LEASED", "IN FLIGHT", "CONFIG"]] + [
            [n["node"], _ago(n["heartbeat_at"], now) + ("" if n["alive"] else " (dead)"),
             str(n["leased"]), str(n["inflight"] if n["inflight"] is not None else "-"),
             n["config_digest"][:12] + (" DIFFERS FROM THIS CONFIG" if n["config_differs"]
                                        else "")] for n in data["nodes"]], out)
    if data["blocked_hosts"]:
        print("\nhosts asked us to wait (Retry-After):", file=out)
        for b in data["blocked_hosts"]:
            print(f"  {b['host']} until {b['until']:%Y-%m-%d %H:%M:%S} UTC", file=out)
    if data["failed_alerts"]:
        print("\nfailed alerts (re-queue with `watcher retry`):", file=out)
        for f in data["failed_alerts"]:
            print(f"  {f['created_at']:%Y-%m-%d %H:%M} {f['channel']} [{f['topic']}] "
                  f"{f['title'][:60]!r}: {' '.join(without_controls(f['error']).split())}",
                  file=out)


async def retry(config: Config, channel: str | None, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """Put failed alerts back in the outbox; the daemon (or `watcher once`) delivers them.
    An unknown channel (neither configured nor in the outbox) is a usage error (exit 2)."""
    out, err = out or sys.stdout, err or sys.stderr
    store = await open_config_store(config, create=False)
    try:
        if channel is not None:
            known = {c.name for c in config.channels} | set(await store.channel_counts())
            if channel not in known:
                print(f"watcher retry: no channel named {channel!r} (channels: "
                      f"{', '.join(sorted(known)) or 'none'})", file=err)
                return 2
        n = await store.requeue_failed(channel, datetime.now(UTC) - timedelta(seconds=1))
    finally:
        await store.close()
    print(f"re-queued {n} failed alert(s){f' for {channel}' if channel else ''}", file=out)
    return 0


# --- alerts ---

def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def alert_json(a: AlertRecord) -> dict[str, object]:
    """One alert as `watcher alerts --json` prints it (error text masked)."""
    return {"id": a.id, "topic": a.topic, "channel": a.channel, "story": a.story,
            "title": a.title, "link": a.link, "feed": a.feed, "state": a.state,
            "attempts": a.attempts, "last_error": mask_text(a.last_error or "") or None,
            "created_at": _iso(a.created_at), "delivered_at": _iso(a.delivered_at)}


async def alerts(config: Config, *, topic: str | None = None, since: datetime | None = None,
                 state: str | None = None, limit: int = 500, as_json: bool = False,
                 out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Past alerts, newest first, with their delivery state; an unknown topic is exit 2."""
    out, err = out or sys.stdout, err or sys.stderr
    store = await open_config_store(config, create=False)
    try:
        records = await store.alert_history(topic=topic, since=since, status=state,
                                            limit=limit)
        if topic is not None and not records and topic not in {t.name for t in config.topics} \
                and not await store.alert_history(topic=topic, limit=1):
            print(f"watcher alerts: no topic named {topic!r} (topics: "
                  f"{', '.join(t.name for t in config.topics) or 'none'})", file=err)
            return 2
    finally:
        await store.close()
    if as_json:
        for record in records:
            out.write(json.dumps(alert_json(record), ensure_ascii=False) + "\n")
        return 0
    if not records:
        print("no alerts" + _filters(topic, since, state), file=out)
        return 0
    _table([["CREATED", "TOPIC", "CHANNEL", "STATE", "TRIES", "TITLE", "ERROR"]] + [
        [f"{a.created_at:%Y-%m-%d %H:%M}", a.topic, a.channel, a.state, str(a.attempts),
         a.title[:60], mask_text(a.last_error or "")[:70]] for a in records], out)
    if len(records) == limit:
        print(f"(the newest {limit}; --limit shows more)", file=out)
    return 0


def _filters(topic: str | None, since: datetime | None, state: str | None) -> str:
    parts = [f"topic {topic}" if topic else "", f"since {since:%Y-%m-%d %H:%M} UTC"
             if since else "", f"state {state}" if state else ""]
    return f" ({', '.join(p for p in parts if p)})" if any(parts) else ""
