"""Fixtures for the daemon's tests: the Jenkins emulator, a small catalog, a daemon in a thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from provisioner.config import parse_config
from tests.daemon.fakes import reap_started, register_process_cloud, small_catalog  # noqa: F401  (small_catalog: re-exported)
from tests.jenkins_emulator import JenkinsEmulator, agent_jar

register_process_cloud()          # `cloud: process` builds the tests' process cloud (clouds/registry.py)

ADMIN = ("admin", "admin-token")
BOB = ("bob", "bob-token")         # no Administer: /scriptText is 403
needs_jdk = pytest.mark.skipif(not agent_jar.tools_available(), reason="a JDK (java, javac, jar) is needed")


@pytest.fixture(autouse=True)
def _reap_agents():
    """No stand-in agent outlives its test, whatever path the test took."""
    yield
    reap_started()


@pytest.fixture
def emu():
    e = JenkinsEmulator(users={ADMIN[0]: (ADMIN[1], True), BOB[0]: (BOB[1], False)}, maintain_interval=0.1)
    e.start()
    yield e
    e.stop()


def daemon_config(emu_url: str, user: str = "admin", *, cloud: str = "", **daemon: Any) -> Any:
    """A daemon's config; `cloud`: lines that choose the cloud (e.g. process_cloud_yaml(...))."""
    d = {"owner_id": "t", "interval_s": 0.3, "listen": "127.0.0.1:0", "boot_timeout_s": 60,
         "orphan_grace_s": 30, "lease_ttl_s": 10, **daemon}
    lines = ["jenkins:", f"  url: {emu_url}", f"  user: {user}", "daemon:"]
    lines += [f"  {k}: {v}" for k, v in d.items() if v is not None]
    return parse_config(cloud + "\n".join(lines) + "\n", "test.yaml")


class RunningDaemon:
    """A daemon built by provisioner.daemon.wiring, ticking in a thread."""

    def __init__(self, parts: Any):
        self.parts = parts
        self.daemon = parts.daemon
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.daemon.run, args=(self.stop,), daemon=True)

    @property
    def url(self) -> str:
        return self.parts.http.url

    def start(self) -> "RunningDaemon":
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self.thread.ident is not None:             # started (run=False daemons are ticked by hand)
            self.thread.join(timeout=30)
        self.parts.close()


@pytest.fixture
def start_daemon(tmp_path: Path):
    from provisioner.daemon.wiring import build
    started: list[RunningDaemon] = []

    def start(config, cloud, token: str, *, owner: str = "t", run: bool = True) -> RunningDaemon:
        parts = build(config, str(tmp_path / "history.sqlite3"), token, owner=owner, cloud=cloud,
                      catalog=small_catalog())
        d = RunningDaemon(parts)
        started.append(d)
        return d.start() if run else d

    yield start
    for d in started:
        d.close()
