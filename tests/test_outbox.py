"""The outbox against a real SQLite store: store failures, secrets in stored errors,
Apprise targets remembered across a restart, and digests larger than one batch.

Receivers are real (aiohttp, aiosmtpd on 127.0.0.1); time is a fixed clock; nothing sleeps
for a set time: tests wait on conditions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from servers import Reply, SmtpSink, WebhookReceiver

from watcher.config import AppriseChannel, EmailChannel, WebhookChannel
from watcher.model import Entry, FeedState, Hit, Match, NewAlert, NewStory, PollRecord, StoryMember
from watcher.notify import PermanentDeliveryError, make_sender
from watcher.notify.apprise import AppriseSender, target_key
from watcher.notify.outbox import BATCH, IDLE_WAKE, Outbox
from watcher.store import SqliteStore
from watcher.store.base import DELIVERY_LEASE
from watcher.store.sqlite import sqlite_error

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)
USER, PASSWORD, TOKEN = "hookuser", "hunter2pw", "abcdEFGH1234ijklMNOP5678"


def clock() -> datetime:
    return NOW


async def owe(store: SqliteStore, channel: str, count: int, prefix: str = "a") -> list[str]:
    """`count` owed alerts to `channel`, one story each, written as a poll writes them."""
    entries = [Entry(key=f"{prefix}{i}", guid=f"{prefix}{i}",
                     title=f"Kursk evacuation, report {prefix}{i}",
                     link=f"https://news.example/{prefix}{i}", canonical_link=None,
                     summary="Residents leave.", published=T0 + timedelta(seconds=i),
                     feed_url="https://feed.example/rss", feed_name="Wire")
               for i in range(count)]
    hit = Hit("Kursk evacuation", "title", "Kursk evacuation", 0, 16, 95.0)
    record = PollRecord(feed=FeedState(url="https://feed.example/rss", last_poll_at=T0),
                        seen=entries)
    record.matches = [(Match("kursk", e, 95.0, (hit,)), False) for e in entries]

    def decide(rec: PollRecord, fresh: list[NewStory]) -> None:
        for match, _ in rec.matches:
            e = match.entry
            rec.stories.append(NewStory(f"story-{e.key}", "kursk", e.title, e.summary, T0))
            rec.members.append(StoryMember(f"story-{e.key}", e, T0))
            rec.alerts.append(NewAlert(f"alert-{e.key}", "kursk", channel, f"story-{e.key}",
                                       e, 95.0, (hit,), T0))

    await store.record_poll(record, decide)
    return [f"alert-{e.key}" for e in entries]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "state.db")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `condition()` holds (checked as the loop runs), or fail after `timeout`."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


def hook(url: str = "", **kw: Any) -> WebhookChannel:
    return WebhookChannel.from_table({"name": "hook", "type": "webhook", "timeout": "5s"}
                                         | ({"url": url} if url else {}) | kw)


# ---------------------------------------------------------------- store failures (issue 14)


class FailingStore:
    """A real SQLite store whose calls fail, while `broken`, with the error a full disk
    gives (sqlite's "database or disk is full" turned into StoreFull by the backend)."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.broken = False
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.broken:
                self.failures += 1
                raise sqlite_error(self.inner.path,
                                   sqlite3.OperationalError("database or disk is full"))
            return await attr(*args, **kwargs)
        return call


async def test_store_errors_pause_delivery_with_backoff_and_one_line_each_way(
        store: SqliteStore, receiver: WebhookReceiver, session: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    await owe(store, "hook", 3)
    failing = FailingStore(store)
    failing.broken = True
    senders = {"hook": make_sender(hook(receiver.url), Path("."), session)}
    outbox = Outbox(failing, senders, clock=clock,  # type: ignore[arg-type]
                    store_backoff=(0.01, 0.04))
    caplog.set_level(logging.INFO, logger="watcher.notify")
    task = asyncio.create_task(outbox.run())
    try:
        await until(lambda: failing.failures >= 8)
        assert outbox.paused is not None and "disk may be full" in outbox.paused
        assert outbox.pause == 0.04  # 0.01, 0.02, 0.04, then capped
        lines = [r for r in caplog.records if r.name == "watcher.notify"]
        assert [r.getMessage() for r in lines] == [
            "store unavailable; delivery paused, owed alerts stay owed"]
        assert lines[0].exc_info is None  # a reason, not 8 tracebacks
        assert receiver.requests == []

        failing.broken = False  # space freed: delivery resumes by itself
        await receiver.wait_for_async(3)
        await until(lambda: outbox.paused is None)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    messages = [r.getMessage() for r in caplog.records if r.name == "watcher.notify"]
    assert messages.count("store unavailable; delivery paused, owed alerts stay owed") == 1
    assert messages.count("store available again; delivery resumed") == 1
    assert (await store.channel_counts())["hook"].delivered == 3
    assert sorted(receiver.unique_deliveries) == ["alert-a0", "alert-a1", "alert-a2"]


# ---------------------------------------------------------------- secrets (issue 13.4)


async def test_webhook_url_from_env_is_masked_in_logs_and_stored_errors(
        store: SqliteStore, receiver: WebhookReceiver, session: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    secret_url = f"http://{USER}:{PASSWORD}@127.0.0.1:{receiver.port}/hooks/{TOKEN}?token=t0k3n"
    monkeypatch.setenv("WATCHER_TEST_HOOK_URL", secret_url)
    sender = make_sender(hook(url_env="WATCHER_TEST_HOOK_URL"), Path("."), session)
    await owe(store, "hook", 1)
    outbox = Outbox(store, {"hook": sender}, clock=clock)
    caplog.set_level(logging.DEBUG)

    receiver.script(503)
    assert await outbox.deliver_due() == 0
    [retrying] = await store.alert_history(status="retrying")
    store.db.execute("UPDATE alerts SET next_attempt_at = 0")  # as time passing would
    receiver.script(404)
    assert await outbox.deliver_due() == 0
    [failed] = await store.failed_alerts(10)

    assert [r.path for r in receiver.requests] == [f"/hooks/{TOKEN}"] * 2  # the real URL
    assert receiver.requests[0].headers["Authorization"].startswith("Basic ")
    for stored in (retrying.last_error, failed.error):
        assert stored and "127.0.0.1" in stored and "/hooks/***" in stored
    assert "404" in failed.error and "503" in str(retrying.last_error)
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records
                        if r.name != "aiohttp.access")  # the receiver's own log: not ours
    assert "delivery failed" in logged
    for secret in (PASSWORD, TOKEN, "t0k3n", USER):
        assert secret not in str(retrying.last_error) and secret not in failed.error
        assert secret not in logged


async def test_webhook_url_and_secret_from_files(
        tmp_path: Path, receiver: WebhookReceiver, session: aiohttp.ClientSession) -> None:
    receiver.secret = "sign-me"
    (tmp_path / "hook.url").write_text(f"{receiver.url}/{TOKEN}\n")
    (tmp_path / "hook.key").write_text("sign-me\n")
    channel = hook(url_file="hook.url", secret_file="hook.key")
    sender = make_sender(channel, tmp_path, session)
    outbox_store = SqliteStore(tmp_path / "s.db")
    await outbox_store.open()
    try:
        await owe(outbox_store, "hook", 1)
        assert await Outbox(outbox_store, {"hook": sender}, clock=clock).deliver_due() == 1
    finally:
        await outbox_store.close()
    [req] = receiver.requests
    assert req.path == f"/hook/{TOKEN}" and req.signature_ok is True


async def test_email_password_from_file(tmp_path: Path,
                                        session: aiohttp.ClientSession) -> None:
    (tmp_path / "smtp.pw").write_text("s3cret-pw\n")
    with SmtpSink(auth={"watcher": "s3cret-pw"}) as sink:
        channel = EmailChannel.from_table({
            "name": "mail", "type": "email", "to": ["desk@example.org"],
            "from": "watcher@example.org", "host": "127.0.0.1", "port": sink.port,
            "username": "watcher", "password_file": "smtp.pw", "timeout": "5s"})
        from test_render import make_alert
        await make_sender(channel, tmp_path, session).send([make_alert()], "alert-1")
        [mail] = sink.messages
    assert mail.authenticated


async def test_file_channel_writes_its_file_0600(tmp_path: Path,
                                                 session: aiohttp.ClientSession) -> None:
    from test_render import make_alert

    from watcher.config import FileChannel
    channel = FileChannel.from_table({"name": "f", "type": "file", "path": "out/a.jsonl"})
    sender = make_sender(channel, tmp_path, session)
    await sender.send([make_alert(1)], "alert-1")
    await sender.send([make_alert(2)], "alert-2")
    path = tmp_path / "out" / "a.jsonl"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_text().splitlines()) == 2


FILL_UP = """
import asyncio, json, resource, signal, sys
from pathlib import Path
sys.path.insert(0, "tests")
from test_render import make_alert
from watcher.config import FileChannel
from watcher.notify import TemporaryDeliveryError, make_sender

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, as on a full disk
folder = Path(sys.argv[1])
sender = make_sender(FileChannel.from_table({"name": "f", "type": "file", "path": "a.jsonl"}),
                     folder, None)
path = folder / "a.jsonl"
asyncio.run(sender.send([make_alert(1)], "alert-1"))
before = path.stat().st_size
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (before + 200, hard))
big = make_alert(2, summary="Kursk evacuation. " + "Residents leave by bus. " * 300)
try:
    asyncio.run(sender.send([big], "alert-2"))
    print("written past the limit")
except TemporaryDeliveryError as exc:
    print("temporary:", exc)
after_failure = path.stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # the file is rotated, or space freed
asyncio.run(sender.send([big], "alert-2"))
lines = [json.loads(line)["alert_id"] for line in path.read_text().splitlines()]
print(json.dumps({"before": before, "after_failure": after_failure, "lines": lines}))
"""


def test_a_file_channel_that_cannot_write_keeps_no_half_line_and_retries(
        tmp_path: Path) -> None:
    """A write that fails midway (a full disk; here a file-size limit, which fails the same
    way) is cut back off the file and retried later, not failed: every line stays whole."""
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", FILL_UP, str(tmp_path)], cwd=repo,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, result = done.stdout.splitlines()
    assert first.startswith("temporary: ") and "a.jsonl" in first
    figures = json.loads(result)
    assert figures["after_failure"] == figures["before"]
    assert figures["lines"] == ["alert-1", "alert-2"]


async def test_a_file_channel_never_writes_through_a_link(tmp_path: Path) -> None:
    """The alerts file replaced by a link (to another user's file) is refused, for good."""
    from test_render import make_alert

    from watcher.config import FileChannel
    victim = tmp_path / "victim.txt"
    victim.write_text("theirs\n")
    (tmp_path / "a.jsonl").symlink_to(victim)
    sender = make_sender(FileChannel.from_table({"name": "f", "type": "file",
                                                 "path": "a.jsonl"}), tmp_path, None)
    with pytest.raises(PermanentDeliveryError, match="symbolic link"):
        await sender.send([make_alert(1)], "alert-1")
    assert victim.read_text() == "theirs\n"


async def test_a_file_channel_locked_by_a_reader_is_retried_not_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader holding the file's lock costs a short wait and a retry, never a pass that
    hangs every channel's deliveries."""
    import fcntl

    from test_render import make_alert

    from watcher.config import FileChannel
    from watcher.notify import TemporaryDeliveryError
    from watcher.notify import file as file_channel

    monkeypatch.setattr(file_channel, "LOCK_WAIT", 0.2)
    sender = make_sender(FileChannel.from_table({"name": "f", "type": "file",
                                                 "path": "a.jsonl"}), tmp_path, None)
    (tmp_path / "a.jsonl").touch(mode=0o600)
    with open(tmp_path / "a.jsonl", "rb") as reader:
        fcntl.flock(reader.fileno(), fcntl.LOCK_EX)
        with pytest.raises(TemporaryDeliveryError, match=r"a\.jsonl"):
            await sender.send([make_alert(1)], "alert-1")
    await sender.send([make_alert(1)], "alert-1")  # the reader is done
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 1


# ---------------------------------------------------------------- Apprise targets (issue 14.8)


def apprise_sender(monkeypatch: pytest.MonkeyPatch, session: aiohttp.ClientSession,
                   urls: list[str]) -> AppriseSender:
    monkeypatch.setenv("WATCHER_TEST_CHAT", "\n".join(urls))
    channel = AppriseChannel.from_table(
        {"name": "chat", "type": "apprise", "urls_env": "WATCHER_TEST_CHAT"})
    made = make_sender(channel, Path("."), session)
    assert isinstance(made, AppriseSender)
    return made


async def test_apprise_targets_done_survive_a_restart(
        tmp_path: Path, receiver: WebhookReceiver, session: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other = WebhookReceiver(path="/other")
    await other.start()
    urls = [f"json://bot:{PASSWORD}@127.0.0.1:{receiver.port}/hook",
            f"json://127.0.0.1:{other.port}/other"]
    try:
        first = SqliteStore(tmp_path / "state.db")
        await first.open()
        await owe(first, "chat", 1)
        other.script(502)
        outbox = Outbox(first, {"chat": apprise_sender(monkeypatch, session, urls)},
                        clock=clock)
        assert await outbox.deliver_due() == 0  # 1 of 2 targets failed: retried later
        await first.close()

        # a restart: a new store object and a new sender (no memory of the first one)
        second = SqliteStore(tmp_path / "state.db")
        await second.open()
        [owed] = await second.due_alerts(NOW + timedelta(hours=2), 10)
        assert owed.sent_to == (target_key(urls[0]),)
        assert PASSWORD not in str(owed.sent_to)  # a hash, never the URL
        second.db.execute("UPDATE alerts SET next_attempt_at = 0, lease_owner = NULL, "
                          "lease_until = NULL")  # due again, unclaimed
        outbox = Outbox(second, {"chat": apprise_sender(monkeypatch, session, urls)},
                        clock=clock)
        assert await outbox.deliver_due() == 1
        await second.close()
    finally:
        await other.stop()
    assert len(receiver.requests) == 1  # not sent again after the restart
    assert [r.status for r in other.requests] == [502, 200]


# ---------------------------------------------------------------- digests (issue 14)


@pytest.mark.parametrize("kind", ["webhook", "email"])
async def test_a_digest_of_more_than_200_alerts_delivers_every_one(
        kind: str, store: SqliteStore, receiver: WebhookReceiver,
        session: aiohttp.ClientSession) -> None:
    count = BATCH + 57
    ids = await owe(store, "digest", count)
    with SmtpSink() as sink:
        if kind == "webhook":
            channel: Any = hook(receiver.url)
        else:
            channel = EmailChannel.from_table({
                "name": "digest", "type": "email", "to": ["desk@example.org"],
                "from": "watcher@example.org", "host": "127.0.0.1", "port": sink.port})
        channel = msgspec.structs.replace(channel, name="digest")
        outbox = Outbox(store, {"digest": make_sender(channel, Path("."), session)},
                        digest_channels={"digest"}, clock=clock)
        assert await outbox.deliver_due() == count
        mails = sink.messages
    if kind == "webhook":
        got = [a["alert_id"] for r in receiver.requests for a in r.json["alerts"]]
        assert sum(r.json["count"] for r in receiver.requests) == count
    else:
        texts = "\n".join(m.part("plain") for m in mails)
        got = ["alert-" + key for key in re.findall(
            r"^\d+\. Kursk evacuation, report (a\d+)\s*$", texts, re.MULTILINE)]
        assert len(mails) == 2  # one batch of BATCH, then the rest
    assert sorted(got) == sorted(ids)  # every alert, none twice
    assert (await store.channel_counts())["digest"].delivered == count



async def test_one_alert_a_relay_refuses_does_not_fail_the_digest(
        store: SqliteStore, session: aiohttp.ClientSession) -> None:
    """A digest the relay refuses for one story's content (a filter's 554) is sent again in
    halves: every other story arrives, only the refused one is failed."""
    ids = await owe(store, "digest", 7)
    with SmtpSink() as sink:
        sink.content_filter[b"report a4"] = "554 5.7.1 message content rejected"
        channel = EmailChannel.from_table({
            "name": "digest", "type": "email", "to": ["desk@example.org"],
            "from": "watcher@example.org", "host": "127.0.0.1", "port": sink.port})
        outbox = Outbox(store, {"digest": make_sender(channel, Path("."), session)},
                        digest_channels={"digest"}, clock=clock)
        assert await outbox.deliver_due() == 6
        texts = "\n".join(m.part("plain") for m in sink.messages)
    got = set(re.findall(r"Kursk evacuation, report (a\d+)", texts))
    assert got == {i.removeprefix("alert-") for i in ids if i != "alert-a4"}
    [failed] = await store.failed_alerts(10)
    assert failed.id == "alert-a4" and "554" in failed.error
    assert len(sink.messages) <= 4  # halves, not one message per alert


async def test_a_relay_refusing_everything_fails_the_digest_without_a_message_each(
        store: SqliteStore, session: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="watcher.notify")
    await owe(store, "digest", 64)
    with SmtpSink() as sink:
        sink.content_filter[b"Kursk"] = "550 5.7.1 relaying denied"
        channel = EmailChannel.from_table({
            "name": "digest", "type": "email", "to": ["desk@example.org"],
            "from": "watcher@example.org", "host": "127.0.0.1", "port": sink.port})
        outbox = Outbox(store, {"digest": make_sender(channel, Path("."), session)},
                        digest_channels={"digest"}, clock=clock)
        assert await outbox.deliver_due() == 0
    assert len(await store.failed_alerts(100)) == 64
    # tried as a whole and as two halves; both refused: the channel's refusal, not one alert's
    assert sum("sending it in halves" in r.getMessage() for r in caplog.records) == 1


async def test_a_failing_channel_is_tried_twice_a_pass_and_holds_no_other_channel(
        store: SqliteStore, receiver: WebhookReceiver,
        session: aiohttp.ClientSession) -> None:
    """A receiver that fails (here 503) costs two attempts a pass, not one per owed alert:
    the other alerts wait with it, their attempts unchanged, and come when it is back."""
    await owe(store, "hook", 5)
    with SmtpSink() as sink:
        await owe(store, "mail", 2, prefix="m")
        mail = EmailChannel.from_table({
            "name": "mail", "type": "email", "to": ["desk@example.org"],
            "from": "watcher@example.org", "host": "127.0.0.1", "port": sink.port})
        outbox = Outbox(store, {"hook": make_sender(hook(receiver.url), Path("."), session),
                                "mail": make_sender(mail, Path("."), session)}, clock=clock)
        receiver.script(503, 503)
        assert await outbox.deliver_due() == 2
        assert len(sink.messages) == 2 and len(receiver.requests) == 2
    rows = store.db.execute("SELECT attempts, last_error FROM alerts WHERE channel = 'hook' "
                            "ORDER BY attempts DESC").fetchall()
    assert [attempts for attempts, _ in rows] == [1, 1, 0, 0, 0]
    assert all("503" in error for _, error in rows)
    store.db.execute("UPDATE alerts SET next_attempt_at = 0")  # as time passing would
    assert await outbox.deliver_due() == 5  # the receiver answers 200 again
    assert len({r.json["alert_id"] for r in receiver.requests[2:]}) == 5


async def test_an_alert_failing_alone_holds_no_other_back(
        store: SqliteStore, receiver: WebhookReceiver,
        session: aiohttp.ClientSession) -> None:
    """One alert a receiver keeps refusing for a while (its payload), first in the queue
    every pass: the alerts after it are delivered all the same."""
    ids = await owe(store, "hook", 5)
    outbox = Outbox(store, {"hook": make_sender(hook(receiver.url), Path("."), session)},
                    clock=clock)
    for _ in range(3):
        receiver.script(503)  # the first alert of the pass (alert-a0, the oldest)
        await outbox.deliver_due()
        store.db.execute("UPDATE alerts SET next_attempt_at = 0 WHERE status = 'owed'")
    delivered = {r.json["alert_id"] for r in receiver.requests if r.status == 200}
    assert delivered == set(ids[1:])
    [(attempts,)] = store.db.execute("SELECT attempts FROM alerts WHERE status = 'owed'")
    assert attempts == 3


async def test_two_alerts_failing_alone_hold_no_other_back(
        store: SqliteStore, receiver: WebhookReceiver,
        session: aiohttp.ClientSession) -> None:
    """Two alerts a receiver keeps refusing for a while, first in the queue: their two
    failures in a row make the rest wait one pass, then the least tried go first."""
    ids = await owe(store, "hook", 6)
    first, second = sorted(ids)[:2]
    for poisoned in (first, second):
        receiver.content_filter[f'"{poisoned}"'.encode()] = Reply(503)
    outbox = Outbox(store, {"hook": make_sender(hook(receiver.url), Path("."), session)},
                    clock=clock)
    for _ in range(3):
        await outbox.deliver_due()
        store.db.execute("UPDATE alerts SET next_attempt_at = 0 WHERE status = 'owed'")
    delivered = {r.json["alert_id"] for r in receiver.requests if r.status == 200}
    assert delivered == set(ids) - {first, second}


async def test_a_channel_failing_in_one_batch_is_not_tried_in_the_next(
        store: SqliteStore, receiver: WebhookReceiver,
        session: aiohttp.ClientSession) -> None:
    ids = await owe(store, "hook", BATCH + 50)
    outbox = Outbox(store, {"hook": make_sender(hook(receiver.url), Path("."), session)},
                    clock=clock)
    receiver.script(503, 503, 503, 503)
    assert await outbox.deliver_due() == 0
    # one pass: the two oldest tried, then the rest of every batch waits untried
    assert sorted(r.json["alert_id"] for r in receiver.requests) == sorted(ids)[:2]


async def test_due_but_claimed_elsewhere_is_looked_at_the_idle_pace(
        store: SqliteStore, receiver: WebhookReceiver, session: aiohttp.ClientSession) -> None:
    await owe(store, "hook", 1)
    other_node = SqliteStore(store.path)  # another process, mid-delivery of the alert
    await other_node.open()
    try:
        assert len(await other_node.due_alerts(NOW, 10)) == 1  # claimed with a lease
        outbox = Outbox(store, {"hook": make_sender(hook(receiver.url), Path("."), session)},
                        clock=clock)
        assert await outbox.deliver_due() == 0
        # still owed, but claimable only when the other node's lease ends
        assert await store.next_due_at(NOW) == NOW + timedelta(seconds=DELIVERY_LEASE)
        assert await outbox._sleep_for() == IDLE_WAKE  # not polled every 50 ms
    finally:
        await other_node.close()
    assert receiver.requests == []


class LookCounter:
    """A real SQLite store that counts the worker's looks for the next due alert (after
    each look the worker waits to be woken)."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.looks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def next_due_at(self, now: datetime) -> datetime | None:
        due = await self.inner.next_due_at(now)
        self.looks += 1
        return due


async def test_the_worker_stops_when_cancelled_as_it_is_woken(store: SqliteStore) -> None:
    """SIGTERM right as a poll's alerts wake the worker: the daemon's shutdown cancels it and
    waits for it. The cancel must win; it used to be swallowed (asyncio.wait_for in 3.11
    returns the finished wait instead), the worker delivered on, slept, and `watcher run`
    never logged "stopped"."""
    counter = LookCounter(store)
    outbox = Outbox(counter, {}, clock=clock)  # type: ignore[arg-type]
    task = asyncio.create_task(outbox.run())
    await until(lambda: counter.looks >= 1)  # idle: waiting to be woken
    outbox.wake()  # the poll that just ended owes alerts...
    task.cancel()  # ...and the shutdown stops the worker in the same turn of the loop
    done, _ = await asyncio.wait([task], timeout=10)
    assert task in done and task.cancelled(), "the outbox worker ignored its cancellation"
