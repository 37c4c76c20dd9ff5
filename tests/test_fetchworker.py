"""Feed fetches in worker processes (`[watcher] fetch_workers`), against real local servers:
the same answers as in the daemon's process, and no fetch lost when a worker dies or hangs."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import procs
import pytest
from aiohttp import web
from conftest import ConfigWriter
from feedserver import FeedServer, Item, rss
from servers import WebhookReceiver
from test_daemon import KURSK, daemon_config
from test_pipeline_e2e import EVACUATION
from test_ssrf import LoopbackServer, redirect_to

from watcher.config import ConfigError
from watcher.reader import fetchworker
from watcher.reader.fetch import Fetcher
from watcher.reader.fetchworker import FetchWorkers
from watcher.reader.result import Validators

ITEMS = [Item("Kursk residents evacuated", "https://news.example/a", "a-1")]


@pytest.fixture
async def workers() -> AsyncIterator[FetchWorkers]:
    pool = FetchWorkers(Fetcher(timeout=10), 2)
    yield pool
    await pool.aclose()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def slow(seconds: float, body: bytes, arrived: list[str] | None = None
         ) -> web.RequestHandler:  # type: ignore[name-defined]
    async def handler(request: web.Request) -> web.Response:
        if arrived is not None:
            arrived.append(request.path)
        await asyncio.sleep(seconds)
        return web.Response(body=body, content_type="application/rss+xml")
    return handler


async def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_workers_fetch_what_the_daemon_would(feed_server: FeedServer,
                                                   workers: FetchWorkers,
                                                   tmp_path: Path) -> None:
    url = feed_server.set_feed("feed.xml", ITEMS)
    first = await workers.fetch(url)
    here = await workers.local.fetch(url)
    assert first.ok and first.status == 200 and first.body == here.body
    assert first.validators == here.validators and first.validators.etag
    second = await workers.fetch(url, first.validators)
    assert second.not_modified and second.body is None and second.error is None
    assert feed_server.requests("feed.xml")[2].if_none_match == first.validators.etag
    missing = await workers.fetch(feed_server.url("gone.xml"))
    assert missing.status == 404 and "404" in (missing.error or "")
    local = tmp_path / "local.xml"
    local.write_bytes(rss(ITEMS))
    assert (await workers.fetch(local.as_uri())).body == local.read_bytes()
    pids = workers.pids()
    assert len(pids) == 2 and os.getpid() not in pids
    await workers.aclose()
    await wait_until(lambda: not any(alive(p) for p in pids))


async def test_many_fetches_at_once_each_get_their_own_answer(feed_server: FeedServer,
                                                             workers: FetchWorkers) -> None:
    urls = [feed_server.set_feed(f"f{i}.xml", [Item(f"Story {i}", f"https://n.example/{i}",
                                                    f"g{i}")]) for i in range(60)]
    results = await asyncio.gather(*(workers.fetch(u) for u in urls))
    assert [r.url for r in results] == urls
    assert all(f"Story {i}".encode() in (r.body or b"") for i, r in enumerate(results))


async def test_a_killed_worker_loses_no_fetch(feed_server: FeedServer, workers: FetchWorkers,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Fetches in flight in a worker that dies are fetched again in the daemon's process
    (the feed records no error), and the next fetch starts a new worker."""
    caplog.set_level(logging.WARNING, logger="watcher.fetch")
    arrived: list[str] = []
    urls = [feed_server.set_handler(f"slow{i}.xml", slow(2.0, rss(ITEMS), arrived))
            for i in range(6)]
    await workers.fetch(feed_server.set_feed("warm.xml", ITEMS))  # the workers run
    before = workers.pids()
    fetching = asyncio.gather(*(workers.fetch(u) for u in urls))
    await wait_until(lambda: len(arrived) == len(urls))  # all in flight in the workers
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    results = await fetching
    assert all(r.ok and r.status == 200 for r in results), [r.error for r in results]
    assert len(arrived) == 2 * len(urls)  # each asked again, from the daemon's process
    assert "fetch worker lost" in caplog.text
    assert (await workers.fetch(urls[0])).ok
    after = workers.pids()
    assert len(after) == 2 and not set(after) & set(before)


async def test_workers_that_keep_dying_leave_the_fetches_to_the_daemon(
        feed_server: FeedServer, workers: FetchWorkers,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watcher.fetch")
    url = feed_server.set_feed("feed.xml", ITEMS)
    killed = 0
    while killed < fetchworker.GIVE_UP_AFTER:
        assert (await workers.fetch(url)).ok
        for pid in workers.pids():
            os.kill(pid, signal.SIGKILL)
            killed += 1
        await wait_until(lambda: not workers.pids())
    # a worker leaves pids() when its socket closes; the count of deaths follows its exit
    await wait_until(lambda: workers.given_up)
    assert caplog.records[-1].levelno == logging.ERROR
    assert "fetched in the daemon's process from now on" in caplog.text
    assert (await workers.fetch(url)).ok and not workers.pids()


async def test_a_hung_worker_is_replaced_and_its_fetch_done_here(
        feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(fetchworker, "STALL_GRACE", 0.5)
    monkeypatch.setattr(fetchworker, "STALL_CHECK", 0.1)
    caplog.set_level(logging.WARNING, logger="watcher.fetch")
    pool = FetchWorkers(Fetcher(timeout=1), 1)
    try:
        url = feed_server.set_feed("feed.xml", ITEMS)
        assert (await pool.fetch(url)).ok
        [pid] = pool.pids()
        os.kill(pid, signal.SIGSTOP)  # alive, but answers nothing
        result = await asyncio.wait_for(pool.fetch(url), timeout=20)
        assert result.ok and "fetch worker stalled" in caplog.text
        # the retry can finish before the killed process has fully exited: wait for it
        await wait_until(lambda: not alive(pid) and "fetch worker lost" in caplog.text)
    finally:
        await pool.aclose()


async def test_workers_share_the_concurrency_and_a_busy_one_is_not_taken_for_hung(
        feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # two workers share `concurrency = 2`: one fetch at a time each. Twelve slow feeds
    # queue in them for ~6 x 0.6 s, longer than timeout + grace (2.5 s), yet each worker
    # answers every 0.6 s: it is busy, not hung, and is not replaced.
    monkeypatch.setattr(fetchworker, "STALL_GRACE", 0.5)
    monkeypatch.setattr(fetchworker, "STALL_CHECK", 0.1)
    caplog.set_level(logging.WARNING, logger="watcher.fetch")
    body, at_once, most = rss(ITEMS), [0], [0]

    async def handler(request: web.Request) -> web.Response:
        at_once[0] += 1
        most[0] = max(most[0], at_once[0])
        await asyncio.sleep(0.6)
        at_once[0] -= 1
        return web.Response(body=body, content_type="application/rss+xml")

    pool = FetchWorkers(Fetcher(timeout=2, concurrency=2), 2)
    try:
        urls = [feed_server.set_handler(f"slow-{i}.xml", handler) for i in range(12)]
        results = await asyncio.gather(*(pool.fetch(u) for u in urls))
        assert all(r.ok for r in results), [r.error for r in results]
        assert most[0] == 2  # no more at once than the daemon's one Fetcher would send
        assert len(pool.pids()) == 2
        assert "stalled" not in caplog.text and "lost" not in caplog.text
    finally:
        await pool.aclose()


async def test_a_reload_of_the_allowed_networks_reaches_the_workers(
        feed_server: FeedServer, workers: FetchWorkers) -> None:
    """A redirect from a loopback feed to another private address is refused in the
    workers as in the daemon, until a reload allows that network."""
    with LoopbackServer("127.0.0.2") as other:
        final = other.set_feed("feed.xml", ITEMS)
        url = feed_server.set_handler("feed.xml", redirect_to(final))
        refused = await workers.fetch(url)
        workers.fulltext_allow = [ipaddress.ip_network("127.0.0.2/32")]
        allowed = await workers.fetch(url)
    assert not refused.ok and "127.0.0.2 is a loopback address" in (refused.error or "")
    assert allowed.ok and len(other.hits) == 1


async def test_a_reload_that_changes_fetch_workers_says_it_needs_a_restart(
        tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture) -> None:
    from watcher.config import load_config
    from watcher.daemon import Daemon, Runtime

    url = feed_server.set_feed("a.xml", ITEMS)
    path = tmp_path / "watcher.toml"

    def write(workers: int, limits: str = "") -> None:
        path.write_text(daemon_config([url], "http://127.0.0.1:9/hook", KURSK).replace(
            "[watcher]\n", f'[watcher]\nembedding = "none"\nfetch_workers = {workers}\n'
                          f"{limits}"))

    write(2)
    daemon = Daemon(path)
    daemon.runtime = await Runtime.open(load_config(path), warm=False, daemon=True)
    try:
        running = daemon.runtime.feed_fetcher
        assert isinstance(running, FetchWorkers) and running.count == 2
        caplog.set_level(logging.WARNING, logger="watcher.daemon")
        write(0)
        assert await daemon._reload_guarded("test")
        assert "[watcher] fetch_workers: the fetcher keeps 2 until a restart" in caplog.text
        assert daemon.runtime.feed_fetcher is running  # the workers fetch on until then
        # so do the limits the fetcher and its workers were built with: said, not ignored
        caplog.clear()
        write(0, 'timeout = "5s"\nmax_bytes = 1000\nper_host = 1\n')
        assert await daemon._reload_guarded("test")
        for said in ("fetch_workers: the fetcher keeps 2", "timeout: the fetcher keeps 30 s",
                     "max_bytes: the fetcher keeps 10485760", "per_host: the fetcher keeps 4"):
            assert f"[watcher] {said} until a restart" in caplog.text
        assert "concurrency:" not in caplog.text
        caplog.clear()
        write(2)  # back to what the fetcher runs with: nothing to say
        assert await daemon._reload_guarded("test")
        assert "until a restart" not in caplog.text
    finally:
        await daemon._shutdown()


async def test_a_reload_while_a_worker_starts_reaches_that_worker(
        feed_server: FeedServer) -> None:
    """The address guard is never left wider than the config: networks narrowed by a
    reload while a worker was starting are the ones it applies."""
    with LoopbackServer("127.0.0.2") as other:
        final = other.set_feed("feed.xml", ITEMS)
        url = feed_server.set_handler("feed.xml", redirect_to(final))
        pool = FetchWorkers(Fetcher(timeout=10, fulltext_allow=[
            ipaddress.ip_network("127.0.0.2/32")]), 1)
        try:
            fetching = asyncio.create_task(pool.fetch(url))
            while pool._starting is None or not pool._starting.locked():
                await asyncio.sleep(0)
            pool.fulltext_allow = []  # the reload, while the worker starts
            result = await fetching
        finally:
            await pool.aclose()
    assert not result.ok and "127.0.0.2 is a loopback address" in (result.error or "")
    assert not other.hits


class _NoFork:
    """A process context whose workers cannot start (as when the forkserver cannot fork:
    its caller then reads EOF, not an OSError)."""

    class Process:
        def __init__(self, **kwargs: object) -> None:
            pass

        def start(self) -> None:
            raise EOFError("the forkserver closed its socket")


async def test_workers_that_cannot_start_leave_the_fetches_to_the_daemon(
        feed_server: FeedServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="watcher.fetch")
    url = feed_server.set_feed("feed.xml", ITEMS)
    pool = FetchWorkers(Fetcher(timeout=10), 1, context=_NoFork())
    try:
        for _ in range(fetchworker.GIVE_UP_AFTER + 1):
            assert (await pool.fetch(url)).ok
    finally:
        await pool.aclose()
    assert pool.given_up
    assert any("cannot start a fetch worker: EOFError" in getattr(r, "reason", "")
               for r in caplog.records)


async def test_closing_during_a_fetch_answers_it_and_starts_no_worker(
        feed_server: FeedServer) -> None:
    url = feed_server.set_handler("slow.xml", slow(1.0, rss(ITEMS)))
    pool = FetchWorkers(Fetcher(timeout=10), 1)
    assert (await pool.fetch(feed_server.set_feed("feed.xml", ITEMS))).ok
    fetching = asyncio.create_task(pool.fetch(url))
    await wait_until(lambda: bool(feed_server.requests("slow.xml")))
    [pid] = pool.pids()
    await pool.aclose()
    result = await fetching  # answered by the daemon's own fetcher, not cancelled
    assert result.url == url and not fetching.cancelled()
    await pool.fetch(url)
    assert not pool.pids()
    await wait_until(lambda: not alive(pid))  # killed at close if it did not exit in time


async def test_validators_cross_to_the_worker(feed_server: FeedServer,
                                              workers: FetchWorkers) -> None:
    url = feed_server.set_feed("feed.xml", ITEMS)
    stamp = "Mon, 24 Feb 2025 10:00:00 GMT"
    await workers.fetch(url, Validators("\"tag-1\"", stamp))
    [hit] = feed_server.requests("feed.xml")
    assert hit.if_none_match == "\"tag-1\"" and hit.if_modified_since == stamp


def test_fetch_workers_is_a_count_and_off_unless_set(write_config: ConfigWriter) -> None:
    assert write_config("[watcher]\n").watcher.fetch_workers == 0
    assert write_config("[watcher]\nfetch_workers = 2\n").watcher.fetch_workers == 2
    for bad_value in ("-1", "65", '"many"'):
        with pytest.raises(ConfigError) as bad:
            write_config(f"[watcher]\nfetch_workers = {bad_value}\n")
        assert "fetch_workers" in str(bad.value)


@pytest.mark.slow
def test_the_daemon_fetches_in_workers_and_survives_losing_one(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """`watcher run` with fetch_workers = 2: alerts arrive; a worker killed with SIGKILL
    is replaced and the next story still alerts; stopping the daemon ends its workers."""
    with WebhookReceiver() as hook:
        url = feed_server.set_feed("a.xml", [EVACUATION])
        config = tmp_path / "watcher.toml"
        config.write_text(daemon_config([url], hook.url, KURSK).replace(
            "[watcher]\n", '[watcher]\nfetch_workers = 2\nembedding = "none"\n'
                           'log_level = "debug"\n'))
        log_path = tmp_path / "daemon.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "watcher", "run", "--config", str(config),
                 "--log-format", "json"], stdout=log_file, stderr=subprocess.STDOUT)
        try:
            [first] = hook.wait_for(1, timeout=30)
            assert first.json["topic"] == "kursk-evacuation"
            lines = [json.loads(x) for x in log_path.read_text().splitlines()
                     if x.startswith("{")]
            pids = [x["pid"] for x in lines if x["msg"] == "fetch worker started"]
            assert len(pids) == 2
            os.kill(pids[0], signal.SIGKILL)
            later = Item("Kursk evacuation: second convoy leaves Sumy",
                         "https://news.example/kursk-2", "k-2", "Residents of Kursk region.",
                         EVACUATION.published)
            feed_server.set_feed("a.xml", [EVACUATION, later])
            received = hook.wait_for(2, timeout=30)
            assert received[1].json["entry"]["title"] == later.title
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        assert proc.returncode == 0, log_path.read_text()[-3000:]
        started = [json.loads(x)["pid"] for x in log_path.read_text().splitlines()
                   if x.startswith("{") and "fetch worker started" in x]
        assert set(pids) <= set(started)
        # a worker that outlives the daemon's wait is killed, and may take a moment to go
        procs.wait_until(lambda: not any(alive(p) for p in started), 10, "the workers to exit")
