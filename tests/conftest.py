"""Fixtures: one per real local server, and a config writer."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

from feedserver import FeedServer
from servers import SmtpSink, WebhookReceiver

from watcher.config import Config, load_config

# aiosmtpd's server thread logs each connection at INFO; a line it logs after pytest has
# closed that test's capture stream printed a "--- Logging error ---" traceback in the run.
logging.getLogger("mail.log").setLevel(logging.WARNING)

DATA = Path(__file__).parent / "data"

# Files the tests write get a typical install's modes (0644, folders 0755) whatever the
# runner's umask: `watcher check` warns about config files other users may write.
os.umask(0o022)

# Property tests check what a function returns, not how fast: hypothesis's default 200 ms
# deadline per example failed a run on a busy 2-core machine (tests do not time things).
settings.register_profile("watcher", deadline=None)
settings.load_profile("watcher")


@pytest.fixture(autouse=True)
def own_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                  ) -> Path:
    """Each test gets its own cache folder (also for the commands it runs): phrase vectors
    one test's stand-in model made are never another's."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    return cache


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """Put the root logger back after each test: a command run in-process installs a
    handler on that test's captured stderr, which later tests must not write to."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


ConfigWriter = Callable[..., Config]


@pytest.fixture
def write_config(tmp_path: Path) -> ConfigWriter:
    """Write a TOML config into tmp_path and load it; `body` is the TOML text (dedented)."""

    def write(body: str, name: str = "watcher.toml") -> Config:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body), encoding="utf-8")
        return load_config(path)

    return write


def feeds_toml(*urls: str, **extra: str) -> str:
    """[[feeds]] tables for these URLs."""
    lines = []
    for i, url in enumerate(urls):
        lines += ["[[feeds]]", f'url = "{url}"', f'name = "Feed {i}"']
        lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


KURSK_TOPIC = """
[[topics]]
name = "kursk-evacuation"
any = ["Kursk evacuation", "evacuate Kursk residents", "Kursk residents evacuated"]
none = ["Battle of Kursk", "Kursk submarine"]
channels = {channels}
"""
