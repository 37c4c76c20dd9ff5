"""Tests for watcher.logs."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest

from watcher import logs
from watcher.logs import setup_logging

FEED = "https://www.themoscowtimes.com/rss/news"


@pytest.fixture(autouse=True)
def outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test outside systemd (conftest puts the root logger back afterwards)."""
    for var in ("JOURNAL_STREAM", "INVOCATION_ID"):
        monkeypatch.delenv(var, raising=False)


def lines(buf: io.StringIO) -> list[str]:
    """What was written, as lines."""
    return buf.getvalue().splitlines()


def test_plain_line_with_context_and_timestamp() -> None:
    buf = io.StringIO()
    setup_logging("info", "plain", stream=buf)
    logging.getLogger("watcher.fetch").warning(
        "poll failed", extra={"feed": FEED, "reason": "timeout", "status": 503}
    )
    [line] = lines(buf)
    stamp, rest = line.split(" ", 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stamp)
    assert rest == f"WARNING watcher.fetch: poll failed feed={FEED} reason=timeout status=503"


def test_plain_quotes_values_with_spaces() -> None:
    buf = io.StringIO()
    setup_logging("info", "plain", stream=buf)
    logging.getLogger("watcher.match").info(
        "matched", extra={"topic": "kursk-evacuation", "title": 'Kursk "evacuation" begins'}
    )
    assert lines(buf)[0].endswith(
        'matched topic=kursk-evacuation title="Kursk \\"evacuation\\" begins"'
    )


@pytest.mark.parametrize("var", ["JOURNAL_STREAM", "INVOCATION_ID"])
def test_no_timestamp_under_systemd(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, "8:12345" if var == "JOURNAL_STREAM" else "abc123")
    buf = io.StringIO()
    setup_logging("info", "plain", stream=buf)
    logging.getLogger("watcher.notify").error(
        "delivery failed", extra={"channel": "ops-hook", "alert_id": "a1"}
    )
    [line] = lines(buf)
    expected = "ERROR watcher.notify: delivery failed channel=ops-hook alert_id=a1"
    # JOURNAL_STREAM with a buffer that has no fd: trusted, so the priority prefix is added.
    assert line == ("<3>" + expected if var == "JOURNAL_STREAM" else expected)


def test_journal_stream_checks_the_real_fd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with open(tmp_path / "out.log", "w+") as fh:
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")
        assert logs.journal_stream(fh) is False
        st = os.fstat(fh.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert logs.journal_stream(fh) is True


def test_json_lines_parse_with_fields() -> None:
    buf = io.StringIO()
    setup_logging("debug", "json", stream=buf)
    log = logging.getLogger("watcher.notify")
    log.info("alert sent", extra={"channel": "desk-email", "alert_id": "x9", "attempt": 2})
    log.debug("plain message")
    first, second = (json.loads(line) for line in lines(buf))
    assert first.pop("ts").endswith("+00:00")
    assert first == {
        "level": "info",
        "logger": "watcher.notify",
        "msg": "alert sent",
        "channel": "desk-email",
        "alert_id": "x9",
        "attempt": 2,
    }
    assert second["msg"] == "plain message"
    assert second["level"] == "debug"


def test_json_exception_stays_on_one_line() -> None:
    buf = io.StringIO()
    setup_logging("info", "json", stream=buf)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("watcher").exception("crashed", extra={"level": "context"})
    [line] = lines(buf)
    obj = json.loads(line)
    assert "ValueError: boom" in obj["exc"]
    assert obj["level"] == "error"
    assert obj["ctx_level"] == "context"


def test_level_filtering() -> None:
    buf = io.StringIO()
    setup_logging("WARNING", "plain", stream=buf, timestamps=False)
    log = logging.getLogger("watcher.test")
    log.debug("hidden debug")
    log.info("hidden info")
    log.warning("shown warning")
    log.error("shown error")
    assert lines(buf) == ["WARNING watcher.test: shown warning", "ERROR watcher.test: shown error"]


def test_bad_level_and_format() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        setup_logging("loud")
    with pytest.raises(ValueError, match="unknown log format"):
        setup_logging("info", "xml")  # type: ignore[arg-type]


def test_idempotent_no_duplicate_handlers() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", "plain", stream=first)
    setup_logging("info", "json", stream=second)
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logs._WatcherHandler)]
    assert len(ours) == 1
    logging.getLogger("watcher").info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_secrets_are_masked() -> None:
    buf = io.StringIO()
    setup_logging("info", "plain", stream=buf, timestamps=False)
    logging.getLogger("watcher").info(
        "connecting",
        extra={"feed": "https://bob:hunter2@example.org/rss", "password": "hunter2", "author": "A"},
    )
    [line] = lines(buf)
    assert "hunter2" not in line
    assert "feed=https://***:***@example.org/rss" in line
    assert "password=***" in line
    assert "author=A" in line


HOOK = "https://hooks.slack.com/services/T0AAAA1111/B0BBBB2222/abcdEFGH1234ijklMNOP5678"


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_hook_tokens_masked_in_message_context_and_traceback(fmt: str) -> None:
    buf = io.StringIO()
    setup_logging("info", fmt, stream=buf, timestamps=False)  # type: ignore[arg-type]
    try:
        raise ConnectionError(f"POST {HOOK} failed")
    except ConnectionError as exc:
        logging.getLogger("watcher.notify").exception(
            "delivery to %s failed", HOOK, extra={"reason": str(exc), "urls": [HOOK]})
    out = buf.getvalue()
    for token in ("T0AAAA1111", "B0BBBB2222", "abcdEFGH1234ijklMNOP5678"):
        assert token not in out
    assert out.count("https://hooks.slack.com/services/***/***/***") >= 4


def test_noisy_libraries_quiet_unless_debug() -> None:
    setup_logging("info", "plain", stream=io.StringIO())
    assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.WARNING
    setup_logging("debug", "plain", stream=io.StringIO())
    assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.DEBUG


def test_defaults_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    setup_logging(timestamps=False)
    logging.getLogger("watcher").info("to stderr")
    assert lines(buf) == ["INFO watcher: to stderr"]


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_feed_text_cannot_forge_lines_or_colours(fmt: str) -> None:
    buf = io.StringIO()
    setup_logging("info", fmt, stream=buf, timestamps=False)  # type: ignore[arg-type]
    hostile = "Kursk\nERROR watcher.notify: forged line\r\x1b[31mred\u2028"
    logging.getLogger("watcher.match").info("matched %s", hostile,
                                            extra={"title": hostile, "guid": "a\x1b[2Jb"})
    [line] = lines(buf)
    assert "\x1b" not in line and "\r" not in line and "\u2028" not in line
    if fmt == "plain":
        assert line.startswith("INFO watcher.match: matched Kursk\\nERROR watcher.notify: forged")
        assert 'guid="a\\u001b[2Jb"' in line
    else:
        assert json.loads(line)["title"] == hostile
