"""The instance's helpers without an instance: the job supervisor's command line (limits inherited
from the docker cloud), its final record, the plan correction from instance metadata, markers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.agent import markers
from provisioner.agent.supervise import final_record, runner_argv
from tests.bootstrap.stubs import ImdsStub

STATE = Path("/run/provisioner")
GIB = 1024 ** 3


def test_runner_gets_env_file_summary_and_the_instance_limits():
    argv = runner_argv(["--image", "img", "--", "python3", "-c", "x"], STATE,
                       {"PROVISIONER_CPUS": "2", "PROVISIONER_MEMORY": str(4 * GIB)})
    assert argv[:4] == [sys.executable, "-m", "provisioner", "run"]
    assert argv[4:] == ["--image", "img", "--env-file", "/run/provisioner/job.env", "--summary-json",
                        "/run/provisioner/summary.json", "--cpus", "2", "--memory", "4096M",
                        "--", "python3", "-c", "x"]


@pytest.mark.parametrize("asked,cpus,memory", [(["--cpus", "1", "--memory", "1G"], "1", "1024M"),
                                              (["--cpus", "8", "-m", "64G"], "2", "4096M")],
                         ids=["smaller-wins", "capped-at-the-instance"])
def test_a_job_never_gets_more_than_its_instance(asked, cpus, memory):
    argv = runner_argv(["--image", "img", *asked, "--", "true"], STATE,
                       {"PROVISIONER_CPUS": "2", "PROVISIONER_MEMORY": str(4 * GIB)})
    assert argv.count("--cpus") == 1 and argv[argv.index("--cpus") + 1] == cpus
    assert "-m" not in argv[4:] and argv[argv.index("--memory") + 1] == memory


def test_on_ec2_no_limits_are_added():
    argv = runner_argv(["--image", "img", "--cpus", "3", "--", "true"], STATE, {})
    assert argv[argv.index("--cpus") + 1] == "3" and "--memory" not in argv


def test_final_record_is_marked_by_the_watchers_stop(tmp_path):
    assert final_record(tmp_path) is None
    (tmp_path / "summary.json").write_text(json.dumps({"run_id": "r", "exit_code": 143, "interrupted": True}))
    assert final_record(tmp_path) == {"run_id": "r", "exit_code": 143, "interrupted": True}
    (tmp_path / "expired").write_text("1")
    assert final_record(tmp_path)["stopped_by"] == "expired"


def test_markers_round_trip_and_ignore_ordinary_lines():
    assert markers.parse(markers.READY) == ("ready", None)
    assert markers.parse(markers.exit_line(3)) == ("exit", 3)
    assert markers.parse(markers.record_line({"a": 1})) == ("record", {"a": 1})
    assert markers.parse(markers.event_line("interrupted", x=1)) == ("event", {"event": "interrupted", "x": 1})
    for line in ("2026-01-01T00:00:00Z ::provisioner-exit:: 3", "::provisioner-exit:: x", "::provisioner-record:: [1]"):
        assert markers.parse(line) is None


def plan_env(env: dict) -> str:
    done = subprocess.run([sys.executable, "-m", "provisioner.agent", "plan-env"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_plan_env_corrects_the_plan_from_instance_metadata():
    stub = ImdsStub({"instance-type": "m5a.large", "instance-life-cycle": "on-demand"}).start()
    try:
        out = plan_env({"PROVISIONER_IMDS_URL": stub.url, "PROVISIONER_INSTANCE_TYPE": "m5.large",
                        "PROVISIONER_MARKET": "spot", "PROVISIONER_REGION": "us-east-1"})
        done = plan_env({"PROVISIONER_IMDS_URL": stub.url, "PROVISIONER_INSTANCE_TYPE": "m5a.large",
                         "PROVISIONER_MARKET": "on-demand", "PROVISIONER_REGION": "us-east-1",
                         "PROVISIONER_INSTANCE_ID": "i-0stub"})
    finally:
        stub.stop()
    assert "export PROVISIONER_INSTANCE_TYPE=m5a.large" in out and "export PROVISIONER_MARKET=on-demand" in out
    assert "export PROVISIONER_INSTANCE_ID=i-0stub" in out and "unset PROVISIONER_PRICE_USD_PER_HOUR" in out
    assert done == ""                                         # nothing to correct
    assert plan_env({"PROVISIONER_IMDS_URL": ""}) == ""       # no metadata service: nothing asked
