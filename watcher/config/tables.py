"""Reading config files into validated tables, and saying what is wrong in them.

`_read_toml` reads one file, `_includes` expands its `include` patterns, and `_collect`
validates each [[feeds]], [[topics]] and [[channels]] table into a `_Collected` (which
also keeps every table as written, for the cross-checks). Each problem `schema` finds in
a table becomes one line naming the file and the key path (`_key_path`).
`validate_feed` is the same [[feeds]] validation for OPML import.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import msgspec
import tomli
from msgspec import Struct, field

from watcher.config.channels import _CHANNEL_TYPES, ChannelSettings
from watcher.config.schema import Table, TableError, validate
from watcher.config.settings import ConfigError, FeedSettings, TopicSettings


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def validate_feed(table: Any) -> FeedSettings:
    """A [[feeds]] table as the config reads it; raises `TableError`."""
    return validate(FeedSettings, table)


def _validate(
    model: type[Table], data: Any, file: Path, loc: tuple[int | str, ...], problems: list[str]
) -> Any:
    try:
        return validate(model, data)
    except TableError as exc:
        problems.extend(f"{file}: {_key_path(loc + where)}: {what}" for where, what in exc.errors)
        return None


def _read_toml(path: Path) -> tuple[dict[str, Any], bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror}"]) from exc
    try:
        return tomli.loads(raw.decode("utf-8")), raw
    except (tomli.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc


class _Collected(Struct):
    feeds: list[tuple[Path, int, FeedSettings]] = field(default_factory=list)
    topics: list[tuple[Path, int, TopicSettings]] = field(default_factory=list)
    channels: list[tuple[Path, int, ChannelSettings]] = field(default_factory=list)
    # every table as written, valid or not: cross-checks see the invalid ones too, so one
    # pass finds every problem and a broken channel is not also "no channel named"
    raw: dict[str, list[tuple[Path, int, dict[str, Any]]]] = field(
        default_factory=lambda: {"feeds": [], "topics": [], "channels": []}
    )


def _collect(
    path: Path, data: dict[str, Any], out: _Collected, problems: list[str], allowed: set[str]
) -> None:
    for key in data:
        if key not in allowed:
            problems.append(f"{path}: {key}: unknown key (expected one of {sorted(allowed)})")
    for section, model, bucket in (
        ("feeds", FeedSettings, out.feeds),
        ("topics", TopicSettings, out.topics),
    ):
        for i, item in _tables(path, data, section, out, problems):
            if (value := _validate(model, item, path, (section, i), problems)) is not None:
                if isinstance(value, FeedSettings):
                    value = _absolute_file_url(value, path.parent)
                bucket.append((path, i, value))
    for i, item in _tables(path, data, "channels", out, problems):
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in _CHANNEL_TYPES:
            problems.append(
                f"{path}: channels[{i}].type: expected one of "
                f"{sorted(_CHANNEL_TYPES)}, got {kind!r}"
            )
        elif value := _validate(_CHANNEL_TYPES[kind], item, path, ("channels", i), problems):
            out.channels.append((path, i, value))


def _tables(
    path: Path, data: dict[str, Any], section: str, out: _Collected, problems: list[str]
) -> list[tuple[int, dict[str, Any]]]:
    """The [[section]] tables of one file (recorded raw in `out`)."""
    items = data.get(section, [])
    if not isinstance(items, list):
        problems.append(f"{path}: {section}: expected an array of tables ([[{section}]])")
        return []
    tables = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"{path}: {section}[{i}]: expected a table ([[{section}]])")
            continue
        out.raw[section].append((path, i, item))
        tables.append((i, item))
    return tables


def _absolute_file_url(feed: FeedSettings, base: Path) -> FeedSettings:
    """'file:demo/x.xml' (no slashes) is relative to the config file's folder."""
    if feed.url.startswith("file:") and not feed.url.startswith("file://"):
        return msgspec.structs.replace(feed, url=(base / feed.url[5:]).resolve().as_uri())
    return feed


def _includes(
    path: Path, data: dict[str, Any], problems: list[str], warnings: list[str]
) -> list[Path]:
    """The files `include` names: a literal path must exist; a pattern may match nothing."""
    patterns = data.get("include", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        problems.append(
            f'{path}: include: expected an array of file patterns, such as ["feeds.d/*.toml"]'
        )
        return []
    found: list[Path] = []
    for k, pattern in enumerate(patterns):
        full = path.parent / pattern
        matches = sorted(glob.glob(str(full)))
        if not matches and not glob.has_magic(pattern):
            problems.append(f"{path}: include[{k}]: no such file {full}")
        elif not matches:
            warnings.append(f"{path}: include[{k}]: {pattern!r} matches no file yet")
        found.extend(Path(m) for m in matches if Path(m).resolve() != path.resolve())
    return found
