"""The `file` channel: append each alert as one JSON line (demos, scripts, audit trails)."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from watcher.config import FileChannel
from watcher.model import AlertMessage
from watcher.notify.base import PermanentDeliveryError, Progress, TemporaryDeliveryError
from watcher.notify.render import json_payload

if TYPE_CHECKING:
    import aiohttp


# errors that pass (space freed, a quota raised, the file rotated): retried, not failed
_PASSING = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EAGAIN,
                      errno.EINTR})


LOCK_WAIT = 5.0  # seconds a write waits for another writer's (or a reader's) lock


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
            await asyncio.to_thread(self._append, line.encode())
        except OSError as exc:
            reason = f"cannot write {self.path}: {exc.strerror or exc}"
            if exc.errno in _PASSING:  # a full disk is freed, a quota raised: retry
                raise TemporaryDeliveryError(self.channel.name, reason) from exc
            if exc.errno == errno.ELOOP:
                reason += " (a symbolic link: point the channel's path at the file itself)"
            raise PermanentDeliveryError(self.channel.name, reason) from exc

    def _append(self, data: bytes) -> None:
        """Append one whole line, or nothing: a failed write is cut back off the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # not through a link (another user's file); a FIFO in its place does not block
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        try:
            # another channel (or node) writing the same file waits: a cut-back failed line
            # never takes a line of theirs with it
            _lock(fd)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            written = 0
            try:
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError:
                os.ftruncate(fd, info.st_size)  # no half line for a reader to trip on
                raise
        finally:
            os.close(fd)

    async def aclose(self) -> None:
        return None


def _lock(fd: int, wait: float = LOCK_WAIT) -> None:
    """An exclusive lock on the file, or EAGAIN (retried later) after `wait` seconds: a
    reader holding it must not stop every channel's deliveries."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def make_file_sender(channel: FileChannel, base_dir: Path,
                     session: aiohttp.ClientSession | None) -> FileSender:
    return FileSender(channel, base_dir)
