"""Fixtures for the runner's tests: the real Docker engine, the local test images, and a helper that
runs the installed `provisioner run` console script for one test's own job name, then checks that
no container of that job was left behind."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import provisioner_exe

JOB_LABEL = "provisioner:job"


def containers_of(client: Any, job: str) -> list:
    return client.containers.list(all=True, sparse=True, filters={"label": f"{JOB_LABEL}={job}"})


class Prun:
    """`provisioner run` for one test: its own job name, history file and summary path."""

    def __init__(self, client: Any, tmp: Path):
        self.client = client
        self.job = f"test-{uuid.uuid4().hex[:10]}"
        self.history = tmp / "history.sqlite3"
        self.summary = tmp / "summary.json"

    def argv(self, *args: str) -> list[str]:
        return [provisioner_exe(), "--history", str(self.history), "run", "--job", self.job,
                "--summary-json", str(self.summary), *args]

    def __call__(self, *args: str, env: dict | None = None, timeout: float = 60
                 ) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              env=self.env(env), timeout=timeout)

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env(env))

    @staticmethod
    def env(extra: dict | None) -> dict:
        env = dict(os.environ)
        for var in ("PROVISIONER_INSTANCE_TYPE", "PROVISIONER_MARKET", "PROVISIONER_REGION",
                    "PROVISIONER_PRICE_USD_PER_HOUR", "PROVISIONER_REPORT_URL", "NO_COLOR"):
            env.pop(var, None)
        env.update(extra or {})
        return env

    def summary_json(self) -> dict:
        return json.loads(self.summary.read_text())

    def records(self) -> list[dict]:
        from provisioner.history import open_store
        with open_store(str(self.history), create=False) as store:
            return sorted(store.runs(self.job), key=lambda r: r.get("attempt") or 0)

    def wait_running(self, proc: subprocess.Popen, timeout: float = 20) -> Any:
        """The job's container once it runs (fails the test when provisioner exits first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for c in containers_of(self.client, self.job):
                if c.status == "running":
                    return c
            if proc.poll() is not None:
                pytest.fail(f"provisioner exited early: {proc.returncode} {proc.communicate()}")
            time.sleep(0.1)
        pytest.fail("the container did not start")


@pytest.fixture
def prun(docker_client, tmp_path) -> Iterator[Prun]:
    runner = Prun(docker_client, tmp_path)
    yield runner
    left = containers_of(docker_client, runner.job)
    for c in left:  # clean up before failing, so one failure does not cascade
        c.remove(force=True)
    assert not left, f"containers left behind: {[c.short_id for c in left]}"
