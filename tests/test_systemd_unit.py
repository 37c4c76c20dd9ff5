"""systemd/watcher.service as systemd and a user see it: systemd-analyze accepts it and
rates it, its commands parse and exist, and a run under its directories writes only to the
state directory."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from watcher.cli import _parser

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "watcher.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file into {section: {key: [values in order]}} (keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            out.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {raw!r}"
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return directives(UNIT.read_text())


@pytest.fixture(scope="module")
def service(unit: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    return unit["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    [value] = service[key]
    return value


def environment(service: dict[str, list[str]]) -> dict[str, str]:
    return dict(item.split("=", 1) for line in service.get("Environment", [])
                for item in shlex.split(line))


def exec_start(service: dict[str, list[str]]) -> list[str]:
    return shlex.split(one(service, "ExecStart"))


def test_exec_start_is_a_watcher_run_on_the_configuration_directory(
        service: dict[str, list[str]]) -> None:
    """ExecStart parses with watcher's own CLI, runs the daemon, and its config sits in the
    directory systemd creates (ConfigurationDirectory) and matches $WATCHER_CONFIG."""
    argv = exec_start(service)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(argv[0]).name in scripts
    args = _parser().parse_args(argv[1:])
    assert args.command == "run"
    config_dir = Path("/etc") / one(service, "ConfigurationDirectory")
    assert args.config.parent == config_dir
    assert environment(service)["WATCHER_CONFIG"] == str(args.config)
    assert Path(one(service, "WorkingDirectory")) == \
        Path("/var/lib") / one(service, "StateDirectory")


def test_exec_reload_sends_sighup_with_a_kill_that_exists(service: dict[str, list[str]]) -> None:
    argv = shlex.split(one(service, "ExecReload"))
    assert Path(argv[0]).is_file() and os.access(argv[0], os.X_OK)
    assert argv[1:] == ["-HUP", "$MAINPID"]  # the daemon reloads on SIGHUP (test_daemon)


def test_the_readme_installs_what_the_unit_runs(service: dict[str, list[str]]) -> None:
    """The README's install steps create the venv ExecStart names and copy files that exist;
    its JSON-logging drop-in is a valid command line."""
    readme = (UNIT.parent / "README.md").read_text()
    venv = re.search(r"python3 -m venv (\S+)", readme)
    assert venv and exec_start(service)[0] == f"{venv.group(1)}/bin/watcher"
    for source in re.findall(r"^install -m \d+ (\S+) ", readme, re.MULTILINE):
        assert source == "/dev/null" or (ROOT / source).is_file(), source
    drop_in = re.findall(r"^ExecStart=(.+)$", readme, re.MULTILINE)
    assert drop_in, "the README shows the --log-format json drop-in"
    args = _parser().parse_args(shlex.split(drop_in[-1])[1:])
    assert (args.command, args.log_format) == ("run", "json")


def test_a_service_run_writes_only_under_the_state_directory(
        service: dict[str, list[str]], tmp_path: Path) -> None:
    """Issue 14.10: under the unit, relative data paths in the config (the demo's state and
    file channel) land in the state directory, never beside the read-only config. The
    unit's command runs with its environment, `$STATE_DIRECTORY` and working directory (as
    `once`, so that it ends), /etc and /var/lib mapped into tmp_path."""
    etc = tmp_path / "etc" / one(service, "ConfigurationDirectory")
    state = tmp_path / "var/lib" / one(service, "StateDirectory")
    state.mkdir(parents=True)
    shutil.copytree(ROOT / "config/demo", etc / "demo")
    # `once` ends before the demo's group_wait: alert at once so the file channel writes
    demo = (ROOT / "config/demo.toml").read_text()
    (etc / "watcher.toml").write_text(re.sub(r'(?m)^group_wait = .*$', 'group_wait = "0s"', demo))
    before = sorted(p.relative_to(etc) for p in etc.rglob("*"))

    def here(arg: str) -> str:
        return arg.replace("/etc/", f"{tmp_path}/etc/").replace("/var/lib/", f"{tmp_path}/var/lib/")

    argv = [here(a) for a in exec_start(service)[1:]]
    argv[argv.index("run")] = "once"
    env = {**os.environ, **{k: here(v) for k, v in environment(service).items()},
           "STATE_DIRECTORY": str(state)}
    proc = subprocess.run([sys.executable, "-m", "watcher", *argv], env=env,
                          cwd=here(one(service, "WorkingDirectory")), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.relative_to(etc) for p in etc.rglob("*")) == before
    assert (state / "demo.db").is_file()
    assert len((state / "demo-alerts.jsonl").read_text().splitlines()) >= 2


def runnable_copy(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart pointed at an executable that exists here."""
    exe = shutil.which("watcher", path=str(Path(sys.executable).parent)) or "/bin/true"
    text = UNIT.read_text().replace("/opt/watcher/venv/bin/watcher", exe)
    text = text.replace("[Service]\n", f"[Service]\n{extra}", 1)
    path = tmp_path / "watcher.service"
    path.write_text(text)
    return path


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    """Run `systemd-analyze verify` offline (no running manager needed, no man lookups)."""
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice", "SYSTEMD_PAGER": "", "LC_ALL": "C"}
    return subprocess.run(
        [str(ANALYZE), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def complaints(result: subprocess.CompletedProcess[str], unit: Path) -> list[str]:
    """verify's lines about this unit (it reports bad directives but still exits 0)."""
    out = (result.stdout + result.stderr).splitlines()
    return [line for line in out if str(unit) in line or unit.name in line]


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    unit = runnable_copy(tmp_path)
    result = verify(unit)
    assert complaints(result, unit) == [], result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr


@needs_analyze
def test_verify_would_catch_a_bad_directive(tmp_path: Path) -> None:
    """Guards the test above: verify's warnings are seen by complaints()."""
    unit = runnable_copy(tmp_path, extra="WatchdogSec=sixty\nBogusKey=1\n")
    found = complaints(verify(unit), unit)
    assert any("BogusKey" in line for line in found), found
    assert any("sixty" in line for line in found), found


@needs_analyze
def test_security_exposure_is_low(tmp_path: Path) -> None:
    unit = runnable_copy(tmp_path)
    result = subprocess.run(
        [str(ANALYZE), "security", "--offline=yes", "--threshold=30", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
        timeout=60,
        check=False,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 3.0, result.stdout
