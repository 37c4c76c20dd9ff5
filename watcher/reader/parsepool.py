"""The parse worker pool: long-lived processes with a time and a memory bound per document.

Parsing is where hostile input costs: feedparser's lenient parser needs a minute and
gigabytes for a few megabytes of unclosed tags. `ParsePool` is a `concurrent.futures`
executor (so `loop.run_in_executor(pool, parse_feed, ...)` works as with any executor)
whose workers

- run each task under a deadline (default 20 s): past it the worker is killed and replaced,
  and the task fails with `ParseLimitError("parse took longer than 20 s")`; the other
  workers keep serving meanwhile;
- run under an address-space limit (`RLIMIT_AS`): what the worker maps when it starts (the
  forkserver's preload, shared copy-on-write) plus 512 MB by default for the work itself. A
  document that needs more fails with `ParseLimitError("parse needed more than 512 MB")`
  and the worker is replaced (its heap may be fragmented);
- die with their parent: `PR_SET_PDEATHSIG` (Linux) and a thread watching the parent pid,
  so a SIGKILLed daemon leaves no worker behind (the forkserver exits by itself when the
  daemon dies, and the resource tracker when the last of them has gone).

Workers are started lazily, through a forkserver that preloads the parse module (a
replacement starts in milliseconds, without the daemon's threads or sockets), and live
until a limit is hit or the pool shuts down; there is no per-document process spawn.
`shutdown(cancel_futures=True)` kills busy workers instead of waiting for them, so SIGTERM
is not held up by a parse bomb (tasks cut off so fail with ParsePoolClosed, which is no
FeedParseError: no feed records the shutdown as its error).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watcher.reader.parse import FeedParseError, ParseMemoryError

log = logging.getLogger("watcher.parse")
DEADLINE = 20.0  # seconds one document may take
MEMORY_MB = 512  # address space one worker may use
WORKERS = 2
_PR_SET_PDEATHSIG = 1
_PARENT_CHECK = 1.0  # seconds between a worker's looks at its parent
_KILL_WAIT = 5.0  # seconds to wait for a killed worker to be reaped
_FORKINIT = "watcher.reader.forkinit"
_NAMES = {"parse_feed": "parse", "extract_text": "text extraction"}


class ParseLimitError(FeedParseError):
    """A document took longer or needed more memory than a parse worker is allowed."""


class ParsePoolClosed(RuntimeError):
    """The pool shut down while the task was queued or running (not the document's fault,
    so not a FeedParseError: no feed records it as its error)."""


class _WorkerMemoryError(Exception):
    """Sent back by a worker whose task ran out of its address space."""


# --- the worker process ---

def _process_start(pid: int) -> str | None:
    """A process's start time (tells it from a later one with its pid); None if it is gone
    or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        if not Path("/proc/self/stat").exists():  # no /proc: ask the kernel
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                pass
            return "?"
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def die_with_parent(owner: int) -> None:
    """Exit when the pool's owner (the daemon) does.

    A forkserver worker's parent is the forkserver, which stays while any worker holds its
    "alive" pipe: the worker lets go of it, so the forkserver exits when the daemon dies,
    and the kernel then kills the worker (PR_SET_PDEATHSIG). A thread watching the owner
    covers the rest (another start method, no prctl)."""
    from multiprocessing import forkserver

    with contextlib.suppress(AttributeError, OSError, TypeError):
        server = forkserver._forkserver  # CPython's private singleton: no public handle
        fd = getattr(server, "_forkserver_alive_fd", None)
        if fd is not None and os.getppid() != owner:
            os.close(fd)
            setattr(server, "_forkserver_alive_fd", None)  # noqa: B010
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    parent, started = os.getppid(), _process_start(owner)

    def watch() -> None:
        while os.getppid() == parent and _process_start(owner) == started:
            time.sleep(_PARENT_CHECK)
        os._exit(1)

    if started is None:  # the owner died before the watch began
        os._exit(1)
    old = threading.stack_size(256 * 1024)  # a small stack: address space is rationed
    threading.Thread(target=watch, name="owner-watch", daemon=True).start()
    threading.stack_size(old)


def _address_space() -> int:
    """This process's mapped address space in bytes (VmSize), 0 where /proc has none."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _worker_main(conn: multiprocessing.connection.Connection, memory_bytes: int,
                 owner: int) -> None:
    """Run tasks from the pipe until it closes; leave after a MemoryError."""
    die_with_parent(owner)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's to handle
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no 512 MB core file
    if memory_bytes:
        limit = _address_space() + memory_bytes  # the preload is not the document's to pay
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        fn, args, kwargs = task
        del task
        try:
            reply: tuple[bool, Any] = (True, fn(*args, **kwargs))
        except (MemoryError, ParseMemoryError):
            reply = (False, _WorkerMemoryError())
        except Exception as exc:  # every failure goes back to the caller
            reply = (False, exc)
        del fn, args, kwargs
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result or exception
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        if not reply[0] and isinstance(reply[1], _WorkerMemoryError):
            return  # a fresh worker replaces this one: its heap may be fragmented


# --- the pool ---

@dataclass
class _Task:
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @property
    def name(self) -> str:
        name = getattr(self.fn, "__name__", "task")
        return _NAMES.get(name, name)


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process (a forkserver one)
    conn: multiprocessing.connection.Connection


@dataclass
class _Slot:
    """One worker process and the thread that feeds it."""

    pool: ParsePool
    worker: _Worker | None = None
    thread: threading.Thread | None = None
    busy: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        while (task := self.pool._tasks.get()) is not None:
            if not task.future.set_running_or_notify_cancel():
                continue
            try:
                result = self._call(task)
            except BaseException as exc:  # the caller gets every failure
                task.future.set_exception(exc)
            else:
                task.future.set_result(result)
            del task
        self.stop()

    def _call(self, task: _Task) -> Any:
        worker = self._worker(task)
        try:
            worker.conn.send((task.fn, task.args, task.kwargs))
        except (OSError, EOFError):
            self.stop()
            worker = self._worker(task)  # it died while idle: once more with a fresh one
            worker.conn.send((task.fn, task.args, task.kwargs))
        self.busy = True
        try:
            ready = multiprocessing.connection.wait([worker.conn, worker.process.sentinel],
                                                    timeout=self.pool.deadline)
            if worker.conn in ready:
                with contextlib.suppress(EOFError, OSError):
                    ok, value = worker.conn.recv()
                    return self._outcome(task, ok, value)
            return self._lost(task, worker, timed_out=not ready)
        finally:
            self.busy = False

    def _outcome(self, task: _Task, ok: bool, value: Any) -> Any:
        if ok:
            return value
        if isinstance(value, _WorkerMemoryError):
            self.stop()
            raise ParseLimitError(f"{task.name} needed more than {self.pool.memory_mb} MB")
        raise value

    def _lost(self, task: _Task, worker: _Worker, *, timed_out: bool) -> Any:
        """The worker gave no answer: past the deadline, killed on shutdown, or crashed."""
        self.stop()
        if self.pool._stopping:
            raise ParsePoolClosed(f"{task.name} stopped: the watcher is shutting down")
        if timed_out:
            raise ParseLimitError(f"{task.name} took longer than {self.pool.deadline:g} s")
        code = worker.process.exitcode
        how = (f"signal {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit code {code}")
        raise ParseLimitError(f"{task.name} crashed its worker ({how}); a document that needs"
                              f" more than {self.pool.memory_mb} MB can do that")

    def _worker(self, task: _Task) -> _Worker:
        with self.lock:
            if self.pool._stopping:
                raise ParsePoolClosed(f"{task.name} stopped: the watcher is shutting down")
            if self.worker is None or not self.worker.process.is_alive():
                self.worker = self.pool._start_worker()
            return self.worker

    def kill(self) -> None:
        """Kill this slot's worker now; the slot's thread notices and cleans up."""
        with self.lock:
            worker = self.worker
        if worker is not None:
            worker.process.kill()

    def stop(self) -> None:
        """Kill this slot's worker (if any) and reap it (from the slot's own thread)."""
        with self.lock:
            worker, self.worker = self.worker, None
        if worker is None:
            return
        with contextlib.suppress(OSError):
            worker.conn.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(_KILL_WAIT)


class ParsePool(Executor):
    """A process pool for parse_feed (and extract_text) with a deadline and a memory limit
    per worker; see the module docstring."""

    def __init__(self, workers: int = WORKERS, *, deadline: float = DEADLINE,
                 memory_mb: int = MEMORY_MB,
                 preload: tuple[str, ...] = ("watcher.reader.parse", "feedparser")
                 ) -> None:
        if workers < 1:
            raise ValueError("a parse pool needs at least one worker")
        self.deadline = deadline
        self.memory_mb = memory_mb
        self._context = multiprocessing.get_context("forkserver")
        # forkinit first: it must run before anything that starts threads (see there)
        self._context.set_forkserver_preload([_FORKINIT, *preload])
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._slots = [_Slot(self) for _ in range(workers)]
        self._lock = threading.Lock()
        self._stopping = False
        self._shut = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._stopping:
                raise ParsePoolClosed(f"{_NAMES.get(getattr(fn, '__name__', ''), 'task')} "
                                      "stopped: the watcher is shutting down")
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future[Any] = Future()
            self._tasks.put(_Task(future, fn, args, kwargs))
            for slot in self._slots:  # threads start with the first task
                if slot.thread is None:
                    slot.thread = threading.Thread(target=slot.run, name="parse-slot",
                                                   daemon=True)
                    slot.thread.start()
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking tasks; with cancel_futures, drop queued ones and kill busy workers."""
        with self._lock:
            self._shut = True
            if cancel_futures:
                self._stopping = True
                self._cancel_queued()
            for _ in self._slots:
                self._tasks.put(None)
        if cancel_futures:
            for slot in self._slots:
                slot.kill()
        if wait:
            for slot in self._slots:
                if slot.thread is not None:
                    slot.thread.join()

    def _cancel_queued(self) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            if task is not None and task.future.set_running_or_notify_cancel():
                # not cancel(): the awaiting coroutine would take it for its own cancellation
                task.future.set_exception(ParsePoolClosed(
                    f"{task.name} stopped: the watcher is shutting down"))

    def worker_pids(self) -> list[int]:
        """The live workers' process ids (for status and tests)."""
        return [s.worker.process.pid for s in self._slots
                if s.worker is not None and s.worker.process.is_alive()]

    def _start_worker(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child_end, self.memory_mb * 1024 * 1024, os.getpid()),
            name="watcher-parse", daemon=True)
        process.start()
        child_end.close()
        log.debug("parse worker started", extra={"pid": process.pid})
        return _Worker(process, parent_end)
