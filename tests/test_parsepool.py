"""The parse worker pool against parse bombs, and its workers' life (issues 13.5 and 14.11).

Real worker processes throughout; the parse bomb is a real document (6 MB of unclosed tags,
about a minute of feedparser's lenient parser), served by the local feed server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ConfigWriter
from feedserver import FeedServer, Item
from procs import wait_until

from watcher.daemon import PARSE_PRELOAD
from watcher.pipeline import Pipeline
from watcher.reader.fetch import Fetcher
from watcher.reader.parse import parse_feed
from watcher.reader.parsepool import ParseLimitError, ParsePool, ParsePoolClosed
from watcher.store import SqliteStore

FEEDS = Path(__file__).parent / "data" / "feeds"
RSS_HEAD = b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
BOMB = RSS_HEAD + b"<item><title>x</title><description>" + b"<a>" * 2_000_000
NOW = datetime.now(UTC).replace(microsecond=0)
MB = 1024 * 1024


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    pool = ParsePool(workers=2, deadline=8, preload=PARSE_PRELOAD)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def real_feeds(count: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted(FEEDS.glob("*.xml"))[:count]]


def vm_size(pid: int) -> int:
    [line] = [x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
              if x.startswith("VmSize:")]
    return int(line.split()[1]) * 1024


def limit_of(pid: int, name: str) -> str:
    [line] = [x for x in Path(f"/proc/{pid}/limits").read_text().splitlines()
              if x.startswith(name)]
    return line[len(name):].split()[0]


async def test_healthy_feeds_are_parsed_while_a_bomb_runs_into_the_deadline(
        pool: ParsePool) -> None:
    loop = asyncio.get_running_loop()
    bomb = loop.run_in_executor(pool, parse_feed, BOMB, "http://127.0.0.1/bomb.xml")
    healthy = await asyncio.gather(*(loop.run_in_executor(pool, parse_feed, body, f"f{i}")
                                     for i, body in enumerate(real_feeds(12))))
    assert all(parsed.entries for parsed in healthy)
    assert not bomb.done()  # the other worker served them meanwhile
    with pytest.raises(ParseLimitError, match=r"^parse took longer than 8 s$"):
        await bomb
    [again] = real_feeds(1)  # the killed worker was replaced: the pool still serves
    assert (await loop.run_in_executor(pool, parse_feed, again, "f")).entries


async def test_workers_run_under_the_memory_limit(pool: ParsePool) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(pool, parse_feed, body, "f")
                           for body in real_feeds(4)))
    pids = pool.worker_pids()
    assert pids and os.getpid() not in pids
    for pid in pids:  # what the forkserver preloaded (shared, not the document's) + 512 MB
        preloaded = vm_size(int(Path(f"/proc/{pid}/stat").read_text().split()[3]))
        own = int(limit_of(pid, "Max address space")) - 512 * MB - preloaded
        assert 0 <= own < 100 * MB  # the worker's own start: its watch thread and its arena
    with pytest.raises(ParseLimitError, match=r"^bytes needed more than 512 MB$"):
        await loop.run_in_executor(pool, bytes, 1024 * MB)  # a gigabyte in one piece
    assert (await loop.run_in_executor(pool, parse_feed, real_feeds(1)[0], "f")).entries


@pytest.mark.timeout(60)
def test_shutdown_does_not_wait_for_a_bomb() -> None:
    pool = ParsePool(workers=1, deadline=600)
    bomb = pool.submit(parse_feed, BOMB, "http://127.0.0.1/bomb.xml")
    wait_until(lambda: bomb.running() and pool.worker_pids(), 30, "the bomb to be parsed")
    [pid] = pool.worker_pids()
    queued = pool.submit(parse_feed, real_feeds(1)[0], "f")
    pool.shutdown(wait=True, cancel_futures=True)  # the test's timeout bounds this
    # both fail as "shutting down", which the daemon handles (a cancel would look to the
    # awaiting poll like its own cancellation and skip that)
    assert isinstance(queued.exception(), ParsePoolClosed)
    assert isinstance(bomb.exception(), ParsePoolClosed)  # not the feed's fault
    assert str(bomb.exception()) == "parse stopped: the watcher is shutting down"
    # the worker is gone and reaped: no zombie left behind
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10, "the worker to be reaped")
    with pytest.raises(RuntimeError):
        pool.submit(parse_feed, b"", "f")


@pytest.mark.timeout(90)
async def test_a_bomb_feed_gets_the_error_and_the_others_their_entries(
        feed_server: FeedServer, write_config: ConfigWriter) -> None:
    """The pipeline with the pool: the bomb's feed records the error, the rest poll."""
    healthy = [feed_server.set_feed(f"ok{i}.xml", [Item(
        f"Story {i}", f"https://news.example/{i}", f"g-{i}", "Text.",
        NOW - timedelta(minutes=i))]) for i in range(4)]
    bomb_url = feed_server.set_feed("bomb.xml", BOMB)
    urls = [bomb_url, *healthy]
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\n\n' for u in urls)
    config = write_config(f'[watcher]\nstate = "state.db"\n\n{feeds}')
    store = SqliteStore(config.state_location())
    await store.open()
    fetcher = Fetcher(timeout=10)
    pool = ParsePool(workers=2, deadline=5)
    try:
        await store.sync_feeds(urls, NOW, 0)
        states = await store.feed_states(urls)
        pipeline = Pipeline(config, store, fetcher, pool)
        await pipeline.start()
        feed_of = {f.url: f for f in config.feeds}
        summaries = await asyncio.gather(*(pipeline.poll(feed_of[u], states[u]) for u in urls))
        after = await store.feed_states(urls)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        await fetcher.aclose()
        await store.close()
    assert summaries[0].error == "parse took longer than 5 s"
    assert after[bomb_url].last_error == "parse took longer than 5 s"
    assert after[bomb_url].error_count == 1
    assert [s.entries for s in summaries[1:]] == [1, 1, 1, 1]
    assert all(after[u].error_count == 0 for u in healthy)


# --- workers die with their parent ---

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from watcher.reader.parse import parse_feed
    from watcher.reader.parsepool import ParsePool

    pool = ParsePool(workers=2, deadline=600)
    assert pool.submit(parse_feed, Path(sys.argv[1]).read_bytes(), "f").result().entries
    busy = pool.submit(time.sleep, 600)  # a worker stays busy (it reads no pipe) for long
    while not busy.running():
        time.sleep(0.05)
    print("ready", flush=True)
    time.sleep(600)
""")


def cmdline(pid: int) -> bytes:
    """A process's command line; empty once it has gone (it may exit as we look)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def descendants(root: int) -> set[int]:
    """Live (non-zombie) processes below `root`, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, ppid = text.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            parents[int(stat.parent.name)] = int(ppid)
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(90)
def test_sigkilled_parent_leaves_no_workers_forkserver_or_tracker() -> None:
    feed = sorted(FEEDS.glob("*.xml"))[0]
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(feed)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        children = descendants(proc.pid)
        names = {cmdline(pid) for pid in children}
        assert any(b"forkserver" in n for n in names), names
        assert any(b"resource_tracker" in n for n in names), names
        # forkserver, the resource tracker and at least the busy worker: the pool starts
        # workers on demand, so the first may have been reused for the sleep
        assert len(children) >= 3
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: not any(alive(pid) for pid in children), 30,
                   "the pool's processes to exit after their parent was killed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# A preload that starts a thread per core as it loads, as numeric libraries do: on a host
# with many cores, each such thread's malloc arena used to stay in every worker as room past
# its memory limit (a bomb ran into the deadline instead).
THREADED_PRELOAD = textwrap.dedent("""
    import ctypes, threading
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    together = threading.Barrier(24)  # all alive at once: an arena each

    def start():
        libc.malloc(100_000)
        together.wait()

    threads = [threading.Thread(target=start) for _ in range(24)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()


    def room():
        # megabytes this worker can still allocate
        blocks = []
        while block := libc.malloc(1 << 20):
            blocks.append(block)
        for block in blocks:
            libc.free(block)
        return len(blocks)
""")
BOMB_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from test_parsepool import BOMB, real_feeds
    from watcher.daemon import PARSE_PRELOAD
    from watcher.reader.parse import parse_feed
    from watcher.reader.parsepool import ParseLimitError, ParsePool
    from threaded_preload import room

    if __name__ == "__main__":
        pool = ParsePool(workers=1, deadline=60, memory_mb=128,
                         preload=("threaded_preload", *PARSE_PRELOAD))
        [healthy] = real_feeds(1)
        try:
            print(len(pool.submit(parse_feed, healthy, "f").result().entries))
            print(pool.submit(room).result())
            try:
                pool.submit(parse_feed, BOMB, "http://127.0.0.1/bomb.xml").result()
            except ParseLimitError as exc:
                print(exc)
            print(len(pool.submit(parse_feed, healthy, "f").result().entries))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
""")


@pytest.mark.timeout(120)
def test_a_bomb_over_the_memory_limit_gets_the_memory_error(tmp_path: Path) -> None:
    """In a process of its own: the forkserver (one per process) must load this preload."""
    (tmp_path / "threaded_preload.py").write_text(THREADED_PRELOAD)
    (tmp_path / "child.py").write_text(BOMB_CHILD)
    done = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=110,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])})
    assert done.returncode == 0, done.stderr
    entries, room, error, entries_after = done.stdout.splitlines()
    assert int(entries) > 0 and entries_after == entries  # the replaced worker serves on
    # 128 MB and the few the worker unmapped since its start, not 64 MB more in the malloc
    # arena of a thread that ran in the forkserver
    assert 100 <= int(room) < 128 + 32
    assert error == "parse needed more than 128 MB"


async def test_a_crashed_worker_is_reported_and_replaced(pool: ParsePool) -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(ParseLimitError, match=r"^abort crashed its worker \(signal SIGABRT\)"):
        await loop.run_in_executor(pool, os.abort)
    with pytest.raises(ParseLimitError, match=r"crashed its worker \(exit code 3\)"):
        await loop.run_in_executor(pool, os._exit, 3)
    assert (await loop.run_in_executor(pool, parse_feed, real_feeds(1)[0], "f")).entries


SHARED = textwrap.dedent("""
    import json, sys
    from datetime import UTC, datetime
    from watcher.daemon import parse_executor
    from watcher.matching.dedupe import evidence_batch, evidence_input
    from watcher.model import Entry

    def memory(pid):
        fields = dict(line.split()[:2] for line in open(f"/proc/{pid}/smaps_rollup")
                      if line.startswith(("Rss:", "Pss:")))
        return {k.rstrip(":"): int(v) for k, v in fields.items()}

    now = datetime.now(UTC)
    uk = [evidence_input(Entry(key=str(i), guid=None, title="Мешканців Курщини евакуювали",
                               link=None, canonical_link=None, summary="Губернатор повідомив.",
                               published=now, feed_url="f", feed_name="F"), now)
          for i in range(3)]
    pool = parse_executor(100)  # the daemon's pool: 2 workers
    for future in [pool.submit(evidence_batch, uk) for _ in range(6)]:
        future.result()
    print(json.dumps([memory(pid) for pid in pool.worker_pids()]))
    pool.shutdown(wait=True, cancel_futures=True)
""")


@pytest.mark.timeout(120)
def test_the_daemons_workers_share_the_word_data_their_forkserver_preloaded() -> None:
    """The story engine's word data (Ukrainian lemmas: ~60 MB) is loaded once, in the
    forkserver, not once per parse worker: most of a worker's memory is shared."""
    from watcher.reader import warm

    assert warm.WARM, "the forkserver's preload failed: each worker loads its own copy"
    proc = subprocess.run([sys.executable, "-c", SHARED], capture_output=True, text=True,
                          timeout=100)
    assert proc.returncode == 0, proc.stderr
    workers = json.loads(proc.stdout)
    assert len(workers) == 2
    for worker in workers:  # PSS: the private pages plus a share of the shared ones
        assert worker["Pss"] < 0.6 * worker["Rss"], workers
