"""`watcher run` and `once` as real processes when the state goes wrong (issue 14).

A crashed node, a state file deleted or replaced under the daemon, damaged or locked state
files, PostgreSQL down during a reload, a full disk; and what the daemon reports meanwhile
(metrics, the systemd watchdog).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import string
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pgserver
import pytest
from aiohttp import web
from feedserver import FeedServer, Item
from procs import DaemonProc, run_cli, state_rows, wait_until
from servers import WebhookReceiver, free_port
from test_daemon import KURSK, Notifications, daemon_config
from test_pipeline_e2e import EVACUATION, UNRELATED

pytestmark = pytest.mark.slow


@pytest.fixture
def notifications(tmp_path: Path) -> Iterator[Notifications]:
    n = Notifications(tmp_path / "notify.sock")
    yield n
    n.sock.close()


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def start(config: Path, *args: str, notify: Notifications | None = None,
          **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`watcher run` logging JSON lines to a file next to the config."""
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    environ.pop("NOTIFY_SOCKET", None)
    environ.pop("JOURNAL_STREAM", None)
    if notify is not None:
        environ["NOTIFY_SOCKET"] = str(notify.path)
    log_path = config.parent / "daemon.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config",
                                 str(config), "--log-format", "json", *args],
                                env=environ, stdout=log, stderr=subprocess.STDOUT)
    return proc, log_path


def stop(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return log_path.read_text(errors="replace")


def logged(log_path: Path, text: str) -> list[dict[str, object]]:
    return [x for x in json_lines(log_path.read_text(errors="replace"))
            if text in str(x.get("msg", ""))]


# --- 14.4: `watcher once` right after a crash ---

def test_once_right_after_a_crash_does_not_wait_for_the_dead_node(
        tmp_path: Path, feed_server: FeedServer) -> None:
    with WebhookReceiver() as hook:
        url = feed_server.set_feed("a.xml", [EVACUATION, UNRELATED])
        config = tmp_path / "watcher.toml"
        config.write_text(daemon_config([url], hook.url, KURSK))
        daemon = DaemonProc(config, ttl=600).start()  # its heartbeat would hold 10 minutes
        try:
            hook.wait_for(1, timeout=30)
            wait_until(lambda: state_rows(tmp_path / "state.db", "SELECT pid FROM nodes"),
                       20, "the node's heartbeat")
            daemon.kill9()
        finally:
            daemon.stop()
        once = run_cli(config, "once")
        assert once.returncode == 0, once.stderr
        assert "running on this state" not in once.stderr
        assert "a watcher node on this host is gone" in once.stderr
        assert state_rows(tmp_path / "state.db", "SELECT node FROM nodes") == []


# --- 14.2: the state file deleted or replaced while running ---

@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_lost_state_file_stops_the_daemon_with_exit_1(
        tmp_path: Path, feed_server: FeedServer, how: str) -> None:
    with WebhookReceiver() as hook:
        url = feed_server.set_feed("a.xml", [EVACUATION, UNRELATED])
        config = tmp_path / "watcher.toml"
        config.write_text(daemon_config([url], hook.url, KURSK))
        proc, log_path = start(config)
        try:
            hook.wait_for(1, timeout=30)
            state = tmp_path / "state.db"
            if how == "deleted":
                state.unlink()
            else:  # e.g. a backup restored over it
                other = tmp_path / "other.db"
                sqlite3.connect(other).close()
                os.replace(other, state)
            code = proc.wait(30)
        finally:
            out = stop(proc, log_path)
        assert code == 1, out
        critical = [x for x in json_lines(out) if str(x.get("level")).lower() == "critical"]
        assert len(critical) == 1, out
        assert f"state file {state} was {how}" in str(critical[0]["msg"])
        if how == "deleted":
            assert not state.exists()  # not quietly created again
        assert "Traceback" not in out


# --- 14.6: damaged or locked state files ---

def _damage(path: Path, how: str) -> None:
    if how == "not a database":
        path.write_bytes(os.urandom(8192))
    elif how == "malformed":
        with open(path, "r+b") as f:  # page 3 on: table pages overwritten
            f.seek(4096 * 2)
            f.write(b"\xff" * 8192)
    elif how == "bad text":
        with sqlite3.connect(path) as db:
            db.execute("UPDATE feeds SET title = CAST(x'fffe41' AS TEXT)")


@pytest.mark.parametrize("how", ["not a database", "malformed", "bad text"])
def test_a_damaged_state_file_is_one_clear_line(tmp_path: Path, feed_server: FeedServer,
                                                how: str) -> None:
    url = feed_server.set_feed("a.xml", [EVACUATION, UNRELATED])
    config = tmp_path / "watcher.toml"
    config.write_text(daemon_config([url], "http://127.0.0.1:9/hook", KURSK)
                      .replace('first_poll = "alert"', 'first_poll = "mark-seen"'))
    assert run_cli(config, "once").returncode == 0
    state = tmp_path / "state.db"
    _damage(state, how)
    for command in ("once", "run"):
        proc = subprocess.run([sys.executable, "-m", "watcher", command, "--config",
                               str(config)], capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        assert "Traceback" not in out
        [line] = [x for x in out.splitlines() if " ERROR " in x or " CRITICAL " in x]
        assert f"state file {state} is damaged" in line and "backup" in line


def test_a_locked_state_file_is_one_clear_line(tmp_path: Path, feed_server: FeedServer) -> None:
    url = feed_server.set_feed("a.xml", [UNRELATED])
    config = tmp_path / "watcher.toml"
    config.write_text(daemon_config([url], "http://127.0.0.1:9/hook", KURSK))
    assert run_cli(config, "once").returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], "
         "isolation_level=None); db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); "
         "sys.stdin.read()", str(tmp_path / "state.db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        once = run_cli(config, "once")
    finally:
        holder.communicate("", timeout=10)
    assert once.returncode == 1, once.stderr
    assert "Traceback" not in once.stderr
    assert f"state file {tmp_path / 'state.db'} is locked by another process" in once.stderr


# --- 14.7: a reload while PostgreSQL is down ---

@pytest.mark.timeout(120)
def test_a_reload_during_a_database_outage_is_retried_whole(
        tmp_path: Path, feed_server: FeedServer, notifications: Notifications) -> None:
    if reason := pgserver.skip_reason():
        pytest.skip(reason)
    with pgserver.PgServer() as db, WebhookReceiver() as hook:
        first = feed_server.set_feed("a.xml", [UNRELATED])
        later = feed_server.set_feed("b.xml", [EVACUATION])
        config = tmp_path / "watcher.toml"
        text = daemon_config([first], hook.url, KURSK).replace(
            'state = "state.db"', f'state = "{db.create_database()}"')
        config.write_text(text)
        proc, log_path = start(config, notify=notifications)
        try:
            notifications.wait_for("READY=1")
            wait_until(lambda: feed_server.requests("a.xml"), 20, "the first poll")
            db.halt()
            notifications.received.clear()
            config.write_text(text.replace(
                "\n[[topics]]", f'[[feeds]]\nurl = "{later}"\nname = "Later"\n'
                f'interval = "1s"\n\n[[topics]]', 1))
            notifications.wait_for("RELOADING=1")
            notifications.wait_for("READY=1")  # answered although the reload failed
            wait_until(lambda: logged(log_path, "config reload failed"), 20, "the failure")
            assert not feed_server.requests("b.xml")  # nothing of the new config applied
            assert proc.poll() is None
            db.launch()
            [alert] = hook.wait_for(1, timeout=60)  # the reload is retried by itself
            assert alert.json["entry"]["feed"]["url"] == later
            reloaded = wait_until(lambda: logged(log_path, "config reloaded"), 20, "reload")
            assert reloaded[0]["trigger"] == "file change"
        finally:
            out = stop(proc, log_path)
        assert proc.returncode == 0, out
        assert "Traceback" not in out


# --- 15: SIGHUP alone reloads; the watchdog pings ---

def test_sighup_alone_reloads(tmp_path: Path, feed_server: FeedServer,
                              notifications: Notifications) -> None:
    """The config is a symlink that is switched to another file (as a Kubernetes ConfigMap
    is updated): the file watcher, watching the file it pointed to, sees no change, so
    only SIGHUP can bring the new feed in."""
    with WebhookReceiver() as hook:
        first = feed_server.set_feed("a.xml", [UNRELATED])
        later = feed_server.set_feed("b.xml", [EVACUATION])
        body = daemon_config([first], hook.url, KURSK).replace(
            'state = "state.db"', f'state = "{tmp_path / "state.db"}"')
        for version, text in (("v1", body), ("v2", body.replace("\n[[topics]]", (
                f'[[feeds]]\nurl = "{later}"\nname = "Later"\ninterval = "1s"\n\n'
                f'[[topics]]'), 1))):
            (tmp_path / version).mkdir()
            (tmp_path / version / "watcher.toml").write_text(text)
        config = tmp_path / "watcher.toml"
        config.symlink_to(tmp_path / "v1" / "watcher.toml")
        proc, log_path = start(config, "--log-level", "debug", notify=notifications)
        try:
            wait_until(lambda: logged(log_path, "watching the config files"), 20,
                       "the file watcher to start")
            switch = tmp_path / "switch"
            switch.symlink_to(tmp_path / "v2" / "watcher.toml")
            os.replace(switch, config)
            polls = len(feed_server.requests("a.xml"))
            wait_until(lambda: len(feed_server.requests("a.xml")) >= polls + 3, 20,
                       "a few more polls")
            assert not hook.requests and not logged(log_path, "config reloaded")
            proc.send_signal(signal.SIGHUP)
            [alert] = hook.wait_for(1, timeout=30)
            assert alert.json["entry"]["feed"]["url"] == later
            proc.send_signal(signal.SIGHUP)  # nothing changed: the one who asked hears so
            wait_until(lambda: logged(log_path, "config unchanged"), 20, "the second reload")
        finally:
            out = stop(proc, log_path)
        reloads = [(x["msg"], x["trigger"], x["level"]) for x in json_lines(out)
                   if x["msg"] in ("config reloaded", "config unchanged")]
        assert reloads == [("config reloaded", "SIGHUP", "info"),
                           ("config unchanged", "SIGHUP", "info")], out


def test_the_watchdog_is_pinged_repeatedly(tmp_path: Path, feed_server: FeedServer,
                                           notifications: Notifications) -> None:
    url = feed_server.set_feed("a.xml", [UNRELATED])
    config = tmp_path / "watcher.toml"
    config.write_text(daemon_config([url], "http://127.0.0.1:9/hook", KURSK))
    proc, log_path = start(config, notify=notifications, WATCHDOG_USEC="400000")
    try:
        notifications.wait_for("READY=1")
        for _ in range(3):
            before = len(notifications.received)
            notifications.wait_for("WATCHDOG=1")
            pings = [m for m in notifications.received[before:] if "WATCHDOG=1" in m]
            assert pings
            notifications.received.clear()
    finally:
        out = stop(proc, log_path)
    assert proc.returncode == 0, out


# --- 14.14: metrics of a running daemon ---

def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    samples = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_a_running_daemon_reports_rounds_and_disabled_feeds(
        tmp_path: Path, feed_server: FeedServer) -> None:
    async def gone(_: web.Request) -> web.Response:
        return web.Response(status=410, text="gone")

    port = free_port()
    live = feed_server.set_feed("a.xml", [UNRELATED])
    removed = feed_server.set_handler("gone.xml", gone)
    config = tmp_path / "watcher.toml"
    config.write_text(daemon_config([live, removed], "http://127.0.0.1:9/hook", KURSK)
                      .replace("[watcher]\n", f'[watcher]\nmetrics = "127.0.0.1:{port}"\n'))
    proc, log_path = start(config)
    try:
        first = wait_until(lambda: (m := _scrape_or_none(port)) and
                           m.get("watcher_last_round_timestamp_seconds", 0) > 0 and
                           m.get('watcher_polls_total{status="disabled"}') == 1.0 and m,
                           30, "a round and the disabled feed")
        assert 'watcher_polls_total{status="410"}' not in first
        wait_until(lambda: (m := _scrape_or_none(port)) and
                   m["watcher_last_round_timestamp_seconds"]
                   > first["watcher_last_round_timestamp_seconds"], 30, "the next round")
        assert len(feed_server.requests("gone.xml")) == 1  # disabled: never polled again
    finally:
        out = stop(proc, log_path)
    assert proc.returncode == 0, out


def _scrape_or_none(port: int) -> dict[str, float] | None:
    try:
        return _scrape(port)
    except OSError:
        return None


# --- 14.5: the disk holding the state fills up ---

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: real ENOSPC for the state file."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: closing cannot hit ENOSPC
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.timeout(150)
def test_a_full_disk_backs_off_logs_once_recovers_and_stops_cleanly(
        tmp_path: Path, feed_server: FeedServer, small_disk: Path) -> None:
    items = [UNRELATED]
    rng = random.Random(14_5)

    def publish() -> bool:  # every look publishes one more story: the store must write
        n = len(items)
        words = " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(8))
                         for _ in range(6))
        items.append(Item(f"Kursk evacuation: {words} ({100 + 7 * n})",  # a new story each
                          f"https://news.example/kursk/{n}", f"ev-{n}", words * 40))
        feed_server.set_feed("a.xml", items)
        return True

    with WebhookReceiver() as hook:
        url = feed_server.set_feed("a.xml", items)
        config = tmp_path / "watcher.toml"
        config.write_text(daemon_config([url], hook.url, KURSK).replace(
            'state = "state.db"', f'state = "{small_disk / "state.db"}"'))
        proc, log_path = start(config)
        try:
            publish()
            hook.wait_for(1, timeout=30)
            filler = _fill(small_disk)
            wait_until(lambda: publish() and logged(log_path, "state store disk full"), 60,
                       "the store to fail on the full disk")
            assert proc.poll() is None
            filler.unlink()
            wait_until(lambda: logged(log_path, "state store is back"), 60, "recovery")
            delivered = len(hook.unique_deliveries)
            publish()
            wait_until(lambda: len(hook.unique_deliveries) > delivered, 30,
                       "alerts after recovery")
            assert len(logged(log_path, "state store disk full")) == 1  # once per change
            _fill(small_disk)
            wait_until(lambda: publish() and len(logged(log_path, "state store disk full"))
                       == 2, 60, "the second failure")
        finally:
            out = stop(proc, log_path)
            (small_disk / "filler").unlink(missing_ok=True)
        assert proc.returncode == 0, out  # SIGTERM while the disk is full
        assert "Unclosed" not in out
        # (the outbox's own back-off and logging on a full disk is the notify module's)
        assert not [x for x in json_lines(out) if x.get("logger") != "watcher.notify"
                    and "Traceback" in json.dumps(x)], out
        assert not hook.duplicates


# --- shutdown while a parse bomb runs ---


@pytest.mark.timeout(120)
def test_sigterm_during_a_parse_bomb_interrupts_the_poll_and_records_nothing(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """SIGTERM stops the parse workers at once: the bomb's poll is interrupted (not waited
    on for the shutdown grace, nor blamed on the feed), and its feed records nothing — no
    error, no validators, not primed — so the next start reads the document whole."""
    from test_parsepool import BOMB

    bomb = feed_server.set_feed("bomb.xml", BOMB)
    config = tmp_path / "watcher.toml"
    config.write_text(daemon_config([bomb], "http://127.0.0.1:9/hook", KURSK))
    proc, log_path = start(config, "--log-level", "debug")
    try:
        wait_until(lambda: logged(log_path, "parse worker started"), 60, "the bomb's parse")
    finally:
        out = stop(proc, log_path)
    assert proc.returncode == 0, out
    assert [x["feed"] for x in logged(log_path, "poll interrupted by the shutdown")] == [bomb]
    assert not logged(log_path, "poll crashed") and not logged(log_path, "parse took")
    assert logged(log_path, "stopped")
    assert state_rows(tmp_path / "state.db", "SELECT last_error, etag, primed, lease_owner "
                      "FROM feeds WHERE url = ?", (bomb,)) == [(None, None, 0, None)]
