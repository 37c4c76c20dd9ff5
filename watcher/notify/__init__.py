"""Notify stage: channel senders (email, webhook) used by the outbox worker."""

from watcher.notify.base import (
    DeliveryError,
    PermanentDeliveryError,
    Progress,
    Sender,
    TemporaryDeliveryError,
    make_sender,
)

__all__ = [
    "DeliveryError",
    "PermanentDeliveryError",
    "Progress",
    "Sender",
    "TemporaryDeliveryError",
    "make_sender",
]
