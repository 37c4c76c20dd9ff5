"""The `file` channel: append each alert as one JSON line (demos, scripts, audit trails)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from watcher.config import FileChannel
from watcher.model import AlertMessage
from watcher.notify.base import PermanentDeliveryError, Progress
from watcher.notify.render import json_payload

if TYPE_CHECKING:
    import aiohttp


class FileSender:
    """Writes the webhook JSON payload of each delivery as one line of a file.

    The file is created 0600 (like the state file): alerts can quote what the topics watch.
    """

    def __init__(self, channel: FileChannel, base_dir: Path) -> None:
        self.channel = channel
        self.path = base_dir / channel.path

    async def send(self, messages: Sequence[AlertMessage], delivery_id: str,
                   progress: Progress | None = None) -> None:
        payload = json_payload(messages, delivery_id)
        line = json.dumps(payload, ensure_ascii=False) + "\n"
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            raise PermanentDeliveryError(self.channel.name,
                                         f"cannot write {self.path}: {exc.strerror}") from exc

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(line)

    async def aclose(self) -> None:
        return None


def make_file_sender(channel: FileChannel, base_dir: Path,
                     session: aiohttp.ClientSession | None) -> FileSender:
    return FileSender(channel, base_dir)
