"""`run --remote --cloud ec2` against moto: launch with the job-mode user-data, the secret bundle in
an SSM SecureString tagged with the instance's ARN, the job's output read back from CloudWatch Logs
(stream = instance id), and the instance terminated. moto runs no user-data, so a thread here plays
the instance's part: it reads (and deletes) the bundle and writes the lines the bootstrap would."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from provisioner import aws
from provisioner.agent import markers
from tests.clouds.conftest import _image
from tests.conftest import provisioner_exe

pytestmark = pytest.mark.moto
REGION = "us-east-1"


def ec2_config(tmp_path, ec2) -> str:
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]][:2]
    group = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    images = {"x86_64": _image(ec2, "al2023-ami-2023*", "x86_64", "/dev/xvda"),
              "arm64": _image(ec2, "al2023-ami-2023*", "arm64", "/dev/xvda")}
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"cloud": "ec2", "regions": [REGION], "daemon": {"boot_timeout_s": 60},
                                "ec2": {"subnets": subnets, "security_groups": [group],
                                        "images": {REGION: images}}}))
    return str(path)


def launched_instance(ec2, stop: threading.Event) -> dict | None:
    """The running instance this machine's launcher started in moto, once there (None if stopped first)."""
    owner = f"remote:{socket.gethostname()}"
    while not stop.is_set():
        res = ec2.describe_instances(Filters=[{"Name": "tag:provisioner:owner", "Values": [owner]},
                                             {"Name": "instance-state-name", "Values": ["running"]}])
        inst = [i for r in res["Reservations"] for i in r["Instances"]]
        if inst:
            return inst[0]
        time.sleep(0.2)
    return None


def play_instance(found: dict, stop: threading.Event) -> None:
    """What the bootstrap on the instance would do, against moto."""
    ec2, ssm, logs = (aws.client(s, region=REGION) for s in ("ec2", "ssm", "logs"))
    inst = launched_instance(ec2, stop)
    if inst is None:
        return
    iid = inst["InstanceId"]
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    name = f"/provisioner/agents/{tags['provisioner:run-id']}"
    while not stop.is_set():
        try:
            value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
            break
        except ssm.exceptions.ParameterNotFound:
            time.sleep(0.2)
    else:
        return
    found.update(instance_id=iid, bundle=json.loads(value),
                 arn_tag=ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"],
                 user_data=base64.b64decode(ec2.describe_instance_attribute(
                     InstanceId=iid, Attribute="userData")["UserData"]["Value"]).decode())
    ssm.delete_parameter(Name=name)
    group = "/provisioner/jobs"
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName=group, logStreamName=iid)
    record = {"job": "ec2-job", "run_id": "inner-run-1", "start": "2030-01-01T00:00:00Z", "duration_s": 1.5,
              "exit_code": 0, "instance_type": inst["InstanceType"], "region": REGION, "market": "on-demand",
              "price_usd_per_hour": 0.1, "cost_usd": 0.00004, "cpu_max_pct": 90.0}
    now = int(time.time() * 1000)
    lines = [markers.READY, "2030-01-01T00:00:00.000Z hello from ec2", markers.record_line(record),
             markers.exit_line(0)]
    logs.put_log_events(logGroupName=group, logStreamName=iid,
                        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)])


def test_remote_on_ec2_hands_over_secrets_reads_cloudwatch_and_terminates(moto_env, tmp_path):
    ec2 = aws.client("ec2", region=REGION)
    config = ec2_config(tmp_path, ec2)
    found: dict = {}
    stop = threading.Event()
    player = threading.Thread(target=play_instance, args=(found, stop), daemon=True)
    player.start()
    summary = tmp_path / "summary.json"
    try:
        done = subprocess.run(
            [provisioner_exe(), "--config", config, "--history", str(tmp_path / "h.sqlite3"), "run", "--remote",
             "--label", "ec2 && vcpu=2 && mem=4 && ondemand", "--image", "python:3.11-slim", "--job", "ec2-job",
             "--env", "API_TOKEN=abc123", "--summary-json", str(summary), "--", "python", "train.py"],
            capture_output=True, text=True, timeout=90, env=dict(os.environ))
    finally:
        stop.set()
        player.join(5)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "hello from ec2" in done.stdout and "::provisioner-" not in done.stdout
    assert f"Waiting for instance {found['instance_id']} to be ready" in done.stdout
    assert found["bundle"] == {"job_env": {"API_TOKEN": "abc123"}}
    account = aws.client("sts", region=REGION).get_caller_identity()["Account"]
    assert {"Key": "provisioner:instance-arn",
            "Value": f"arn:aws:ec2:{REGION}:{account}:instance/{found['instance_id']}"} in found["arn_tag"]
    assert "--from-ssm /provisioner/agents/" in found["user_data"] and "abc123" not in found["user_data"]
    state = ec2.describe_instances(InstanceIds=[found["instance_id"]])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] in ("shutting-down", "terminated")
    record = json.loads(summary.read_text())
    assert record["run_id"] == "inner-run-1" and record["cloud"] == "ec2" and record["exit_code"] == 0
    assert record["instance_id"] == found["instance_id"] and record["boot_s"] is not None
