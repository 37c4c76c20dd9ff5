"""Apprise channel: alerts to Telegram, Slack, Matrix, ntfy, Teams, Discord, ... via Apprise.

Service URLs hold tokens, so they come only from `urls_env` or `urls_file` (one URL per
line, or separated by whitespace or commas; lines starting with '#' are comments) and are
never logged or put in an error: a target is named "<service> #<n>" (its position), and
whatever Apprise reports is scrubbed of every URL fragment that could be a secret.
Apprise's own log lines can quote whole URLs ("Unparseable URL tgram://<token>/...") and
urllib3's debug lines quote request paths (Telegram's carry the bot token), so the
`apprise` logger does not reach our handlers and `urllib3` is kept above debug; the reason
for a failure is taken from the log lines Apprise captures per call instead.

Delivery: each URL is its own Apprise object, notified off the event loop (Apprise is
blocking: requests underneath). `notify()` only says success or failure, so failures are
classified from what Apprise logged: an HTTP 4xx (other than 408/425/429) from every
failing target is permanent (bad token, unknown chat: retrying cannot help; `watcher retry`
re-queues after a fix); anything else (connection errors, timeouts, 5xx, 429, no detail)
is temporary and retried with backoff. Targets that already took a delivery are recorded
with the alert in the store (`Progress.note` -> `Store.note_sent`, by a hash of the target
URL, never the URL) and in memory, so a retry after a partial failure, also after a
restart, goes only to the targets that missed it.

Feed text is hostile: no mention (`@everyone`, `<@id>`, `@room`, ...) can notify anyone
(`render.no_mentions`, on the title and the body) and links are percent-encoded
(`render.chat_link`), whatever the service's own formatting does with them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import apprise

from watcher.config import AppriseChannel, ConfigError, resolve_secret
from watcher.model import AlertMessage
from watcher.notify.base import PermanentDeliveryError, Progress, TemporaryDeliveryError
from watcher.notify.render import (
    chat_link,
    email_subject,
    feed_label,
    headline,
    no_mentions,
    one_line,
    outlets,
    stories,
)
from watcher.redact import mask_fragments as redact
from watcher.redact import secret_fragments

if TYPE_CHECKING:
    import aiohttp

MAX_STORIES = 25  # stories listed in one chat message; the rest are counted
REASON_CHARS = 300
REMEMBERED_DELIVERIES = 1000  # partial deliveries remembered for their retry
_SPLIT = re.compile(r"\s+|[,;]+(?=\s*[A-Za-z][A-Za-z0-9+.\-]*://)")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]{0,20})://")
_HTTP_CODE = re.compile(r"\berror=(\d{3})\b|\b(?:HTTP|status)[ =:]+(\d{3})\b", re.IGNORECASE)
_RETRYABLE_4XX = {408, 425, 429}


def _quiet_loggers() -> None:
    """Keep URL-quoting library log lines out of ours (see the module docstring)."""
    noisy = logging.getLogger("apprise")
    noisy.propagate = False
    if not noisy.handlers:
        noisy.addHandler(logging.NullHandler())
    urllib3 = logging.getLogger("urllib3")
    if urllib3.level < logging.INFO:  # NOTSET (0) too: the root may go to debug later
        urllib3.setLevel(logging.INFO)


def split_urls(text: str) -> list[str]:
    """Apprise URLs from a secret: per line, whitespace or comma; '#' lines are comments."""
    lines = (line.strip() for line in text.splitlines())
    kept = " ".join(line for line in lines if line and not line.startswith("#"))
    return [part.strip(",;") for part in _SPLIT.split(kept) if part and part.strip(",;")]


# ---------------------------------------------------------------- the message


def _story_lines(m: AlertMessage) -> list[str]:
    e = m.entry
    lines = [headline(m)] if headline(m) else []
    lines.append(one_line(e.title) or "(untitled)")
    if link := chat_link(e.link):
        lines.append(link)
    matched = ", ".join(f'"{p}"' for p in m.matched)
    lines.append(f"Feed: {one_line(feed_label(e))} | Topic: {m.topic} | "
                 f"Matched: {matched}")
    if others := outlets(m):
        lines.append("Also reported by: " + "; ".join(
            f"{one_line(o.feed)}: {one_line(o.title, 120)}"
            + (f" <{link}>" if (link := chat_link(o.link)) else "") for o in others))
    return lines


def render_message(messages: Sequence[AlertMessage]) -> tuple[str, str]:
    """(title, plain-text body) for chat services: one story, or a digest newest first;
    no mention in them can notify anyone (links hold no `@` or `<`: see chat_link)."""
    title, body = _render(messages)
    return no_mentions(title), no_mentions(body)


def _render(messages: Sequence[AlertMessage]) -> tuple[str, str]:
    items = stories(messages)
    title = email_subject(items)
    if len(items) == 1:
        return title, "\n".join(_story_lines(items[0]))
    topics = ", ".join(sorted({m.topic for m in items}))
    parts = [f"{len(items)} new stories ({topics}), newest first."]
    for i, m in enumerate(items[:MAX_STORIES], 1):
        first, *rest = _story_lines(m)
        parts.append("\n".join([f"{i}. {first}", *(f"   {line}" for line in rest)]))
    if len(items) > MAX_STORIES:
        parts.append(f"…and {len(items) - MAX_STORIES} more")
    return title, "\n\n".join(parts)


# ---------------------------------------------------------------- delivery


def target_key(url: str) -> str:
    """A stable name for a target that holds nothing secret: its scheme and a hash."""
    scheme = m.group(1).lower() if (m := _SCHEME.match(url)) else "url"
    return f"{scheme}:{hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class Target:
    label: str  # "<service> #<position>": safe to show
    client: apprise.Apprise
    secrets: tuple[str, ...]
    key: str = ""  # target_key(url): what the store records as done


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    reason: str = ""
    permanent: bool = False


def _classify(ok: bool, lines: list[str], status: str) -> Outcome:
    if ok:
        return Outcome(True)
    codes = [int(a or b) for line in lines for a, b in _HTTP_CODE.findall(line)]
    # a redirect is not followed (see build_targets) and, as on the webhook channel, final
    permanent = bool(codes) and all((300 <= c < 400 or 400 <= c < 500)
                                    and c not in _RETRYABLE_4XX for c in codes)
    detail = " ".join(lines[-2:]) if lines else f"the service reported {status or 'a failure'}"
    return Outcome(False, detail, permanent)


def notify_target(target: Target, title: str, body: str) -> Outcome:
    """One blocking Apprise call (run in a worker thread); never raises."""
    try:
        result = target.client.notify(body=body, title=title,
                                      body_format=apprise.NotifyFormat.TEXT)
    except Exception as exc:  # a plugin bug must not lose the alert: retry later
        return Outcome(False, f"Apprise raised {type(exc).__name__}")
    logs = getattr(result, "logs", None)  # AppriseResult (Apprise 2); 1.x gave a bool
    lines = [e.message for e in logs() if e.level in ("WARNING", "ERROR", "CRITICAL")] \
        if callable(logs) else []
    status = getattr(getattr(result, "status", None), "name", "")
    outcome = _classify(bool(result), lines, status.lower())
    if callable(close := getattr(result, "close", None)):
        close()  # captured logs may sit in temporary files
    return outcome


class AppriseSender:
    def __init__(self, channel: AppriseChannel, targets: Sequence[Target]) -> None:
        self.channel = channel
        self.targets = list(targets)
        self._delivered: OrderedDict[str, set[str]] = OrderedDict()

    async def send(self, messages: Sequence[AlertMessage], delivery_id: str,
                   progress: Progress | None = None) -> None:
        """Notify every target not yet done (per the store's `progress` and our memory);
        record the ones that took it before raising for the ones that did not."""
        if not messages:
            return
        title, body = render_message(messages)
        done = set(progress.done if progress else ()) | self._delivered.get(delivery_id, set())
        pending = [t for t in self.targets if t.key not in done]
        outcomes = await asyncio.gather(*(asyncio.to_thread(notify_target, t, title, body)
                                          for t in pending))
        failed = [(t, o) for t, o in zip(pending, outcomes, strict=True) if not o.ok]
        newly = [t.key for t, o in zip(pending, outcomes, strict=True) if o.ok]
        if not failed:
            self._delivered.pop(delivery_id, None)
            return
        done.update(newly)
        self._remember(delivery_id, done)
        if newly and progress is not None and progress.note is not None:
            await progress.note(newly)  # a StoreError here: the outbox pauses, memory holds
        raise self._error(failed, sum(t.key in done for t in self.targets))

    def _remember(self, delivery_id: str, done: set[str]) -> None:
        self._delivered[delivery_id] = done
        self._delivered.move_to_end(delivery_id)
        while len(self._delivered) > REMEMBERED_DELIVERIES:
            self._delivered.popitem(last=False)

    def _error(self, failed: list[tuple[Target, Outcome]],
               delivered: int) -> TemporaryDeliveryError | PermanentDeliveryError:
        secrets = sorted({s for t in self.targets for s in t.secrets}, key=len, reverse=True)
        reasons = "; ".join(f"{t.label}: {redact(o.reason, secrets)}" for t, o in failed)
        reason = one_line(f"Apprise delivery failed for {len(failed)} of "
                          f"{len(self.targets)} targets ({reasons})", REASON_CHARS)
        if delivered:
            reason += f"; {delivered} already delivered, not sent again"
        if all(o.permanent for _, o in failed):
            return PermanentDeliveryError(self.channel.name, reason)
        return TemporaryDeliveryError(self.channel.name, reason)

    async def aclose(self) -> None:
        return None


def _source(channel: AppriseChannel) -> str:
    if channel.urls_env:
        return f"environment variable {channel.urls_env}"
    return f"file {channel.urls_file}"


def build_targets(channel: AppriseChannel, urls: Sequence[str]) -> list[Target]:
    """One Apprise client per URL; a bad URL is a config error that never quotes it."""
    where = f"channel {channel.name!r}: {_source(channel)}"
    if not urls:
        raise ConfigError([f"{where} holds no Apprise URLs"])
    targets = []
    for n, url in enumerate(urls, 1):
        # no redirect followed: requests would re-send the alert (a 307 keeps the POST)
        # wherever the service points, an internal address even
        asset = apprise.AppriseAsset()
        asset.http_redirects = False
        plugin = apprise.Apprise.instantiate(url, asset=asset)
        if plugin is None:
            scheme = m.group(1) if (m := _SCHEME.match(url)) else None
            what = f"scheme {scheme!r}" if scheme else "no scheme://"
            raise ConfigError([f"{where}: URL #{n} ({what}) is not a valid or supported "
                               "Apprise URL (see the Apprise wiki for its services' formats)"])
        client = apprise.Apprise(asset=asset)
        client.add(plugin)
        targets.append(Target(f"{plugin.service_name} #{n}", client, secret_fragments(url),
                              target_key(url)))
    return targets


def make_apprise_sender(channel: AppriseChannel, base_dir: Path,
                        session: aiohttp.ClientSession | None) -> AppriseSender:
    del session  # Apprise brings its own HTTP client
    _quiet_loggers()
    urls = split_urls(resolve_secret(channel.urls_env, channel.urls_file, base_dir))
    return AppriseSender(channel, build_targets(channel, urls))
