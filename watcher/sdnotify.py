"""systemd notify protocol (sd_notify) over $NOTIFY_SOCKET, with no dependency.

Every function is a no-op returning False when the process is not run by systemd with
Type=notify (NOTIFY_SOCKET unset), and none of them raises on a send failure: a failure
is logged at debug level and reported as False.

The daemon calls: ready() once config is loaded and the store is open; reloading() then
ready() around a SIGHUP reload; stopping() when shutdown begins; and runs
watchdog_loop(watchdog_interval()) as a task on its event loop when the interval is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

log = logging.getLogger(__name__)

SEND_TIMEOUT = 2.0  # seconds; the manager reads its socket promptly, so this is generous


def _address(raw: str) -> str | None:
    """Map $NOTIFY_SOCKET to a socket address; '@name' is an abstract socket."""
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None  # e.g. vsock:CID:PORT (systemd >= 254 in VMs): not supported here


def _clean(field: str) -> str:
    """Keep one field on one line: the protocol separates fields with newlines."""
    return field.replace("\r", " ").replace("\n", " ")


def notify(*fields: str) -> bool:
    """Send 'KEY=value' fields in one datagram; True if the manager got it."""
    raw = os.environ.get("NOTIFY_SOCKET", "")
    if not raw or not fields:
        return False
    address = _address(raw)
    if address is None:
        log.debug("unsupported NOTIFY_SOCKET address %r", raw)
        return False
    payload = "\n".join(_clean(f) for f in fields).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.sendto(payload, address)
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", raw, exc)
        return False
    return True


def _with_status(first: str, status: str) -> tuple[str, ...]:
    """Fields for a state change, with STATUS= when a status text is given."""
    return (first, f"STATUS={status}") if status else (first,)


def ready(status: str = "") -> bool:
    """Tell the manager start-up (or a reload) is complete."""
    return notify(*_with_status("READY=1", status))


def stopping(status: str = "") -> bool:
    """Tell the manager shutdown has begun."""
    return notify(*_with_status("STOPPING=1", status))


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd's MONOTONIC_USEC= expects."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def reloading(status: str = "") -> bool:
    """Tell the manager a reload started (follow with ready() when done)."""
    return notify("RELOADING=1", *_with_status(f"MONOTONIC_USEC={monotonic_usec()}", status))


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None if not asked."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # the watchdog is meant for another process (e.g. our parent)
    if not usec.isdigit() or int(usec) <= 0:
        return None
    return int(usec) / 1_000_000 / 2


def watchdog_ping() -> bool:
    """Send one keep-alive ping."""
    return notify("WATCHDOG=1")


async def watchdog_loop(interval: float) -> None:
    """Ping WATCHDOG=1 every `interval` seconds until cancelled; runs on the event loop."""
    if interval <= 0:
        raise ValueError(f"watchdog interval must be > 0 seconds, got {interval!r}")
    while True:
        watchdog_ping()
        await asyncio.sleep(interval)
