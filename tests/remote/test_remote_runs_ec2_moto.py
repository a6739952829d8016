"""Remote runs you can leave, on EC2 through moto: `run --remote --detach` returns after the job's
first line, `ps` from another process reads the instance's tags, `logs` reads its CloudWatch Logs
stream (moto's logs API), the launching machine's next `ps` imports the record of a run that ended
by itself, `stop` tags and terminates it; unknown ids exit 2. (moto runs no user-data: a thread plays
the instance's part, as in test_remote_ec2_moto.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest

from provisioner import aws
from tests.conftest import provisioner_exe
from tests.remote.test_remote_ec2_moto import REGION, ec2_config, play_instance

pytestmark = pytest.mark.moto


def test_detach_ps_logs_import_and_stop_on_ec2(moto_env, tmp_path):
    ec2 = aws.client("ec2", region=REGION)
    config = ec2_config(tmp_path, ec2)
    history = tmp_path / "h.sqlite3"
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    other = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "other"))

    def cli(*args: str, environ: dict = env) -> subprocess.CompletedProcess:
        return subprocess.run([provisioner_exe(), "--config", config, "--history", str(history), *args],
                              capture_output=True, text=True, timeout=90, env=environ)

    found: dict = {}
    stop = threading.Event()
    player = threading.Thread(target=play_instance, args=(found, stop), daemon=True)
    player.start()
    try:
        aws.client("s3", region=REGION).create_bucket(Bucket="usage")
        done = cli("run", "--remote", "--detach", "--usage-s3", "s3://usage/records/",
                   "--label", "ec2 && vcpu=2 && mem=4 && ondemand",
                   "--image", "python:3.11-slim", "--job", "ec2-job", "--", "python", "train.py")
    finally:
        stop.set()
        player.join(5)
    assert done.returncode == 0, done.stderr + done.stdout
    run_id = done.stdout.strip().splitlines()[-1]
    iid = found["instance_id"]
    item = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in item["Tags"]}
    assert item["State"]["Name"] == "running", "a detached run keeps its instance"
    assert tags["provisioner:state"] == "running" and tags["provisioner:run-id"] == run_id
    assert tags["provisioner:user"]

    listed = json.loads(cli("ps", "--json", environ=other).stdout)
    assert [(r["run_id"], r["instance_id"], r["state"]) for r in listed] == [(run_id, iid, "running")]
    logs = cli("logs", run_id[:8], environ=other)
    assert logs.returncode == 0, logs.stderr
    assert "hello from ec2" in logs.stdout and "Summary:" in logs.stdout and "::provisioner-" not in logs.stdout
    assert not history.exists() or "inner-run-1" not in history.read_bytes().decode("latin-1")

    ec2.terminate_instances(InstanceIds=[iid])            # the instance ends by itself (job end)
    listed = json.loads(cli("ps", "--json").stdout)       # the launching machine: imports the record
    assert listed[0]["state"] == "ended"
    from provisioner.history import open_store
    with open_store(str(history), create=False) as store:
        (record,) = store.runs("ec2-job")
    assert record["run_id"] == "inner-run-1" and record["instance_id"] == iid and record["remote"] is True
    keys = [o["Key"] for o in aws.client("s3", region=REGION).list_objects_v2(Bucket="usage").get("Contents", [])]
    assert [k for k in keys if k.endswith("/inner-run-1.json")], keys     # --usage-s3 of a run left behind

    again = cli("stop", run_id)
    assert again.returncode == 0 and "already ended" in again.stderr
    for command in ("logs", "stop", "attach"):
        unknown = cli(command, "i-doesnotexist")
        assert unknown.returncode == 2 and "no remote run" in unknown.stderr, unknown.stderr


def test_stop_on_ec2_tags_terminates_and_records(moto_env, tmp_path):
    ec2 = aws.client("ec2", region=REGION)
    config = ec2_config(tmp_path, ec2)
    history = tmp_path / "h.sqlite3"
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    found: dict = {}
    stop = threading.Event()
    player = threading.Thread(target=play_instance, args=(found, stop), daemon=True)
    player.start()
    try:
        done = subprocess.run([provisioner_exe(), "--config", config, "--history", str(history), "run", "--remote",
                               "--detach", "--label", "ec2 && vcpu=2 && mem=4 && ondemand", "--image",
                               "python:3.11-slim", "--job", "ec2-job", "--", "sleep", "1000"],
                              capture_output=True, text=True, timeout=90, env=env)
    finally:
        stop.set()
        player.join(5)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    stopped = subprocess.run([provisioner_exe(), "--config", config, "--history", str(history), "stop", run_id],
                             capture_output=True, text=True, timeout=90, env=env)
    assert stopped.returncode == 0, stopped.stderr
    item = ec2.describe_instances(InstanceIds=[found["instance_id"]])["Reservations"][0]["Instances"][0]
    assert item["State"]["Name"] in ("shutting-down", "terminated")
    assert {"Key": "provisioner:state", "Value": "stopping"} in item["Tags"]
    from provisioner.history import open_store
    with open_store(str(history), create=False) as store:
        assert len(store.runs("ec2-job")) == 1
