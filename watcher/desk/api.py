"""The JSON API's documents (pure): stories, alerts (as `watcher alerts --json`), feeds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from watcher.config import parse_duration
from watcher.desk.model import AlertView, OutletView, StoryView
from watcher.model import AlertRecord
from watcher.report import alert_json

MAX_LIMIT = 1000


class BadQuery(ValueError):
    """A query parameter the API cannot use; the message says which and what it expects."""


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(when: datetime | None) -> str | None:
    return rfc3339(when) if when is not None else None


def outlet_json(o: OutletView) -> dict[str, Any]:
    """One outlet as the API and the JSON Feed give it."""
    return {"feed": o.feed, "title": o.title, "link": o.link, "language": o.language,
            "seen_at": rfc3339(o.seen_at)}


def story_alert_json(a: AlertView) -> dict[str, Any]:
    return {"id": a.id, "channel": a.channel, "state": a.state, "kind": a.kind,
            "attempts": a.attempts, "last_error": a.last_error,
            "created_at": rfc3339(a.created_at), "delivered_at": iso(a.delivered_at),
            "due_at": iso(a.due_at) if a.state in ("owed", "retrying") else None}


def story_json(s: StoryView) -> dict[str, Any]:
    """A story as `/api/stories` lists it (the fields docs/DESIGN.md promises, and more)."""
    data: dict[str, Any] = {
        "id": s.id, "topic": s.topic, "title": s.title, "link": s.link,
        "first_seen": rfc3339(s.first_seen), "opened_at": rfc3339(s.opened_at),
        "summary": s.summary, "outlets": [outlet_json(o) for o in s.outlets],
        "alerts": [story_alert_json(a) for a in s.alerts]}
    if s.score is not None:
        data["score"] = s.score
        data["explanation"] = [{"phrase": h.phrase, "field": h.field, "text": h.text,
                                "score": round(h.score, 1)} for h in s.hits]
    return data


def alerts_json(records: list[AlertRecord]) -> dict[str, Any]:
    """`{"alerts": [...]}`, each alert with the fields of `watcher alerts --json`."""
    return {"alerts": [alert_json(r) for r in records]}


def feed_json(feed: dict[str, Any]) -> dict[str, Any]:
    """A feed of `watcher status` data with its times as RFC 3339 strings."""
    return {k: rfc3339(v) if isinstance(v, datetime) else v for k, v in feed.items()}


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """`since=`: an age ("1d", "6h") or an ISO date/time (UTC unless it names a zone)."""
    if not text:
        return None
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    except OverflowError:  # "99999999d": before the first year
        raise BadQuery(f"since: {text!r} reaches back past year 1") from None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"since: expected an age such as 1d or 6h, or a date such as "
                       f"2025-02-24, got {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_limit(text: str | None, default: int) -> int:
    if not text:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 6) \
            or not 1 <= int(text) <= MAX_LIMIT:
        raise BadQuery(f"limit: expected a number from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)
