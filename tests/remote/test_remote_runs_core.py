"""The pure parts of provisioner/remote/runs.py: a run's cost and JSON, the record in its output,
the imported record, EC2's end time, finding a run by id or prefix."""

from __future__ import annotations

import pytest

from provisioner.remote import runs as remote_runs
from provisioner.agent import markers
from provisioner.remote.parts import tags
from provisioner.errors import UsageError
from provisioner.remote.run import JOB_LINE, boot_progress
from provisioner.runner.summary import JobInfo


def view(run_id: str = "4f0c9a2e-1", state: str = "running", **kw) -> remote_runs.RunView:
    base = dict(run_id=run_id, job="train", instance_id="i-1", instance_type="m5.large", market="spot",
                region="us-east-1", state=state, started=1000.0, ended=None, price=0.36, user="ann",
                owner="remote:laptop", cloud="docker")
    base.update(kw)
    return remote_runs.RunView(**base)


def test_cost_so_far_and_json():
    run = view()
    assert run.elapsed_s(now=1000.0 + 3600) == 3600 and run.cost_usd(now=1000.0 + 3600) == 0.36
    ended = view(state="ended", ended=1000.0 + 1800)
    assert ended.cost_usd(now=99999.0) == 0.18
    data = ended.as_json(now=99999.0)
    assert data["state"] == "ended" and data["elapsed_s"] == 1800 and data["started"].endswith("Z")
    assert view(price=None).cost_usd(now=2000.0) is None


def test_the_last_record_marker_is_the_runs_record():
    first = {"job": "train", "run_id": "a", "exit_code": 1}
    last = {"job": "train", "run_id": "b", "exit_code": 0}
    lines = ["hello", markers.record_line(first), "retrying", markers.record_line(last), markers.exit_line(0)]
    assert remote_runs.record_of(lines) == last
    assert remote_runs.record_of(["no", "record"]) is None


def test_an_imported_record_carries_the_instance():
    record = {"job": "train", "run_id": "inner", "start": "2026-01-01T00:00:00Z", "duration_s": 5,
              "exit_code": 0}
    out = remote_runs.imported_record(record, view())
    assert out["instance_id"] == "i-1" and out["cloud"] == "docker" and out["remote"] is True
    assert out["instance_type"] == "m5.large" and out["market"] == "spot"


def test_ec2_end_time_from_the_state_transition_reason():
    item = {"StateTransitionReason": "User initiated (2026-01-02 03:04:05 GMT)"}
    assert remote_runs._ec2_end(item) == 1767323045.0
    assert remote_runs._ec2_end({"StateTransitionReason": ""}) is None


class FakeBackend:
    name = "docker"

    def __init__(self, runs):
        self.runs = runs

    def list(self, user):
        return list(self.runs)


def test_find_by_id_prefix_or_instance_and_unknown_or_ambiguous_is_a_usage_error():
    backend = FakeBackend([view("4f0c9a2e-1", instance_id="i-1"), view("4f0c0000-2", instance_id="i-2")])
    assert remote_runs.find(backend, "4f0c9a2e-1").instance_id == "i-1"
    assert remote_runs.find(backend, "i-2").run_id == "4f0c0000-2"
    assert remote_runs.find(backend, "4f0c9").run_id == "4f0c9a2e-1"
    with pytest.raises(UsageError, match="ambiguous"):
        remote_runs.find(backend, "4f0c")
    with pytest.raises(UsageError, match="no remote run '4f0'"):     # prefixes start at 4 characters
        remote_runs.find(backend, "4f0")
    with pytest.raises(UsageError, match="no remote run 'nope'"):
        remote_runs.find(backend, "nope")
    assert UsageError.exit_code == 2


def test_run_tags_hold_user_and_state_and_nothing_about_the_launching_process():
    job = JobInfo(job="train", build=None, triggered_by=None, team=None)
    out = tags("remote:laptop", job, "run-1", "2026-01-01T00:00:00Z")
    assert out["provisioner:state"] == "running" and out["provisioner:user"]
    assert not [k for k in out if "launcher" in k]


def test_job_lines_and_progress_line():
    assert JOB_LINE.match("2026-12-05T20:16:43.700Z epoch 1")
    assert not JOB_LINE.match("Date: 2026-12-05T20:16:43.647436Z")
    assert boot_progress("i-1", 12.4) == "Booting instance i-1: 12 s elapsed"


def test_a_cloud_that_cannot_be_asked_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    import subprocess
    import sys
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true",
           "PYTHONPATH": ":".join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "provisioner", "--config", "/dev/null", "ps", "--cloud", "ec2"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cannot read remote runs on the ec2 cloud: NoCredentialsError" in done.stderr


def test_a_bad_since_is_exit_2_naming_the_option(tmp_path):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "provisioner", "--config", "/dev/null", "logs", "r-1",
                           "--since", "soon"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": ":".join(sys.path)})
    assert done.returncode == 2 and "--since" in done.stderr and "Traceback" not in done.stderr
