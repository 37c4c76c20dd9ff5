"""Config loading: what a user writes, and what they are told when it is wrong."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from watcher.config import ConfigError, load_config, parse_duration

VALID = """
[watcher]
interval = "5m"
story_window = "48h"

[[feeds]]
url = "https://example.org/rss"
tags = ["russia"]

[[feeds]]
url = "file:feeds/local.xml"
name = "Local"
interval = "auto"

[[topics]]
name = "kursk-evacuation"
any = ["Kursk evacuation", {phrase = "ICRC", threshold = 100}]
none = {"Battle of Kursk" = 90}
channels = ["hook"]
feeds = ["russia"]

[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9000/hook"
"""


def write(tmp_path: Path, body: str, name: str = "watcher.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, body))
    return err.value.problems


def test_a_valid_config_loads_with_typed_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.watcher.interval == timedelta(minutes=5)
    assert config.watcher.story_window == timedelta(hours=48)
    assert config.feeds[1].interval == "auto"
    assert config.feeds[1].url == (tmp_path / "feeds/local.xml").as_uri()
    rule = config.topics[0].rule()
    assert [(p.text, p.threshold) for p in rule.any] == [("Kursk evacuation", None),
                                                         ("ICRC", 100)]
    assert [(p.text, p.threshold) for p in rule.none] == [("Battle of Kursk", 90)]
    assert config.state_location() == str(tmp_path / "watcher.db")


@pytest.mark.parametrize(("body", "expected"), [
    (VALID.replace('interval = "5m"', 'interval = "5 minutes"'),
     "watcher.interval: expected a duration such as '90s'"),
    (VALID.replace('channels = ["hook"]', 'channels = ["hook"]\nthreshold = 150'),
     "topics[0].threshold: Input should be less than or equal to 100"),
    (VALID.replace('tags = ["russia"]', 'tags = ["russia"]\ncolour = "red"'),
     "feeds[0].colour: unknown key"),
    (VALID.replace('channels = ["hook"]', 'channels = ["hook", "pager"]'),
     "topics[0].channels[1]: no channel named 'pager'"),
    (VALID.replace('feeds = ["russia"]', 'feeds = ["belarus"]'),
     "topics[0].feeds[0]: no feed name or tag 'belarus'"),
    (VALID + '\n[[channels]]\nname = "hook"\ntype = "webhook"\nurl = "http://x/"\n',
     "channels[1]: duplicate name 'hook'"),
    (VALID.replace('type = "webhook"', 'type = "pager"'),
     "channels[0].type: expected one of"),
    (VALID.replace('url = "https://example.org/rss"', 'url = "ftp://example.org/rss"'),
     "feeds[0].url: expected an http://, https:// or file:// URL"),
    (VALID.replace('[watcher]', '[watcher]\nfirst_poll = "skip"'),
     "watcher.first_poll: Input should be 'mark-seen' or 'alert'"),
    (VALID + '\n[extra]\nx = 1\n', "extra: unknown key"),
])
def test_mistakes_are_named_by_file_and_key_path(tmp_path: Path, body: str,
                                                 expected: str) -> None:
    found = problems(tmp_path, body)
    path = str(tmp_path / "watcher.toml")
    assert any(p.startswith(path + ": ") and expected in p for p in found), found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    body = VALID.replace('interval = "5m"', 'interval = "soon"').replace(
        'channels = ["hook"]', 'channels = ["nope"]')
    assert len(problems(tmp_path, body)) == 2


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "[watcher\ninterval = 1")
    assert "not valid TOML" in problem and "line 1" in problem


def test_missing_secret_env_var_is_an_error_and_never_inline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = VALID.replace('url = "http://127.0.0.1:9000/hook"',
                         'url = "http://127.0.0.1:9000/hook"\nsecret_env = "HOOK_SECRET"')
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    assert any("channels[0].secret_env: environment variable HOOK_SECRET is not set" in p
               for p in problems(tmp_path, body))
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    assert load_config(write(tmp_path, body)).channels[0].secret_env == "HOOK_SECRET"
    inline = VALID.replace('url = "http://127.0.0.1:9000/hook"',
                           'url = "http://127.0.0.1:9000/hook"\nsecret = "s3cret"')
    assert any("channels[0].secret: unknown key" in p for p in problems(tmp_path, inline))


def test_includes_merge_feeds_and_errors_name_the_included_file(tmp_path: Path) -> None:
    (tmp_path / "feeds.d").mkdir()
    write(tmp_path, '[[feeds]]\nurl = "https://a.example/rss"\n', "feeds.d/a.toml")
    write(tmp_path, '[[feeds]]\nurl = "https://b.example/rss"\nbogus = 1\n', "feeds.d/b.toml")
    main = 'include = ["feeds.d/*.toml"]\n' + VALID
    found = problems(tmp_path, main)
    assert found == [f"{tmp_path / 'feeds.d/b.toml'}: feeds[0].bogus: unknown key"]
    write(tmp_path, '[[feeds]]\nurl = "https://b.example/rss"\n', "feeds.d/b.toml")
    config = load_config(write(tmp_path, main))
    assert [f.url for f in config.feeds][-2:] == ["https://a.example/rss",
                                                   "https://b.example/rss"]
    assert len(config.files) == 3


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("72h", 259200),
                                               ("1d", 86400), ("0", 0), (30, 30)])
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_example_configs_are_valid() -> None:
    root = Path(__file__).parent.parent / "config"
    for path in sorted(root.glob("*.toml")):
        config = load_config(path, check_secrets=False)
        assert config.topics and config.feeds, path


HOOK_URL = 'url = "http://127.0.0.1:9000/hook"'


def test_fulltext_allow_is_a_tuple_of_networks(tmp_path: Path) -> None:
    import ipaddress

    body = VALID.replace("[watcher]", '[watcher]\nfulltext_allow = ["10.1.0.0/16", "fd00::/8"]')
    config = load_config(write(tmp_path, body))
    assert config.watcher.fulltext_allow == (ipaddress.ip_network("10.1.0.0/16"),
                                             ipaddress.ip_network("fd00::/8"))
    assert load_config(write(tmp_path, VALID)).watcher.fulltext_allow == ()


@pytest.mark.parametrize("bad", ["10.1.0.300/16", "10.1.0.5/16", "intranet"])
def test_a_bad_fulltext_network_names_the_key_and_value(tmp_path: Path, bad: str) -> None:
    body = VALID.replace("[watcher]", f'[watcher]\nfulltext_allow = ["10.0.0.0/8", "{bad}"]')
    [problem] = problems(tmp_path, body)
    assert problem.startswith(f"{tmp_path / 'watcher.toml'}: watcher.fulltext_allow[1]: "
                              f"expected a CIDR network such as '10.1.0.0/16', got '{bad}'")


def test_webhook_url_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = VALID.replace(HOOK_URL, 'url_env = "HOOK_URL"')
    monkeypatch.delenv("HOOK_URL", raising=False)
    assert problems(tmp_path, body) == [
        f"{tmp_path / 'watcher.toml'}: channels[0].url_env: environment variable HOOK_URL "
        "is not set"]
    monkeypatch.setenv("HOOK_URL", "ftp://x/")
    assert problems(tmp_path, body) == [
        f"{tmp_path / 'watcher.toml'}: channels[0].url_env: expected it to hold an http:// "
        "or https:// URL"]
    monkeypatch.setenv("HOOK_URL", "https://hooks.example/T0/secret")
    channel = load_config(write(tmp_path, body)).channels[0]
    assert (channel.url, channel.url_env) == ("", "HOOK_URL")


def test_webhook_url_from_a_file_relative_to_the_config(tmp_path: Path) -> None:
    body = VALID.replace(HOOK_URL, 'url_file = "secrets/hook"')
    assert problems(tmp_path, body) == [
        f"{tmp_path / 'watcher.toml'}: channels[0].url_file: no such file "
        f"{tmp_path / 'secrets/hook'}"]
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/hook").write_text("https://hooks.example/T0/secret\n")
    assert load_config(write(tmp_path, body)).channels[0].url_file == "secrets/hook"


@pytest.mark.parametrize("urls", ['', f'{HOOK_URL}\nurl_env = "HOOK_URL"',
                                  'url_env = "A"\nurl_file = "b"'])
def test_a_webhook_needs_exactly_one_url_source(tmp_path: Path, urls: str) -> None:
    [problem] = problems(tmp_path, VALID.replace(HOOK_URL, urls))
    assert problem.startswith(f"{tmp_path / 'watcher.toml'}: channels[0]: a webhook channel "
                              "needs exactly one of url, url_env, url_file")
