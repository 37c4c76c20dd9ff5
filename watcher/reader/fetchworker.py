"""The daemon's feed fetches in worker processes, beside its event loop.

An unchanged round is almost all HTTP: aiohttp's request and response handling took ~55%
of the daemon's busy time, the claims, schedules and state writes the rest, all under one
GIL on one core. `FetchWorkers` moves the feed fetches to child processes, each running the
same `Fetcher` (timeouts, size cap, address guard unchanged), so the work spreads over the
cores. Requests and results cross a socket pair per worker in batches (one write per
event-loop turn each way), pickled: a changed feed's body travels once.

Opt-in (`[watcher] fetch_workers`, default 0): on a 2-core machine the workers took 20-45%
off the daemon's own CPU but the round's total rose 40-60% (the pickling both ways) and no
round got faster (README, Performance, 2026-12-03). Worth trying where the daemon's process
is the bottleneck and cores are spare.

- A fetch goes to the worker with the fewest in flight. Politeness across workers is the
  claim's: the daemon never has more than `per_host` polls of one host in flight (the same
  rule that keeps several nodes polite), so each worker's own per-host limit never binds
  for feeds; `watcher once`, which has no claims, fetches in its own process.
- file:// feeds, article links (full text) and webhooks stay with the in-process `Fetcher`.
- Workers start at the first fetch, from the parse workers' forkserver (none of the
  daemon's threads or sockets in them), and die with the daemon (`die_with_parent`).
- If a worker dies, what it was fetching is fetched again in the daemon's process (no feed
  records the loss as its error) and the next fetch starts a new one; after
  `GIVE_UP_AFTER` deaths within `GIVE_UP_WINDOW` seconds the daemon fetches everything
  itself and says so in the log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from watcher.reader.parsepool import die_with_parent
from watcher.reader.result import FetchResult, Validators

if TYPE_CHECKING:
    from watcher.reader.fetch import Fetcher, Network

log = logging.getLogger("watcher.fetch")
GIVE_UP_AFTER = 3  # worker deaths ...
GIVE_UP_WINDOW = 600.0  # ... within this many seconds: fetch in the daemon's process
_HEADER = struct.Struct("!I")
STALL_GRACE = 60.0  # seconds past [watcher] timeout a worker owing fetches may stay silent
STALL_CHECK = 10.0  # seconds between looks for stalled workers


class WorkerLost(ConnectionError):
    """A fetch worker died or its socket closed while a fetch was in flight."""


def _frame(messages: list[Any]) -> bytes:
    payload = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> list[Any]:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    batch: list[Any] = pickle.loads(await reader.readexactly(size))
    return batch


class _Batcher:
    """Messages written together once per event-loop turn (one syscall, one pickle)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.queued: list[Any] = []

    def send(self, message: Any) -> None:
        self.queued.append(message)
        if len(self.queued) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        try:
            if self.queued and not self.writer.is_closing():
                self.writer.write(_frame(self.queued))
        finally:  # a frame that cannot be sent must not stop every later one
            self.queued = []


# --- the worker process ---

def _worker_main(sock: socket.socket, settings: dict[str, Any], owner: int) -> None:
    """Serve fetches from the socket until it closes."""
    die_with_parent(owner)
    for signum in (signal.SIGINT, signal.SIGTERM):  # stopping is the daemon's to decide:
        signal.signal(signum, signal.SIG_IGN)  # it closes our socket (or dies: we follow)
    asyncio.run(_serve(sock, settings))


async def _serve(sock: socket.socket, settings: dict[str, Any]) -> None:
    from watcher.reader.fetch import Fetcher

    fetcher = Fetcher(**settings)
    reader, writer = await asyncio.open_connection(sock=sock)
    out = _Batcher(writer)
    running: set[asyncio.Task[FetchResult]] = set()

    def reply(request_id: int, task: asyncio.Task[FetchResult]) -> None:
        running.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        out.send((request_id, task.result() if exc is None else f"{type(exc).__name__}: {exc}"))

    try:
        while True:
            try:
                batch = await _read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            for message in batch:
                if message[0] == "allow":
                    fetcher.fulltext_allow = message[1]
                    continue
                request_id, url, etag, last_modified = message[1]
                task = asyncio.create_task(fetcher.fetch(url, Validators(etag, last_modified)))
                running.add(task)
                task.add_done_callback(functools.partial(reply, request_id))
    finally:
        for task in running:
            task.cancel()
        await fetcher.aclose()
        writer.close()


# --- the daemon's side ---

class _Worker:
    """One worker process, its socket and the fetches it owes."""

    def __init__(self, process: Any, out: _Batcher) -> None:
        self.process = process
        self.out = out
        self.pending: dict[int, asyncio.Future[FetchResult]] = {}
        # when it last showed progress (monotonic): an answer, or work sent while it was idle
        self.progress_at = time.monotonic()
        self.reading: asyncio.Task[None] | None = None

    def stalled(self, now: float, after: float) -> bool:
        """Whether it owes fetches and has answered none for `after` seconds. A fetch may
        wait for a slot first, but every running fetch ends within the timeout, so a
        working worker answers at least that often."""
        return bool(self.pending) and now - self.progress_at > after


class FetchWorkers:
    """Fetches feeds through `count` worker processes; the same `fetch` as `Fetcher`'s."""

    def __init__(self, local: Fetcher, count: int, *, context: Any = None) -> None:
        if count < 1:
            raise ValueError("FetchWorkers needs at least one worker")
        self.local = local  # the in-process Fetcher: file:// URLs, links, the fallback
        self.count = count
        self._context = context or multiprocessing.get_context("forkserver")
        self._workers: list[_Worker] = []
        self._starting: asyncio.Lock | None = None
        self._watching: asyncio.Task[None] | None = None
        self._next_id = 0
        self._deaths: deque[float] = deque(maxlen=GIVE_UP_AFTER)
        self.given_up = False
        self._closed = False

    def pids(self) -> list[int]:
        """The live workers' process ids (for status and tests)."""
        return [w.process.pid for w in self._workers if w.process.is_alive()]

    @property
    def fulltext_allow(self) -> tuple[Network, ...]:
        return self.local.fulltext_allow

    @fulltext_allow.setter
    def fulltext_allow(self, networks: Iterable[Network]) -> None:
        """On reload: the networks redirects may reach, in every worker too."""
        self.local.fulltext_allow = networks
        for worker in self._workers:
            worker.out.send(("allow", self.local.fulltext_allow))

    async def fetch(self, url: str, validators: Validators = Validators()) -> FetchResult:
        if self.given_up or self._closed or url.startswith("file://"):
            return await self.local.fetch(url, validators)
        if len(self._workers) < self.count:
            await self._start()
        if not self._workers:  # none could start
            return await self.local.fetch(url, validators)
        worker = min(self._workers, key=lambda w: len(w.pending))
        request_id = self._next_id = self._next_id + 1
        future = worker.pending[request_id] = asyncio.get_running_loop().create_future()
        if len(worker.pending) == 1:
            worker.progress_at = time.monotonic()
        worker.out.send(("fetch", (request_id, url, validators.etag, validators.last_modified)))
        try:
            return await future
        except WorkerLost:  # fetched again here: the loss is not the feed's fault
            return await self.local.fetch(url, validators)
        finally:
            worker.pending.pop(request_id, None)

    async def fetch_link(self, url: str) -> FetchResult:
        """An article link (full text): fetched here, through the address guard."""
        return await self.local.fetch_link(url)

    async def _start(self) -> None:
        """Start the missing workers (one start at a time; a failed start is logged)."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            while len(self._workers) < self.count and not (self.given_up or self._closed):
                try:
                    worker = await self._start_one()
                except Exception as exc:  # OSError; EOFError when the forkserver could not fork
                    self._died(f"cannot start a fetch worker: {type(exc).__name__}: {exc}",
                               in_flight=0)
                    return
                if self._closed:  # closed while it started
                    worker.out.writer.close()
                    worker.process.kill()
                    return
                self._workers.append(worker)
                # a reload may have changed the allowed networks while it started
                worker.out.send(("allow", self.local.fulltext_allow))
            if self._watching is None and not self._closed:
                self._watching = asyncio.create_task(self._watch(), name="fetch-worker-watch")

    async def _start_one(self) -> _Worker:
        ours, theirs = socket.socketpair()
        try:
            process = self._context.Process(
                target=_worker_main, args=(theirs, self._settings(), os.getpid()),
                name="watcher-fetch", daemon=True)
            await asyncio.to_thread(process.start)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        worker = _Worker(process, _Batcher(writer))
        worker.reading = asyncio.create_task(self._read(worker, reader))
        log.debug("fetch worker started", extra={"pid": process.pid})
        return worker

    def _settings(self) -> dict[str, Any]:
        """The worker's Fetcher: the daemon's, with its share of `concurrency` (together the
        workers fetch no more feeds at once than the one Fetcher would)."""
        f = self.local
        return {"timeout": f.timeout, "max_bytes": f.max_bytes,
                "concurrency": max(1, f.concurrency // self.count),
                "per_host": f.per_host, "fulltext_allow": f.fulltext_allow}

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                batch = await _read_frame(reader)
                worker.progress_at = time.monotonic()
                for request_id, outcome in batch:
                    future = worker.pending.get(request_id)
                    if future is None or future.done():
                        continue
                    if isinstance(outcome, str):  # the fetch raised: a bug, as in-process
                        future.set_exception(RuntimeError(f"fetch crashed: {outcome}"))
                    else:
                        future.set_result(outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # EOF, a reset, a garbled frame: the worker is no use now
            if worker in self._workers:
                await self._lose(worker, f"the fetch worker stopped ({type(exc).__name__})")

    async def _watch(self) -> None:
        """Replace a worker that owes fetches and has answered none for longer than any
        fetch takes (hung): killing it ends its socket, and `_read` retries its fetches
        here."""
        after = self.local.timeout + STALL_GRACE
        while True:
            await asyncio.sleep(STALL_CHECK)
            now = time.monotonic()
            for worker in self._workers:
                if worker.stalled(now, after) and worker.process.is_alive():
                    log.warning("fetch worker stalled: replacing it", extra={
                        "pid": worker.process.pid, "waiting_s": round(after)})
                    worker.process.kill()

    async def _lose(self, worker: _Worker, reason: str) -> None:
        """Forget a worker that stopped; its fetches are retried here at once."""
        self._workers.remove(worker)
        worker.out.writer.close()
        pending, worker.pending = worker.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(WorkerLost(reason))
        # its socket closed: it is gone or going; wait briefly (off the loop) for its exit code
        await asyncio.to_thread(worker.process.join, 0.5)
        code = worker.process.exitcode
        if worker.process.is_alive():
            worker.process.kill()
        self._died(f"{reason}, exit code {code}" if code is not None else reason,
                   in_flight=len(pending))

    def _died(self, reason: str, *, in_flight: int) -> None:
        now = time.monotonic()
        self._deaths.append(now)
        if len(self._deaths) == GIVE_UP_AFTER and now - self._deaths[0] < GIVE_UP_WINDOW:
            self.given_up = True
            log.error("the fetch workers keep stopping: feeds are fetched in the daemon's "
                      "process from now on", extra={"reason": reason})
        else:
            log.warning("fetch worker lost; its fetches are retried in the daemon's process "
                        "and a new worker starts", extra={"reason": reason,
                                                          "in_flight": in_flight})

    async def aclose(self) -> None:
        """Stop the workers (closing a socket ends its worker) and the local fetcher."""
        self._closed = True
        workers, self._workers = self._workers, []
        if self._watching is not None:
            self._watching.cancel()
        for worker in workers:
            worker.out.flush()
            worker.out.writer.close()
            if worker.reading is not None:
                worker.reading.cancel()
            # none should be owed (the daemon settles its polls first); none may hang on a
            # closed worker: each is fetched here, as after a lost worker
            for future in worker.pending.values():
                if not future.done():
                    future.set_exception(WorkerLost("the fetch workers were closed"))
        for worker in workers:
            await asyncio.to_thread(worker.process.join, 5.0)
            if worker.process.is_alive():
                worker.process.kill()
        await self.local.aclose()
