"""The CLI as a user runs it: exit codes, `check`, `test`, `status`, `retry`, `feeds`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from watcher.cli import main

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "config" / "demo"
TOPICS = (Path(__file__).parent / "data" / "match_eval" / "topics.toml").read_text()


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "watcher.toml"
    path.write_text(f"""
[watcher]
state = "state.db"
first_poll = "alert"

[[feeds]]
url = "{(DEMO / 'feeds/wire.xml').as_uri()}"
name = "Demo wire"

[[feeds]]
url = "{(DEMO / 'feeds/regional.xml').as_uri()}"
name = "Demo regional"

{TOPICS.replace('title_weight = 1.5', 'title_weight = 1.5' + chr(10) + 'channels = ["out"]')}

[[channels]]
name = "out"
type = "file"
path = "alerts.jsonl"
{extra}
""")
    return path


def test_check_ok_and_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path)
    assert main(["check", "--config", str(path)]) == 0
    assert "ok (2 feeds, 2 topics, 1 channels)" in capsys.readouterr().out
    path.write_text(path.read_text().replace('first_poll = "alert"', 'first_poll = "never"'))
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: watcher.first_poll: Input should be 'mark-seen' or 'alert'" in err


def test_check_reports_a_bad_apprise_url_without_printing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_URLS", "notascheme://s3cr3t-token@host")
    path = config(tmp_path, '[[channels]]\nname = "chat"\ntype = "apprise"\n'
                            'urls_env = "CHAT_URLS"\n')
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "channels[1]" in err and "s3cr3t-token" not in err


def test_test_command_marks_the_same_story_across_outlets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path)
    sources = [str(DEMO / "feeds/wire.xml"), str(DEMO / "feeds/regional.xml")]
    assert main(["test", "--config", str(path), "--json", *sources]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kursk = [r for r in rows if r["topic"] == "kursk-evacuation"]
    by_title = {r["title"][:20]: r for r in kursk}
    first = by_title["Russia, Ukraine agre"]
    republished = by_title["Residents of Kursk r"]
    assert first["duplicate"] is False and republished["duplicate"] is True
    assert first["story"] == republished["story"]
    assert set(first) >= {"topic", "title", "link", "published", "feed", "score", "matched",
                          "story", "duplicate"}
    assert not (tmp_path / "state.db").exists()  # no state, no alerts
    assert not (tmp_path / "alerts.jsonl").exists()


def test_test_command_explains_in_text_and_fails_on_a_bad_source(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path)
    assert main(["test", "--config", str(path), str(DEMO / "feeds/regional.xml"),
                 str(tmp_path / "missing.xml")]) == 1
    captured = capsys.readouterr()
    assert "[[Kursk]]" in captured.out and "matched" in captured.out
    assert "missing.xml" in captured.err


def test_once_status_and_retry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path)
    assert main(["once", "--config", str(path)]) == 0
    alerts = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert alerts
    capsys.readouterr()
    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Demo wire" in out and "200" in out
    assert "kursk-evacuation" in out
    # the story two outlets carried is listed once, with both outlets
    assert "2: Demo regional, Demo wire" in out or "2: Demo wire, Demo regional" in out
    assert f"out      0     0       {len(alerts)}" in out  # channel, owed, failed, delivered
    assert main(["retry", "--config", str(path)]) == 0
    assert "re-queued 0 failed alert(s)" in capsys.readouterr().out


def test_feeds_import_then_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path)
    path.write_text('include = ["feeds.d/*.toml"]\n' + path.read_text())
    opml = Path(__file__).parent / "data" / "opml" / "miniflux.opml"
    assert main(["feeds", "import", "--config", str(path), str(opml)]) == 0
    assert "added" in capsys.readouterr().out
    assert main(["check", "--config", str(path)]) == 0
    capsys.readouterr()
    assert main(["feeds", "import", "--config", str(path), str(opml)]) == 0
    assert "added 0 feed(s)" in capsys.readouterr().out  # nothing twice
    out = tmp_path / "export.opml"
    assert main(["feeds", "export", "--config", str(path), "-o", str(out)]) == 0
    assert out.read_bytes().count(b"xmlUrl=") >= 2


def test_python_dash_m_and_exit_code_for_a_missing_config(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "watcher", "check", "--config",
                           str(tmp_path / "nope.toml")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "nope.toml: cannot read config" in proc.stderr
