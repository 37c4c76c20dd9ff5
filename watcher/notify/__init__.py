"""Notify stage: channel senders (email, webhook) used by the outbox worker."""

from watcher.notify.base import (
    DeliveryError,
    PermanentDeliveryError,
    Sender,
    TemporaryDeliveryError,
    make_sender,
)

__all__ = [
    "DeliveryError",
    "PermanentDeliveryError",
    "Sender",
    "TemporaryDeliveryError",
    "make_sender",
]
