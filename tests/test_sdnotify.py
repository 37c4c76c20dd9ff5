"""Tests for watcher.sdnotify against a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher import sdnotify


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound datagram socket that NOTIFY_SOCKET points at."""
    path = tmp_path / "notify.sock"
    if len(str(path)) > 100:  # sun_path is 108 bytes; a long TMPDIR would not fit
        path = Path(tempfile.mkdtemp(prefix="wn-", dir="/tmp")) / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def recv(sock: socket.socket) -> str:
    """One datagram as text."""
    return sock.recv(4096).decode()


def test_unset_socket_is_a_quiet_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False
    assert sdnotify.stopping() is False
    assert sdnotify.reloading() is False


def test_notify_sends_fields_in_one_datagram(listener: socket.socket) -> None:
    assert sdnotify.notify("READY=1", "STATUS=polling 12 feeds") is True
    assert recv(listener) == "READY=1\nSTATUS=polling 12 feeds"


def test_ready_with_and_without_status(listener: socket.socket) -> None:
    assert sdnotify.ready()
    assert recv(listener) == "READY=1"
    assert sdnotify.ready("polling 3 feeds")
    assert recv(listener) == "READY=1\nSTATUS=polling 3 feeds"


def test_stopping_and_status(listener: socket.socket) -> None:
    assert sdnotify.stopping()
    assert recv(listener) == "STOPPING=1"


def test_newlines_in_a_field_cannot_inject_fields(listener: socket.socket) -> None:
    assert sdnotify.ready("bad\nWATCHDOG=trigger")
    assert recv(listener) == "READY=1\nSTATUS=bad WATCHDOG=trigger"


def test_reloading_sends_monotonic_usec(listener: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = recv(listener).split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"watcher-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert recv(sock) == "READY=1"


def test_send_failure_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert sdnotify.notify("READY=1") is False


def test_unsupported_address_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("60000000", None, 30.0),
        ("60000000", "self", 30.0),
        ("60000000", "other", None),
        ("60000000", "junk", None),
        ("0", None, None),
        ("abc", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            own = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}
            monkeypatch.setenv(key, own.get(value, value))
    assert sdnotify.watchdog_interval() == expected


async def test_watchdog_loop_pings_then_cancels_cleanly(listener: socket.socket) -> None:
    task = asyncio.create_task(sdnotify.watchdog_loop(0.01))
    loop = asyncio.get_running_loop()
    pings = [await loop.run_in_executor(None, recv, listener) for _ in range(3)]
    assert pings == ["WATCHDOG=1"] * 3  # received while the loop runs (2 s timeout each)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_watchdog_loop_rejects_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        await sdnotify.watchdog_loop(0)
