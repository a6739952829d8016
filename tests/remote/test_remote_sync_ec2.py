"""`run --remote --cloud ec2 --sync DIR --output DIR` against moto, with the instance played by the
real rendered user-data in a local container (not a thread): the container gets only what an EC2
instance has (instance metadata, served by a stub, including the instance profile's credentials; the
AWS endpoint, here moto), reads its secret bundle from SSM, downloads the synced tree from S3 before
the job starts, runs the job as a sibling container, ships its output to CloudWatch Logs and
uploads the job's outputs before its last lines; the launcher then downloads them."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
import time
import uuid

import pytest

from provisioner import aws, sync
from tests.bootstrap.stubs import ImdsStub
from tests.conftest import provisioner_exe
from tests.remote.test_remote_ec2_moto import REGION, ec2_config
from tests.remote.test_remote_sync_docker import JOB
from tests.remote.test_sync import digests, make_tree

pytestmark = [pytest.mark.moto, pytest.mark.docker]
ROLE = "provisioner-instance"
AWS_AGENT_TAG = "provisioner-agent:test-aws"


@pytest.fixture(scope="module")
def aws_agent_image(docker_client, pyimage) -> str:
    from provisioner.agent.image import build_agent_image
    return build_agent_image(docker_client, base=pyimage, tag=AWS_AGENT_TAG, aws=True)


def imds_for(instance: dict) -> ImdsStub:
    """Instance metadata of the moto instance, with the instance profile's (temporary) credentials."""
    creds = {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAINSTANCEPROFILE",
             "SecretAccessKey": "instance-profile-secret", "Token": "instance-profile-session",
             "LastUpdated": "2030-01-01T00:00:00Z", "Expiration": "2099-01-01T00:00:00Z"}
    return ImdsStub({"instance-id": instance["InstanceId"], "instance-type": instance["InstanceType"],
                     "placement/region": REGION, "instance-life-cycle": "on-demand",
                     "iam/security-credentials/": ROLE, f"iam/security-credentials/{ROLE}": json.dumps(creds)}).start()


def play_instance(docker_client, image: str, moto_url: str, root: str, found: dict, stop: threading.Event) -> None:
    """Wait for the launcher's instance in moto, then run its user-data as that instance."""
    ec2 = aws.client("ec2", region=REGION)
    owner = f"remote:{socket.gethostname()}"
    while not stop.is_set():
        res = ec2.describe_instances(Filters=[{"Name": "tag:provisioner:owner", "Values": [owner]},
                                             {"Name": "instance-state-name", "Values": ["running"]}])
        found_now = [i for r in res["Reservations"] for i in r["Instances"]]
        if found_now:
            break
        time.sleep(0.2)
    else:
        return
    inst = found_now[0]
    user_data = base64.b64decode(ec2.describe_instance_attribute(
        InstanceId=inst["InstanceId"], Attribute="userData")["UserData"]["Value"]).decode()
    imds = imds_for(inst)
    found.update(instance_id=inst["InstanceId"], user_data=user_data, imds=imds)
    # What an instance has: metadata (and through it the role's credentials), no keys of its own.
    env = {"PROVISIONER_CLOUD": "ec2", "PROVISIONER_IMDS_URL": imds.url,
           "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url + "/", "AWS_EC2_METADATA_DISABLED": "false",
           "PROVISIONER_AWS_ENDPOINT_URL": moto_url, "PROVISIONER_AWS_MAX_ATTEMPTS": "2",
           "PROVISIONER_SYNC_ROOT": root, "PROVISIONER_STATE_DIR": "/run/provisioner"}
    found["container"] = docker_client.containers.run(
        image, entrypoint=["/bin/sh", "-c", user_data], environment=env, network_mode="host", init=True,
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                 root: {"bind": root, "mode": "rw"}},        # the job container (a sibling) mounts it too
        labels={"provisioner:job": "sync-ec2-test"}, detach=True)


def test_sync_and_output_through_s3_with_the_real_user_data(moto_env, docker_client, aws_agent_image, pyimage,
                                                            tmp_path):
    ec2 = aws.client("ec2", region=REGION)
    s3 = aws.client("s3", region=REGION)
    s3.create_bucket(Bucket="team-sync")
    config_path = ec2_config(tmp_path, ec2)
    config = json.loads(open(config_path).read())
    config["ec2"]["sync_s3"] = "s3://team-sync/provisioner/"
    open(config_path, "w").write(json.dumps(config))
    src, out = tmp_path / "project", tmp_path / "results"
    make_tree(src)
    expected = {e.rel: digests(src)[e.rel] for e in sync.scan_for_sync(src).files}
    root = str(tmp_path / f"instance-{uuid.uuid4().hex[:6]}")
    os.makedirs(root)
    found: dict = {}
    stop = threading.Event()
    player = threading.Thread(target=play_instance, args=(docker_client, aws_agent_image, moto_env, root, found, stop),
                              daemon=True)
    player.start()
    try:
        done = subprocess.run(
            [provisioner_exe(), "--config", config_path, "--history", str(tmp_path / "h.sqlite3"), "run", "--remote",
             "--label", "ec2 && vcpu=2 && mem=4 && ondemand && arch=x86_64", "--image", pyimage, "--job", "sync-ec2",
             "--sync", str(src), "--output", str(out), "--", "python3", "-c", JOB],
            capture_output=True, text=True, timeout=180, env=dict(os.environ))
    finally:
        stop.set()
        player.join(10)
        container = found.get("container")
        instance_log = container.logs().decode() if container else ""
        if container:
            container.remove(force=True)
        if found.get("imds"):
            found["imds"].stop()
    assert done.returncode == 0, done.stdout + done.stderr + instance_log
    # the instance read the tree from S3 before the job, with the role's credentials from metadata
    assert "synced folder in place (6 files" in instance_log, instance_log
    assert any(path.endswith(f"iam/security-credentials/{ROLE}") for _, path, _ in found["imds"].log)
    seen = json.loads((out / "sums.json").read_text())
    assert seen["cwd"] == sync.SYNC_MOUNT and seen["sums"] == expected
    assert (out / "model" / "weights.bin").read_bytes() == b"w" * 5000
    assert "job saw 6 files" in done.stdout
    assert "provisioner-agent: outputs: 2 files" in done.stdout          # uploaded by the instance
    assert "Outputs: 2 files" in done.stdout                             # downloaded by the launcher
    # credentials never travel in the user-data; the run's objects are gone once fetched
    user_data = found["user_data"]
    assert "sync-down s3://team-sync/provisioner/runs/" in user_data
    for secret in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", os.environ["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in user_data
    assert not s3.list_objects_v2(Bucket="team-sync").get("Contents")
    state = ec2.describe_instances(InstanceIds=[found["instance_id"]])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] in ("shutting-down", "terminated")
