"""Three `watcher run` nodes on one PostgreSQL; one is killed with -9 mid-round (issue 9).

Real parts: a throwaway PostgreSQL server, a feed server with a few hundred feeds, a webhook
receiver, and the daemon processes themselves. Checked: every feed is polled in every
interval (a dead node's feeds are taken over within the node TTL), never by two nodes at
once; every owed alert is created once and delivered; none is delivered twice, except
those the killed node had in flight (the receiver dedupes them on X-Watcher-Delivery).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import string
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pgserver
import pytest
from feedserver import FeedServer, Item
from servers import Reply, WebhookReceiver

pytestmark = pytest.mark.slow

FEEDS = 300
INTERVAL = 6.0  # seconds between polls of a feed
# node TTL: a killed node's leases are void this long after its last sign of life; 2.5
# heartbeats (daemon_poll.HEARTBEAT = 4 s), so a live node starved of CPU on a busy machine
# never looks dead between two of its heartbeats
TTL = 10.0
JITTER = 0.1
RNG = random.Random(9)


def _word() -> str:
    return "".join(RNG.choice(string.ascii_lowercase) for _ in range(RNG.randint(5, 9)))


def story(n: int) -> tuple[str, str]:
    """A matching headline no other one is the same story as (distinct words and numbers)."""
    return (f"Zeppelin sighted over {' '.join(_word() for _ in range(5))} ({100 + 7 * n})",
            " ".join(_word() for _ in range(12)))


class TimedFeedServer(FeedServer):
    """Also notes when each feed was fetched."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: dict[str, list[float]] = defaultdict(list)

    def _record(self, request: object, status: int) -> None:
        super()._record(request, status)  # type: ignore[arg-type]
        self.fetched[request.path].append(time.monotonic())  # type: ignore[attr-defined]


class Cluster:
    """The feeds' contents, the nodes, and the database they share."""

    def __init__(self, tmp: Path, server: FeedServer, url: str, hook: str) -> None:
        self.server = server
        self.url = url
        self.items: dict[int, list[Item]] = {
            i: [Item(f"Filler {i} {_word()}", f"https://news.test/{i}/0", f"{i}-0", _word())]
            for i in range(FEEDS)}
        for i in range(FEEDS):
            self.server.set_feed(f"f{i}.xml", self.items[i])
        self.config = tmp / "watcher.toml"
        self.config.write_text(self._config(hook))
        self.logs = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stories = 0

    def _config(self, hook: str) -> str:
        feeds = "".join(f'[[feeds]]\nurl = "{self.server.url(f"f{i}.xml")}"\nname = "Outlet {i}"\n'
                        for i in range(FEEDS))
        return f"""
[watcher]
state = "{self.url}"
interval = "{INTERVAL}s"
interval_floor = "1s"
jitter = {JITTER}
first_poll = "mark-seen"
# the headlines are made-up words, which the embedding model finds all alike; this test is
# about sharing the work, so stories are told apart on lexical evidence (words, numbers)
embedding = "none"

{feeds}
[[topics]]
name = "zeppelins"
any = ["Zeppelin sighted"]
channels = ["hook"]

[[channels]]
name = "hook"
type = "webhook"
url = "{hook}"
"""

    def start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "WATCHER_NODE_TTL": str(TTL), "PYTHONUNBUFFERED": "1"}
        log = open(self.logs / f"node-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config",
                                 str(self.config), "--log-format", "json"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def publish(self, feeds: list[int], headline: tuple[str, str] | None = None) -> None:
        """New matching entries: one new story each, or one shared story in all `feeds`."""
        shared = headline
        if shared is not None:
            self.stories += 1
        for i in feeds:
            title, summary = shared or story(self.stories)
            if shared is None:
                self.stories += 1
            n = len(self.items[i])
            self.items[i].append(Item(title, f"https://news.test/{i}/{n}", f"{i}-{n}", summary,
                                      datetime.now(UTC)))
            self.server.set_feed(f"f{i}.xml", self.items[i])

    def query(self, sql: str) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(sql).fetchall()  # type: ignore[arg-type]

    def stop(self) -> list[int]:
        codes = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                codes.append(proc.wait(30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, WebhookReceiver, TimedFeedServer]]:
    if reason := pgserver.skip_reason():
        pytest.skip(reason)
    url = pgserver.shared_server().create_database()
    with TimedFeedServer() as server, WebhookReceiver() as hook:
        nodes = Cluster(tmp_path, server, url, hook.url)
        try:
            yield nodes, hook, server
        finally:
            nodes.stop()


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_three_nodes_share_the_work_and_survive_a_kill(
        cluster: tuple[Cluster, WebhookReceiver, TimedFeedServer]) -> None:
    nodes, hook, server = cluster
    for _ in range(3):
        nodes.start()
    wait_until(lambda: len(server.fetched) == FEEDS, 30, "every feed's first poll")
    started = time.monotonic()

    # Wave 1: stories in 24 feeds, one story carried by 6 feeds at once (alerted once);
    # the first deliveries are held by the receiver so that some are in flight at the kill.
    hook.script(*[Reply(200, delay=3.0)] * 6)
    nodes.publish(list(range(0, 240, 10)))
    nodes.publish([1, 51, 101, 151, 201, 251], story(10_000))
    wait_until(lambda: nodes.query("SELECT count(*) FROM alerts WHERE lease_owner IS NOT NULL "
                                   "AND status = 'owed'")[0][0] > 0, 20, "a delivery in flight")
    [(owner,)] = nodes.query("SELECT lease_owner FROM alerts WHERE lease_owner IS NOT NULL "
                             "AND status = 'owed' LIMIT 1")
    victim = next(p for p in nodes.procs if str(owner).endswith(f":{p.pid}"))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    in_flight = {r[0] for r in nodes.query(
        f"SELECT id FROM alerts WHERE lease_owner = '{owner}' AND status = 'owed'")}

    nodes.publish(list(range(5, 300, 25)))  # wave 2, while the node is dead
    # the survivors take the dead node's feeds and alerts over: every story so far is owed
    # or delivered, and every feed (the dead node's leases included) is polled again
    wait_until(lambda: nodes.query("SELECT count(*) FROM alerts")[0][0] == nodes.stories,
               60, "wave 2 alerted by the survivors")
    wait_until(lambda: all(any(t > killed_at for t in times)
                           for times in server.fetched.values()), 60,
               "every feed polled after the kill")
    back = nodes.start()  # the killed node comes back (a new process, a new node id)
    wait_until(lambda: nodes.query(f"SELECT count(*) FROM nodes WHERE node LIKE '%:{back.pid}' "
                                   f"AND expires_at > now()")[0][0], 30, "its heartbeat")
    nodes.publish(list(range(7, 300, 30)))  # wave 3
    wait_until(lambda: len(hook.unique_deliveries) >= nodes.stories, 60, "every alert")
    delivered_at = time.monotonic()  # then every feed polled once more with every node up
    wait_until(lambda: all(any(t > delivered_at for t in times)
                           for times in server.fetched.values()), 60, "one more round")
    ended = time.monotonic()
    live = nodes.query("SELECT node, config_digest FROM nodes")
    codes = nodes.stop()

    assert codes.count(-signal.SIGKILL) == 1 and codes.count(0) == 3, codes
    alerts = nodes.query("SELECT id, status FROM alerts")
    assert len(alerts) == nodes.stories  # one alert per story, the shared story included
    assert {status for _, status in alerts} == {"delivered"}
    assert set(hook.unique_deliveries) == {alert_id for alert_id, _ in alerts}
    assert set(hook.duplicates) <= in_flight, "only the killed node's in-flight alerts repeat"
    assert len({digest for _, digest in live}) == 1 and len(live) == 3
    assert owner not in {node for node, _ in live}  # its process is gone: forgotten at once

    # Never two polls of one feed at once: a feed's next poll is scheduled from the end of
    # its last one, so consecutive polls are at least an interval (less jitter) apart
    # however loaded the machine is; only the poll the killed node never finished repeats.
    for path, times in server.fetched.items():
        window = [t for t in times if started <= t <= ended]
        gaps = [b - a for a, b in itertools.pairwise(window)]
        polls = list(itertools.pairwise(window))
        assert all(b - a >= INTERVAL * (1 - JITTER) - 1.0 for a, b in polls
                   if not killed_at - 2.0 <= a <= killed_at), (path, gaps)  # a killed poll
        # is polled again by its new owner; any other short gap would be a double poll


# --- bad input: the database unreachable at start, or lost while running ---

def _single_node_config(tmp: Path, state: str, feed_urls: list[str], hook: str) -> Path:
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\n' for u in feed_urls)
    config = tmp / "watcher.toml"
    config.write_text(f'[watcher]\nstate = "{state}"\ninterval = "2s"\ninterval_floor = "1s"\n'
                      f'first_poll = "mark-seen"\n\n{feeds}\n[[topics]]\nname = "zeppelins"\n'
                      f'any = ["Zeppelin sighted"]\nchannels = ["hook"]\n\n[[channels]]\n'
                      f'name = "hook"\ntype = "webhook"\nurl = "{hook}"\n')
    return config


def test_an_unreachable_database_at_start_exits_1(tmp_path: Path) -> None:
    port = pgserver._free_port()
    config = _single_node_config(tmp_path, f"postgresql://watcher@127.0.0.1:{port}/watcher",
                                 ["http://127.0.0.1:9/feed.xml"], "http://127.0.0.1:9/hook")
    proc = subprocess.run([sys.executable, "-m", "watcher", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert "state store unavailable" in output and f"127.0.0.1:{port}/watcher" in output


@pytest.mark.timeout(90)
def test_a_node_rides_out_a_database_outage(tmp_path: Path) -> None:
    if reason := pgserver.skip_reason():
        pytest.skip(reason)
    with pgserver.PgServer() as db, FeedServer() as server, WebhookReceiver() as hook:
        items = {i: [Item(f"Filler {i}", f"https://news.test/{i}/0", f"{i}-0")]
                 for i in range(10)}
        urls = [server.set_feed(f"f{i}.xml", items[i]) for i in range(10)]
        config = _single_node_config(tmp_path, db.create_database(), urls, hook.url)
        log_path = tmp_path / "node.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config",
                                     str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: all(server.requests(f"f{i}.xml") for i in range(10)), 30,
                       "first polls")
            db.halt()
            wait_until(lambda: "state store unavailable" in log_path.read_text(), 30,
                       "the node to notice the outage")
            assert proc.poll() is None, log_path.read_text()
            db.launch()
            title, summary = story(1)
            for i in range(10):  # one story in every feed: alerted once, whoever polls it
                items[i].append(Item(title, f"https://news.test/{i}/1", f"{i}-1", summary))
                server.set_feed(f"f{i}.xml", items[i])
            hook.wait_for(1, timeout=40)
            polls = len(server.hits)  # every feed polled again: no second alert comes
            wait_until(lambda: {h.path for h in server.hits[polls:]} >=
                       {f"/f{i}.xml" for i in range(10)}, 30, "another round")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
        output = log_path.read_text()
        assert code == 0, output
        assert "state store unavailable" in output
        assert len(hook.unique_deliveries) == 1 and not hook.duplicates
