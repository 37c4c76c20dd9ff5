"""`watcher run` as a real process: schedule, systemd notify, reload, shutdown (issues 2, 5)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedserver import FeedServer, Item
from servers import WebhookReceiver
from test_pipeline_e2e import EVACUATION, UNRELATED

pytestmark = pytest.mark.slow

RED_CROSS = Item("ICRC helps return civilians to their homes across the front line",
                 "https://news.example/icrc-return", "rc-1",
                 "The International Committee of the Red Cross said it facilitated the "
                 "repatriation of civilians.", EVACUATION.published)


def daemon_config(feed_urls: list[str], hook: str, topics: str) -> str:
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\nname = "Outlet {i}"\ninterval = "1s"\n\n'
                    for i, u in enumerate(feed_urls))
    return f"""
[watcher]
state = "state.db"
first_poll = "alert"
interval_floor = "1s"

{feeds}
{topics}

[[channels]]
name = "hook"
type = "webhook"
url = "{hook}"
"""


KURSK = """
[[topics]]
name = "kursk-evacuation"
any = ["Kursk residents evacuated", "Kursk evacuation"]
channels = ["hook"]
"""
RED_CROSS_TOPIC = """
[[topics]]
name = "red-cross-repatriation"
any = ["Red Cross repatriation", "ICRC return civilians"]
channels = ["hook"]
"""


class Notifications:
    """A real NOTIFY_SOCKET: the datagrams a daemon sends to systemd."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.received: list[str] = []

    def wait_for(self, field: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(field in m.splitlines() for m in self.received):
                return
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        raise AssertionError(f"no {field} in {self.received}")


@pytest.fixture
def notifications(tmp_path: Path) -> Iterator[Notifications]:
    n = Notifications(tmp_path / "notify.sock")
    yield n
    n.sock.close()


def start(config: Path, notify: Notifications, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "PYTHONUNBUFFERED": "1"}
    env.pop("JOURNAL_STREAM", None)
    return subprocess.Popen(
        [sys.executable, "-m", "watcher", "run", "--config", str(config), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def test_daemon_alerts_reloads_and_stops_cleanly(tmp_path: Path, feed_server: FeedServer,
                                                 notifications: Notifications) -> None:
    with WebhookReceiver() as hook:
        url = feed_server.set_feed("a.xml", [EVACUATION, UNRELATED, RED_CROSS])
        config = tmp_path / "watcher.toml"
        config.write_text(daemon_config([url], hook.url, KURSK))
        proc = start(config, notifications, "--log-format", "json")
        try:
            notifications.wait_for("READY=1")
            [first] = hook.wait_for(1, timeout=20)
            assert first.json["topic"] == "kursk-evacuation"

            # Edit the topic rules as an editor saves (a new file renamed over the old one):
            # the running daemon picks the change up by itself, and the new topic applies to
            # the next new entries.
            saved = tmp_path / ".watcher.toml.swp"
            saved.write_text(daemon_config([url], hook.url, KURSK + RED_CROSS_TOPIC))
            os.replace(saved, config)
            notifications.wait_for("RELOADING=1")
            notifications.received.clear()
            notifications.wait_for("READY=1")
            later = Item("Red Cross repatriation of civilians continues",
                         "https://news.example/icrc-2", "rc-2", "More civilians returned.",
                         EVACUATION.published)
            feed_server.set_feed("a.xml", [EVACUATION, UNRELATED, RED_CROSS, later])
            received = hook.wait_for(2, timeout=20)
            assert received[1].json["topic"] == "red-cross-repatriation"
            assert received[1].json["entry"]["title"] == later.title

            # A broken edit is rejected; the daemon keeps running on the previous config.
            # (SIGHUP alone: test_daemon_failures.py::test_sighup_alone_reloads)
            notifications.received.clear()
            config.write_text("[[topics]]\nname = 3\n")
            notifications.wait_for("STATUS=polling 1 feeds (reload failed)")
            assert proc.poll() is None
        finally:
            out = stop(proc) if proc.poll() is None else proc.communicate()[0]
        notifications.wait_for("STOPPING=1")
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        rejected = [x for x in lines if "config reload rejected" in x["msg"]]
        assert rejected and "topics[0].name" in rejected[0]["problem"]
        assert len(hook.unique_deliveries) == 2 and not hook.duplicates


def test_daemon_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "watcher.toml"
    config.write_text('[watcher]\ninterval = "often"\n')
    proc = subprocess.run([sys.executable, "-m", "watcher", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert f"{config}: watcher.interval: expected a duration" in proc.stderr


def test_daemon_serves_health_and_metrics(tmp_path: Path, feed_server: FeedServer,
                                          notifications: Notifications) -> None:
    import urllib.request

    from servers import free_port

    port = free_port()
    with WebhookReceiver() as hook:
        url = feed_server.set_feed("a.xml", [EVACUATION, UNRELATED])
        config = tmp_path / "watcher.toml"
        config.write_text(daemon_config([url], hook.url, KURSK).replace(
            "[watcher]\n", f'[watcher]\nmetrics = "127.0.0.1:{port}"\n'))
        proc = start(config, notifications)
        try:
            notifications.wait_for("READY=1")
            hook.wait_for(1, timeout=20)
            base = f"http://127.0.0.1:{port}"
            health = json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=5).read())
            assert health["ok"] is True and health["feeds"] == 1
            deadline = time.monotonic() + 20
            while True:  # the counters follow the alert within a moment
                text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
                if 'watcher_alerts_total{channel="hook",result="sent"} 1.0' in text:
                    break
                assert time.monotonic() < deadline, text
                time.sleep(0.2)
            assert 'watcher_polls_total{status="200"}' in text
            assert 'watcher_matches_total{topic="kursk-evacuation"} 1.0' in text
            assert "watcher_poll_seconds_bucket" in text
        finally:
            stop(proc)


def test_a_new_included_feeds_file_is_picked_up(tmp_path: Path, feed_server: FeedServer,
                                                notifications: Notifications) -> None:
    with WebhookReceiver() as hook:
        first = feed_server.set_feed("a.xml", [UNRELATED])
        later = feed_server.set_feed("b.xml", [EVACUATION])
        config = tmp_path / "watcher.toml"
        config.write_text('include = ["feeds.d/*.toml"]\n' +
                          daemon_config([first], hook.url, KURSK))
        (tmp_path / "feeds.d").mkdir()
        proc = start(config, notifications)
        try:
            notifications.wait_for("READY=1")
            (tmp_path / "feeds.d" / "more.toml").write_text(
                f'[[feeds]]\nurl = "{later}"\nname = "Later"\ninterval = "1s"\n')
            [alert] = hook.wait_for(1, timeout=20)
            assert alert.json["entry"]["feed"] == {"name": "Later", "url": later}
        finally:
            stop(proc)


async def test_a_backlog_of_due_feeds_drains_without_the_clock(tmp_path: Path,
                                                                feed_server: FeedServer) -> None:
    """More feeds due at once than the budget holds, all on one host at its per_host cap:
    finished polls claim the next ones (the 1 s clock does not run here), so the round
    never waits for a clock tick; a re-claim that comes while a claim runs is not lost."""
    import asyncio
    from datetime import timedelta

    from watcher.config import load_config
    from watcher.daemon import Daemon, Runtime
    from watcher.pipeline import utcnow

    urls = [feed_server.set_feed(f"f{i}.xml", [Item(f"Story {i}", f"https://n.example/{i}",
                                                     f"g{i}")]) for i in range(40)]
    path = tmp_path / "watcher.toml"
    path.write_text(daemon_config(urls, "http://127.0.0.1:9/hook", KURSK).replace(
        "[watcher]\n", '[watcher]\nconcurrency = 2\nper_host = 2\nembedding = "none"\n'))
    daemon = Daemon(path)
    daemon.runtime = await Runtime.open(load_config(path), warm=False)
    try:
        await daemon.runtime.store.sync_feeds(urls, utcnow() - timedelta(seconds=5), 0)
        await daemon._tick()
        for _ in range(600):  # up to a minute: the condition, not the time, is the test
            if len({h.path for h in feed_server.hits}) == len(urls) and not daemon.inflight:
                break
            await asyncio.sleep(0.1)
        polled = {h.path for h in feed_server.hits}
        assert len(polled) == len(urls), f"{len(polled)} of {len(urls)} feeds polled"
    finally:
        await daemon._shutdown()


async def test_a_reload_keeps_nothing_of_the_previous_config(tmp_path: Path,
                                                            feed_server: FeedServer) -> None:
    """After a reload the previous config (at 50,000 feeds some 30 MB of objects) is gone:
    nothing the daemon keeps still points at it, so every reload does not add its size."""
    import gc
    import weakref

    from watcher.config import load_config
    from watcher.daemon import Daemon, Runtime

    first = feed_server.set_feed("a.xml", [Item("Story", "https://n.example/1", "g1")])
    second = feed_server.set_feed("b.xml", [Item("Other", "https://n.example/2", "g2")])
    path = tmp_path / "watcher.toml"
    config_text = daemon_config([first], "http://127.0.0.1:9/hook", KURSK).replace(
        "[watcher]\n", '[watcher]\nembedding = "none"\n')
    path.write_text(config_text)
    daemon = Daemon(path)
    daemon.runtime = await Runtime.open(load_config(path), warm=False)
    try:
        previous = weakref.ref(daemon.runtime.config)
        path.write_text(daemon_config([first, second], "http://127.0.0.1:9/hook", KURSK)
                        .replace("[watcher]\n", '[watcher]\nembedding = "none"\n'))
        assert await daemon._reload_guarded("test")
        assert [f.url for f in daemon.runtime.config.feeds] == [first, second]
        gc.collect()  # what is retained, not when the collector last ran
        assert previous() is None, "the previous config is still referenced after a reload"
    finally:
        await daemon._shutdown()
