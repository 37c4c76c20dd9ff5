"""The sender interface of the notify stage, its errors, and the channel-type registry.

The outbox worker owns retries and persistence; a sender makes one attempt and either
returns (delivered) or raises a `DeliveryError` saying whether trying again can help.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from msgspec import Struct

from watcher.config import ChannelSettings
from watcher.http import USER_AGENT
from watcher.model import AlertMessage
from watcher.redact import mask_text

if TYPE_CHECKING:
    import aiohttp


class DeliveryError(Exception):
    """A failed delivery attempt; `str()` names the channel, the target and the reason.

    The reason is logged and stored as the alert's last error, so every URL in it is
    masked here (credentials, secret parameters, webhook path tokens)."""

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason = mask_text(reason)
        super().__init__(f"channel {channel!r}: {reason}")


class TemporaryDeliveryError(DeliveryError):
    """Worth retrying later; `retry_after` is the receiver's hint in seconds, if it gave one."""

    def __init__(self, channel: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(channel, reason)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help (rejected, misconfigured); keep the alert for inspection."""


class Progress(Struct, frozen=True):
    """For senders with several targets (Apprise): the targets that already got this
    delivery (from the store) and `note`, which records more of them durably."""

    done: frozenset[str] = frozenset()
    note: Callable[[list[str]], Awaitable[None]] | None = None


class Sender(Protocol):
    async def send(self, messages: Sequence[AlertMessage], delivery_id: str,
                   progress: Progress | None = None) -> None:
        """Deliver one alert, or several as ONE digest; `delivery_id` is stable across retries.
        Single-target senders ignore `progress`."""
        ...

    async def aclose(self) -> None: ...


# channel type -> "module:factory"; a factory is `(channel, base_dir, session) -> Sender`.
# Adding a channel type is one line here (the module is imported only when used).
SENDERS: dict[str, str] = {
    "email": "watcher.notify.email:make_email_sender",
    "webhook": "watcher.notify.webhook:make_webhook_sender",
    "file": "watcher.notify.file:make_file_sender",
    "apprise": "watcher.notify.apprise:make_apprise_sender",
}


def notify_session() -> aiohttp.ClientSession:
    """The notify stage's HTTP session (webhooks): its own pool, watcher's User-Agent."""
    import aiohttp

    return aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})


def make_sender(channel: ChannelSettings, base_dir: Path,
                session: aiohttp.ClientSession | None) -> Sender:
    """The sender for a configured channel; secrets are resolved now (raises ConfigError).

    `session` None: the sender is only built to check the channel (`watcher check`, which
    so needs no HTTP client); it must not send."""
    target = SENDERS.get(channel.type)
    if target is None:
        raise ValueError(f"channel {channel.name!r}: unknown channel type {channel.type!r}")
    module_name, _, factory_name = target.partition(":")
    factory: Any = getattr(importlib.import_module(module_name), factory_name)
    return factory(channel, base_dir, session)
