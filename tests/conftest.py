"""Shared fixtures: an isolated home for every test, and the installed console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """XDG state/config/cache under a temp dir, so no test touches (or reads) the user's files."""
    home = tmp_path_factory.mktemp("home")
    for var in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    for var in ("PROVISIONER_CONFIG", "PROVISIONER_HISTORY", "JOB_NAME", "BUILD_NUMBER"):
        monkeypatch.delenv(var, raising=False)
    return home


def provisioner_exe() -> str:
    """The console script installed by `pip install -e .` (scripts/test does that)."""
    exe = VENV_BIN / "provisioner"
    if exe.exists():
        return str(exe)
    found = shutil.which("provisioner")
    if not found:
        pytest.fail("the `provisioner` console script is not installed: run scripts/test")
    return found


@pytest.fixture
def cli():
    """Run the installed `provisioner` console script; returns CompletedProcess (text)."""
    def run(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 120):
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        return subprocess.run([provisioner_exe(), *args], input=input, capture_output=True, text=True,
                              env=full_env, timeout=timeout)
    return run


pytest_plugins = [
    "tests.conftest_moto",    # the session moto server: moto_server, moto_url, moto_env
    "tests.conftest_docker",  # the Docker engine and local images: docker_client, busybox, pyimage
]
