"""scripts/in-build-container: the Jenkinsfile's stages run inside a build container on the agent's
engine; the command sees the checkout at the same path, and its exit code is the script's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.docker


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "in-build-container", tmp_path / "scripts")
    return tmp_path


def run(checkout: Path, image: str, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROVISIONER_BUILD_IMAGE": image}
    return subprocess.run([str(checkout / "scripts" / "in-build-container"), *command], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_command_runs_in_the_checkout_and_its_exit_code_stands(checkout, busybox):
    done = run(checkout, busybox, "sh", "-c", 'pwd > where; echo "made inside" > made; exit 3')
    assert done.returncode == 3, done.stderr
    assert (checkout / "where").read_text().strip() == str(checkout)
    assert (checkout / "made").read_text() == "made inside\n"
    made = (checkout / "made").stat()
    assert (made.st_uid, made.st_gid) == (os.getuid(), os.getgid())   # handed back to the caller


def test_no_command_is_a_usage_error(checkout, busybox):
    done = run(checkout, busybox)
    assert done.returncode == 2 and "usage: scripts/in-build-container COMMAND" in done.stderr


def test_the_command_reaches_the_callers_engine_and_loopback(checkout, busybox, docker_client):
    """scripts/test inside reuses the agent's engine: the socket is there, and the network is the host's."""
    done = run(checkout, busybox, "sh", "-c", "test -S /var/run/docker.sock && cat /proc/net/dev > netdev")
    assert done.returncode == 0, done.stderr
    host_ifaces = {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}
    inner = {line.split(":")[0].strip() for line in (checkout / "netdev").read_text().splitlines()[2:]}
    assert inner == host_ifaces
