"""What a fetch gives back, and the fetch of a local file: no HTTP client needed.

`watcher test` on feed files reads them here without importing aiohttp (~100 ms of its
start-up); `watcher.reader.fetch` (the HTTP fetcher) returns the same `FetchResult`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from msgspec import Struct


class Validators(Struct, frozen=True):
    """What the server gave us to ask 'has it changed?' next time."""

    etag: str | None = None
    last_modified: str | None = None


class FetchResult(Struct, frozen=True):
    url: str  # the URL asked for
    status: int  # HTTP status; 0 when no response came (DNS, refused, timeout, too big...)
    body: bytes | None = None
    validators: Validators = Validators()
    content_type: str | None = None
    moved_to: str | None = None  # the new URL after only permanent (301/308) redirects
    retry_after: float | None = None  # seconds, from a 429/503 Retry-After
    error: str | None = None  # why this is not a usable body, for the user

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def ok(self) -> bool:
        return self.error is None and self.body is not None


class FeedFetcher(Protocol):
    """What the pipeline fetches through: `Fetcher`, or `FetchWorkers` in the daemon."""

    async def fetch(self, url: str, validators: Validators = ...) -> FetchResult: ...

    async def fetch_link(self, url: str) -> FetchResult: ...


def body_hash(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def size_text(n: int) -> str:
    """A byte limit as people write it ("10 MB", "512 bytes")."""
    return f"{n / 1024 / 1024:g} MB" if n >= 1024 * 1024 else f"{n} bytes"


def read_local(url: str, max_bytes: int) -> FetchResult:
    """A file:// URL's content, at most `max_bytes` (blocking: run it off the event loop)."""
    path = Path(unquote(urlsplit(url).path))
    try:
        with path.open("rb") as file:  # read() with a cap: /dev/zero has size 0
            body = file.read(max_bytes + 1)
    except OSError as exc:
        return FetchResult(url, 0, error=f"cannot read {path}: {exc.strerror or exc}")
    if len(body) > max_bytes:
        return FetchResult(url, 0, error=f"file larger than {size_text(max_bytes)}"
                           " (the [watcher] max_bytes limit)")
    return FetchResult(url, 200, body=body)
