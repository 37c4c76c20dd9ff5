"""Checks across every file's tables once all are collected.

`_cross_check` finds duplicate feed URLs, topic and channel names, a topic's references
to channels and feeds that do not exist, a topic with nothing to match, and (unless
asked not to) phrases the matcher refuses; it reads the tables as written, so an invalid
table is still counted and one pass reports every problem. `_secret_problems` checks
that the variables and files channels name for their secrets exist, and that a webhook
URL read from one is an http(s) URL.
"""

from __future__ import annotations

import glob
import itertools
import os
from pathlib import Path
from typing import Any

from watcher.config.channels import WebhookChannel, resolve_secret, secret_path
from watcher.config.schema import TableError
from watcher.config.settings import ConfigError, TopicSettings
from watcher.config.tables import _Collected


def _strings(item: dict[str, Any], *keys: str) -> list[str]:
    """The string values of these keys (a string or a list of them) in a raw table."""
    out: list[str] = []
    for key in keys:
        value = item.get(key)
        out.extend(v.strip() for v in (value if isinstance(value, list) else [value])
                   if isinstance(v, str))
    return out


def _cross_check(c: _Collected, problems: list[str], *, phrases: bool = True) -> None:
    valid_urls = {(file, i): f.url for file, i, f in c.feeds}
    for kind, what in (("feeds", "url"), ("topics", "name"), ("channels", "name")):
        seen: dict[str, tuple[Path, int]] = {}
        for file, i, item in c.raw[kind]:
            key = valid_urls.get((file, i)) if kind == "feeds" else None
            key = key or item.get(what)
            if not isinstance(key, str):
                continue
            if key in seen:
                first = seen[key]
                problems.append(
                    f"{file}: {kind}[{i}]: duplicate {what} {key!r} "
                    f"(first at {first[0]}: {kind}[{first[1]}])"
                )
            seen.setdefault(key, (file, i))
    channel_names = {n for _, _, ch in c.raw["channels"] for n in _strings(ch, "name")}
    feed_refs = {n for _, _, f in c.raw["feeds"] for n in _strings(f, "name", "tags")}
    for file, i, topic in c.raw["topics"]:
        for j, name in _refs(topic, "channels"):
            if name not in channel_names:
                problems.append(
                    f"{file}: topics[{i}].channels[{j}]: no channel named {name!r} "
                    f"(defined: {sorted(channel_names) or 'none'})"
                )
        for j, ref in _refs(topic, "feeds"):
            if ref not in feed_refs:
                problems.append(f"{file}: topics[{i}].feeds[{j}]: no feed name or tag {ref!r}")
    valid = {(file, i): topic for file, i, topic in c.topics}
    for file, i, raw in c.raw["topics"]:
        rule = valid.get((file, i)) or _phrases_only(raw)
        if rule is None:
            continue
        if not (rule.any or rule.all or rule.query or rule.about or rule.like):
            problems.append(
                f"{file}: topics[{i}]: a topic needs at least one of any, all, query, about, like"
            )
            continue
        if phrases:
            problems.extend(f"{file}: topics[{i}]: {p}" for p in _phrase_problems(rule))


def _phrases_only(raw: dict[str, Any]) -> TopicSettings | None:
    """An invalid topic's phrases alone, so their problems show in the same pass."""
    keys = {"any", "all", "none", "query", "about", "like", "unlike"}
    try:
        return TopicSettings.from_table(
            {"name": "-", **{k: v for k, v in raw.items() if k in keys}}
        )
    except TableError:
        return None


def _refs(topic: dict[str, Any], key: str) -> list[tuple[int, str]]:
    value = topic.get(key)
    if not isinstance(value, list):
        return []
    return [(j, v.strip()) for j, v in enumerate(value) if isinstance(v, str)]


def _phrase_problems(topic: TopicSettings) -> list[str]:
    """What the matcher refuses in a topic's phrases (a wildcard too short, no words...)."""
    from watcher.matching.match import Matcher

    try:
        Matcher([topic.rule()])
    except ValueError as exc:
        return [str(exc)]
    return []


def _secret_problems(path: Path, c: _Collected) -> list[str]:
    out: list[str] = []
    for file, i, ch in c.channels:
        pairs = {
            "email": [("password_env", "password_file")],
            "webhook": [("secret_env", "secret_file"), ("url_env", "url_file")],
            "apprise": [("urls_env", "urls_file")],
        }.get(ch.type, [])
        for env_key, file_key in pairs:
            env_name, file_name = getattr(ch, env_key), getattr(ch, file_key)
            if env_name and file_name:
                out.append(f"{file}: channels[{i}]: set {env_key} or {file_key}, not both")
            elif env_name and env_name not in os.environ:
                out.append(
                    f"{file}: channels[{i}].{env_key}: environment variable {env_name} is not set"
                )
            elif file_name and not secret_path(file_name, path.parent).is_file():
                out.append(
                    f"{file}: channels[{i}].{file_key}: no such file {path.parent / file_name}"
                    + _credential_hint(file_name)
                )
            elif env_name or file_name:  # there: empty or unreadable?
                try:
                    resolve_secret(env_name, file_name, path.parent)
                except ConfigError as exc:
                    key = env_key if env_name else file_key
                    out.extend(f"{file}: channels[{i}].{key}: {p}" for p in exc.problems)
        if isinstance(ch, WebhookChannel) and (ch.url_env or ch.url_file):
            out.extend(_secret_url_problems(path, file, i, ch))
        if ch.type == "apprise" and not (ch.urls_env or ch.urls_file):
            out.append(
                f"{file}: channels[{i}]: an apprise channel needs urls_env or urls_file "
                "(service URLs hold tokens, so they are never written inline)"
            )
    return out


def _credential_hint(file_name: str) -> str:
    if "/" in file_name:
        return ""
    where = os.environ.get("CREDENTIALS_DIRECTORY")
    return f" (nor in the systemd credentials, {where})" if where else ""


def _secret_url_problems(path: Path, file: Path, i: int, ch: WebhookChannel) -> list[str]:
    """A webhook URL read from url_env / url_file must be an http(s) URL."""
    try:
        url = resolve_secret(ch.url_env, ch.url_file, path.parent)
    except ConfigError:
        return []  # reported above as a missing variable or file
    key = "url_env" if ch.url_env else "url_file"
    if not url.startswith(("http://", "https://")):
        return [f"{file}: channels[{i}].{key}: expected it to hold an http:// or https:// URL"]
    return []


def _permission_warnings(path: Path, files: list[Path], folders: list[Path],
                         c: _Collected) -> list[str]:
    """Config files and folders (the config's own, each include's) that any user may
    write, and secret files any user may read: whoever edits the config adds feeds and
    channels, and a running daemon picks the edit up by itself. (Group bits are left to
    the admin: a service's group sharing its config is a deliberate setup.)"""
    out: list[str] = []
    for target, what in [*((f, "file") for f in files),
                         *((d, "folder") for d in dict.fromkeys([path.parent, *folders]))]:
        mode = _mode(target)
        if mode is not None and mode & 0o002:
            out.append(f"{target}: the config {what} is writable by any user (mode "
                       f"{mode:04o}): they could add feeds and channels; chmod o-w")
    for file, i, ch in c.channels:
        for key in ("password_file", "secret_file", "url_file", "urls_file"):
            name = getattr(ch, key, "")
            secret = secret_path(name, path.parent) if name else None
            mode = _mode(secret) if secret else None
            if mode is not None and mode & 0o004:
                out.append(f"{file}: channels[{i}].{key}: {secret} is readable by any "
                           f"user (mode {mode:04o}); chmod o-r")
    return out


def include_folders(path: Path, patterns: object) -> list[Path]:
    """The folders the config's include patterns read from (matched or not yet): the folder
    of each included file, and each pattern's folder up to its first wildcard."""
    out: list[Path] = []
    for pattern in patterns if isinstance(patterns, list) else []:
        if isinstance(pattern, str):
            parts = Path(pattern).parts[:-1]
            literal = itertools.takewhile(lambda part: not glob.has_magic(part), parts)
            out.append(path.parent.joinpath(*literal))
    return out


def _mode(target: Path) -> int | None:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return None

