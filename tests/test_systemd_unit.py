"""Checks on systemd/watcher.service: the directives issue 5 asks for, and systemd-analyze."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "watcher.service"
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
def service() -> dict[str, list[str]]:
    return directives(UNIT.read_text())["Service"]


EXPECTED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "60",
    "Restart": "on-failure",
    "StateDirectory": "watcher",
    "ConfigurationDirectory": "watcher",
    "WorkingDirectory": "/var/lib/watcher",
    "ExecStart": "/opt/watcher/venv/bin/watcher run --config /etc/watcher/watcher.toml",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "EnvironmentFile": "-/etc/watcher/env",
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallArchitectures": "native",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}


@pytest.mark.parametrize(("key", "value"), EXPECTED.items())
def test_required_directive(service: dict[str, list[str]], key: str, value: str) -> None:
    assert service.get(key) == [value]


def test_environment_points_at_config(service: dict[str, list[str]]) -> None:
    assert "WATCHER_CONFIG=/etc/watcher/watcher.toml" in service["Environment"]


def test_syscall_filter_allows_system_service(service: dict[str, list[str]]) -> None:
    assert service["SystemCallFilter"][0] == "@system-service"


@pytest.mark.parametrize("key", ["RestartSec", "TimeoutStopSec"])
def test_timing_directives_present(service: dict[str, list[str]], key: str) -> None:
    assert len(service.get(key, [])) == 1
    assert re.fullmatch(r"\d+(ms|s|min)?", service[key][0])


def test_install_section() -> None:
    assert directives(UNIT.read_text())["Install"]["WantedBy"] == ["multi-user.target"]


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
