"""`provisioner run --remote --cloud docker` end to end through the console script: output, exit code
and usage come back, and no instance (or build) container is left, whatever the ending."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import provisioner_exe
from tests.remote.conftest import instances_of, unique_job, write_config

pytestmark = pytest.mark.docker

LABEL = "ec2 && vcpu=1 && mem=1"


class Remote:
    def __init__(self, client, tmp: Path, image: str, boot_timeout_s: float = 60):
        self.client, self.tmp = client, tmp
        self.job = unique_job()
        self.config = write_config(tmp / "config.yaml", image, boot_timeout_s)
        self.history = tmp / "history.sqlite3"
        self.summary = tmp / "summary.json"

    def argv(self, *args: str, label: str = LABEL) -> list[str]:
        return [provisioner_exe(), "--config", str(self.config), "--history", str(self.history), "run",
                "--remote", "--cloud", "docker", "--label", label, "--job", self.job,
                "--summary-json", str(self.summary), *args]

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
        return env

    def __call__(self, *args: str, label: str = LABEL, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args, label=label), capture_output=True, text=True, env=self.env(),
                              timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env())

    def records(self) -> list[dict]:
        from provisioner.history import open_store
        with open_store(str(self.history), create=False) as store:
            return store.runs(self.job)

    def left(self) -> list:
        return instances_of(self.client, self.job)


@pytest.fixture
def remote(docker_client, agent_image, pyimage, tmp_path):
    r = Remote(docker_client, tmp_path, agent_image)
    r.pyimage = pyimage
    yield r
    left = r.left()
    for c in left:
        c.remove(force=True)
    assert not left, f"left behind: {[c.short_id for c in left]}"


def test_output_exit_code_and_usage_come_back_and_the_instance_is_gone(remote):
    done = remote("--image", remote.pyimage, "--env", "GREETING=hello from the instance", "--",
                  "python3", "-c", "import os, sys, time; print(os.environ['GREETING']); print('to stderr', file=sys.stderr);"
                  " time.sleep(2.5)")   # the engine's stats come about once a second: let a few arrive
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Starting c7a.medium spot:True price:0.0113/0.0513" in out or "Starting " in out
    start = next(line for line in out.splitlines() if line.startswith("Starting "))
    for field in ("spot:", "price:", "perf/price:", "score:", "vcpu:1", "mem:", "AZ:"):
        assert field in start
    assert "Waiting for instance i-" in out and "to be ready" in out
    assert "Z hello from the instance" in out                     # the job's line, timestamped remotely
    assert "to stderr" in done.stderr
    assert "::provisioner-" not in out + done.stderr              # markers are the launcher's, not the user's
    record = json.loads(remote.summary.read_text())
    assert record["exit_code"] == 0 and record["remote"] is True and record["cloud"] == "docker"
    assert record["job"] == remote.job and record["requested"] == LABEL
    assert record["instance_type"] == start.split()[1] and record["market"] in ("spot", "on-demand")
    assert record["price_usd_per_hour"] > 0 and record["cost_usd"] is not None
    assert record["mem_max_bytes"] is not None and record["vcpu"] == 1
    assert record["boot_s"] < 30 and record["instance_s"] >= record["duration_s"]
    assert [r["run_id"] for r in remote.records()] == [record["run_id"]]   # the local history has it


def test_a_failing_job_gives_its_exit_code(remote):
    done = remote("--image", remote.pyimage, "--", "python3", "-c", "import sys; print('failing'); sys.exit(3)")
    assert done.returncode == 3, done.stderr
    assert "Z failing" in done.stdout and remote.records()[0]["exit_code"] == 3


def test_a_timeout_gives_124(remote):
    done = remote("--image", remote.pyimage, "--timeout", "2s", "--", "python3", "-c",
                  "import time; print('sleeping', flush=True); time.sleep(60)")
    assert done.returncode == 124, done.stderr
    assert remote.records()[0]["timed_out"] is True


def test_sigint_stops_the_job_terminates_the_instance_and_gives_130(remote):
    proc = remote.popen("--image", remote.pyimage, "--", "python3", "-c",
                        "import time; print('working', flush=True); time.sleep(120)")
    deadline = time.monotonic() + 40
    seen = ""
    while time.monotonic() < deadline and "Z working" not in seen:
        seen += proc.stdout.readline()
    assert "Z working" in seen, seen
    assert remote.left(), "the instance should be running now"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 130, err
    assert "SIGINT: stopping the remote job" in err
    record = remote.records()[0]
    assert record["exit_code"] == 130 and record["interrupted"] is True


def test_an_instance_that_never_becomes_ready_is_replaced_then_given_up(docker_client, never_ready_image, tmp_path):
    remote = Remote(docker_client, tmp_path, never_ready_image, boot_timeout_s=1)
    try:
        done = remote("--", "true", timeout=60)
        assert done.returncode == 125, done.stderr
        assert done.stderr.count("was not ready after 1 s: terminating it and trying the next candidate") == 3
        assert "provisioner: error: no instance became ready within 1 s (3 tried" in done.stderr
        assert len({line.split()[1] for line in done.stdout.splitlines() if line.startswith("Starting ")}) == 3
    finally:
        left = remote.left()
        for c in left:
            c.remove(force=True)
    assert not left


def test_every_candidate_failing_is_named(docker_client, never_ready_image, tmp_path):
    remote = Remote(docker_client, tmp_path, never_ready_image, boot_timeout_s=1)
    done = remote("--", "true", label="ec2 && type=c7a.medium && spot", timeout=60)
    assert done.returncode == 125
    assert "every candidate offer failed to become ready: c7a.medium/us-east-1/spot" in done.stderr
    assert not remote.left()


def test_no_offer_is_exit_3_and_launches_nothing(remote):
    done = remote("--", "true", label="ec2 && vcpu=100000")
    assert done.returncode == 3 and "vcpu=100000" in done.stderr
    assert not remote.left()


def test_ec2_without_an_image_is_a_clear_error_before_any_call(remote):
    argv = [a if a != "docker" else "ec2" for a in remote.argv("--image", "x", "--", "true")]
    done = subprocess.run(argv, capture_output=True, text=True, env={**remote.env(), "AWS_ACCESS_KEY_ID": ""},
                          timeout=60)
    assert done.returncode == 125
    assert "no image configured for ec2: set ec2.images" in done.stderr


def test_max_concurrent_serialises_instances_of_one_job(remote):
    job = ["--image", remote.pyimage, "--max-concurrent", "1", "--", "python3", "-c",
           "import time; print('window', time.time(), flush=True); time.sleep(2); print('end', time.time())"]
    first = remote.popen(*job)
    head = ""
    while " window " not in head and first.poll() is None:
        head += first.stdout.readline()              # the first instance runs its job now
    second = remote.popen(*job)
    out1, _ = first.communicate(timeout=60)
    out1 = head + out1
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err2
    assert "Waiting: 1 instance(s) of job" in out1 + out2
    def window(out: str) -> tuple[float, float]:
        lines = out.splitlines()
        start = float(next(line.split()[-1] for line in lines if " window " in line))
        end = float(next(line.split()[-1] for line in lines if " end " in line))
        return start, end
    (a0, a1), (b0, b1) = sorted([window(out1), window(out2)])
    assert a1 <= b0, "the two instances of the job ran at the same time"


# A killed launcher's instance is no longer reaped by the next run: the run ends by its own end or
# its expiry, and its record is imported by the next `ps` (tests/remote/test_remote_runs_docker.py).
