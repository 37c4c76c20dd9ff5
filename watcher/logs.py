"""Logging setup: one line per event, with context passed through `extra=`.

Convention: use a plain module logger and put context in `extra`, never in the message:

    log = logging.getLogger(__name__)
    log.warning("poll failed", extra={"feed": url, "reason": "timeout"})

plain renders `WARNING watcher.fetch: poll failed feed=https://... reason=timeout`
(values with spaces or quotes are JSON-quoted); json renders one object per line:
`{"ts": ..., "level": "warning", "logger": "watcher.fetch", "msg": "poll failed",
"feed": "https://...", "reason": "timeout"}`. Usual keys: feed, topic, channel,
alert_id, status, error, seconds.

Under systemd (JOURNAL_STREAM or INVOCATION_ID set) plain lines carry no timestamp (the
journal adds one); when stderr is the journal stream each line also starts with a
syslog priority prefix (`<4>`) so `journalctl -p warning` works.

Secrets: this module offers nothing that dumps config. As a safety net, context keys
that look secret (password, secret, token, ...) are masked, and every URL in the message,
in context values and in tracebacks goes through `watcher.redact.mask_text` (credentials,
secret parameters, webhook path tokens).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from watcher.redact import MASK, mask_text

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
NOISY = ("apscheduler", "aiohttp.access", "asyncio", "pymorphy3")  # quiet at info, chatty at debug
SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_SECRET_KEY = re.compile(
    r"passw(or)?d|secret|token|authorization|api_?key|cookie|credential", re.IGNORECASE
)
_BARE = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f-\x9f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_JSON_RAW = re.compile(r"[\x7f-\x9f\u2028\u2029]")  # json.dumps leaves these as they are


def _json_dumps(value: Any) -> str:
    """json.dumps that also escapes DEL, C1 controls and line separators (\\u2028)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def context(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record, in the order given, secrets masked."""
    return {
        key: MASK if _SECRET_KEY.search(key) else _masked(value)
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


def _masked(value: Any) -> Any:
    """A context value with the secrets in any URL it quotes masked."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


def _message(record: logging.LogRecord) -> str:
    """The message on one line: a newline or terminal escape in it (from feed text, a
    server's reply) is shown escaped (\\n, \\x1b) so it cannot forge lines or colours."""
    text = mask_text(record.getMessage().rstrip())
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def _plain_value(value: Any) -> str:
    """Render a context value: bare when safe, JSON-quoted otherwise."""
    text = value if isinstance(value, str) else _json_value(value)
    return text if _BARE.fullmatch(text) else _json_dumps(text)


def _json_value(value: Any) -> str:
    """Compact JSON for non-string values (numbers, lists, None)."""
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


class PlainFormatter(logging.Formatter):
    """`[ts] LEVEL logger: msg k=v ...`, with an optional syslog priority prefix."""

    def __init__(self, timestamps: bool = True, priority_prefix: bool = False) -> None:
        """Choose whether lines carry a timestamp and a journal priority prefix."""
        super().__init__()
        self.timestamps = timestamps
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        """One line for the event; a traceback, if any, on the following lines."""
        parts = [record.levelname, f"{record.name}:", _message(record)]
        if self.timestamps:
            parts.insert(0, _timestamp(record, local=True))
        parts += [f"{k}={_plain_value(v)}" for k, v in context(record).items()]
        lines = [" ".join(parts), *_trace(self, record).splitlines()]
        if self.priority_prefix:
            prefix = f"<{SYSLOG_PRIORITY.get(record.levelno, 6)}>"
            lines = [prefix + line for line in lines]
        return "\n".join(lines)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, context fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise a record; context never overrides the core keys."""
        out: dict[str, Any] = {
            "ts": _timestamp(record, local=False),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_text(record.getMessage().rstrip()),  # JSON escapes controls
        }
        for key, value in context(record).items():
            out[f"ctx_{key}" if key in out else key] = value
        trace = _trace(self, record)
        if trace:
            out["exc"] = trace
        return _json_dumps(out)


def _timestamp(record: logging.LogRecord, local: bool) -> str:
    """ISO 8601 with milliseconds: local time for people, UTC for machines."""
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    if local:
        moment = moment.astimezone()
    return moment.isoformat(timespec="milliseconds")


def _trace(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """Formatted exception and stack info, or ''."""
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return mask_text("\n".join(parts))


def parse_level(level: str | int) -> int:
    """Map "debug".."critical" (any case) or a number to a logging level."""
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        choices = ", ".join(k for k in LEVELS if k != "warn")
        raise ValueError(f"unknown log level {level!r}: expected one of {choices}") from None


def journal_stream(stream: TextIO) -> bool:
    """True if `stream` is the journal connection systemd announced in JOURNAL_STREAM."""
    announced = os.environ.get("JOURNAL_STREAM", "")
    if not announced:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return True  # not a real file (e.g. a test buffer): trust the environment
    return announced == f"{st.st_dev}:{st.st_ino}"


def under_systemd() -> bool:
    """True when started by systemd (whose journal timestamps every line itself)."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


class _WatcherHandler(logging.StreamHandler):
    """Marks the handler setup_logging installed, so a second call replaces it."""


def setup_logging(
    level: str | int = "info",
    fmt: Literal["plain", "json"] = "plain",
    stream: TextIO | None = None,
    timestamps: bool | None = None,
) -> None:
    """Configure the root logger; calling again replaces the previous setup."""
    if fmt not in ("plain", "json"):
        raise ValueError(f"unknown log format {fmt!r}: expected 'plain' or 'json'")
    levelno = parse_level(level)
    out = stream if stream is not None else sys.stderr
    handler = _WatcherHandler(out)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        stamped = not under_systemd() if timestamps is None else timestamps
        handler.setFormatter(PlainFormatter(stamped, priority_prefix=journal_stream(out)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _WatcherHandler)]:
        root.removeHandler(old)
        old.close()  # a StreamHandler never closes its stream
    root.addHandler(handler)
    root.setLevel(levelno)
    noisy_level = logging.NOTSET if levelno <= logging.DEBUG else logging.WARNING
    for name in NOISY:
        logging.getLogger(name).setLevel(noisy_level)
    logging.captureWarnings(True)
