"""The deployment files under deploy/: the systemd unit passes `systemd-analyze verify` with no
warning, keeps its hardening, and runs the daemon's check before the daemon."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "provisioner-daemon.service"
INSTALLED = "/opt/provisioner/bin/provisioner"


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with its commands pointed at this checkout's `provisioner` (verify checks they exist)."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    command = Path(sys.executable).with_name("provisioner")
    if not command.exists():
        pytest.skip(f"no {command}: install the package into this venv")
    path = tmp_path / UNIT.name
    path.write_text(UNIT.read_text().replace(INSTALLED, str(command)))
    return path


def test_the_unit_verifies_without_a_warning(unit):
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout


def test_the_unit_is_hardened(unit):
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert level, done.stdout + done.stderr
    assert float(level.group(1)) <= 2.0, done.stdout          # systemd's scale: 0 safest, 10 exposed


def test_the_unit_runs_the_check_first_as_a_dedicated_user():
    settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["User"] == "provisioner" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["StateDirectory"] == "provisioner"
    assert settings["ExecStartPre"] == f"{INSTALLED} daemon --check"
    assert settings["ExecStart"] == f"{INSTALLED} daemon"
