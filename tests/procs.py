"""Real `watcher` processes for black-box tests: the daemon, the CLI, and what they leave.

`DaemonProc` starts `python -m watcher run` (its output goes to a log file, so a killed
process loses nothing of it), and can stop it with SIGTERM or kill it with SIGKILL.
`run_cli` runs one-shot commands (`status`, `retry`). `state_rows` reads the SQLite state
file read-only, as `watcher status` would. `Receiver` is a WebhookReceiver whose answer can
be switched (503 until told otherwise) instead of scripted request by request.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servers import Reply, WebhookReceiver

NODE_TTL = 2.0  # WATCHER_NODE_TTL for the daemons: a killed one's leases are void this soon


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               step: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy (returned); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)
    return result


class DaemonProc:
    """One `watcher run` process on a config; several may be started one after another."""

    def __init__(self, config: Path, *, ttl: float = NODE_TTL) -> None:
        self.config = config
        self.ttl = ttl
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def start(self) -> DaemonProc:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {**os.environ, "WATCHER_NODE_TTL": str(self.ttl), "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        log_path = self.config.parent / f"daemon-{len(self.logs)}.log"
        self.logs.append(log_path)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcher", "run", "--config", str(self.config),
                 "--log-format", "json"], env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, index: int = -1) -> str:
        return self.logs[index].read_text(errors="replace") if self.logs else ""

    def all_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in self.logs)

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs, leases stay as they were."""
        assert self.proc is not None and self.proc.poll() is None, self.all_logs()
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code (killed after 30 s)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def run_cli(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m watcher ARGS --config CONFIG`, as a user would run it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "watcher", *args, "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=timeout)


def channel_table(status_output: str) -> dict[str, tuple[int, int, int]]:
    """The CHANNEL / OWED / FAILED / DELIVERED table of `watcher status`."""
    rows: dict[str, tuple[int, int, int]] = {}
    lines = iter(status_output.splitlines())
    for line in lines:
        if line.split()[:4] == ["CHANNEL", "OWED", "FAILED", "DELIVERED"]:
            for row in lines:
                cells = row.split()
                if len(cells) != 4 or not all(c.isdigit() for c in cells[1:]):
                    break
                rows[cells[0]] = (int(cells[1]), int(cells[2]), int(cells[3]))
            break
    return rows


def state_rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query on the SQLite state file, opened read-only (the daemon keeps WAL)."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


class Receiver(WebhookReceiver):
    """A webhook receiver with a standing answer (`answer`) once its script is used up."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._default = Reply()
        self._default_lock = threading.Lock()

    def answer(self, reply: int | Reply) -> None:
        with self._default_lock:
            self._default = reply if isinstance(reply, Reply) else Reply(reply)

    def _next_reply(self) -> Reply:
        with self._lock:
            if self._script:
                return self._script.pop(0)
        with self._default_lock:
            return self._default
