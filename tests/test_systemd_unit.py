"""``systemd/breezeway-daemon.service``: valid for systemd, hardened, wired the way the daemon needs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from breezeway_daemon.config import Settings

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "breezeway-daemon.service"
INSTALLED_VENV = "/opt/breezeway-daemon/venv"
VENV = Path(sys.executable).parent.parent
MAX_EXPOSURE = 2.0

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed on this machine (apt-get install systemd)",
)


@pytest.fixture
def local_unit(tmp_path: Path) -> Path:
    """The unit with its /opt venv paths pointing at this checkout's venv (verify runs them)."""
    text = UNIT.read_text()
    assert INSTALLED_VENV in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_VENV, str(VENV)))
    return unit


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_systemd_analyze
def test_systemd_analyze_verify_passes(local_unit: Path) -> None:
    result = analyze("verify", str(local_unit))
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings (exit 0): none may concern this unit.
    about_unit = [line for line in result.stderr.splitlines() if local_unit.name in line]
    assert about_unit == []


@needs_systemd_analyze
def test_systemd_analyze_security_rates_it_at_most_2(local_unit: Path) -> None:
    result = analyze("security", "--offline=true", "--no-pager", str(local_unit))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout[-500:]
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout


def unit_settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_is_wired_the_way_the_daemon_needs() -> None:
    unit = unit_settings()
    assert unit["Type"] == ["notify"]
    assert unit["ExecStart"] == [f"{INSTALLED_VENV}/bin/breezeway-daemon serve"]
    assert re.fullmatch(r"/bin/kill -(HUP|s HUP) \$MAINPID", unit["ExecReload"][0])
    assert unit["Restart"] == ["on-failure"]
    assert "2" in unit["RestartPreventExitStatus"][0].split()  # invalid configuration
    assert "WatchdogSec" in unit and "TimeoutStopSec" in unit and "StateDirectory" in unit
    assert unit["User"] != ["root"]
    # The env file is read by the daemon (SIGHUP re-reads it), not by systemd.
    assert "EnvironmentFile" not in unit
    assert any(v.startswith("BREEZEWAY_ENV_FILE=") for v in unit["Environment"])
    # The shutdown grace must end before systemd's stop timeout.
    stop_s = int(unit["TimeoutStopSec"][0].removesuffix("s"))
    assert Settings.model_fields["shutdown_grace_s"].default < stop_s
