"""`run --remote --cloud ec2 --sync DIR --output DIR` against moto, with the instance played by the
real rendered user-data in a local container (not a thread): the container gets only what an EC2
instance has (instance metadata, served by a stub, including the instance profile's credentials; the
AWS endpoint, here moto), reads its secret bundle from SSM, downloads the synced tree from S3 before
the job starts, runs the job as a sibling container, ships its output to CloudWatch Logs and
uploads the job's outputs (and their list, last) before its last lines; the launcher then downloads
them, in the foreground or, for a detached run, when `logs -f` sees it end.

The instance's network is a namespace the test makes (tests/netns.py: `ip netns add`, a veth pair
in a free private /30, both routes checked with `ip route get` before anything is sent, the namespace
deleted by a finalizer). The metadata stub listens on the host's end of the veth, and a relay there
passes connections on to the session's moto server (which listens on loopback only). How the
container gets into it: docker cannot attach a container to a named namespace, and
`--network container:` would be a namespace docker made; so the container starts with
`network_mode="none"` (no network of docker's at all) and its entrypoint is `nsenter --net=` on the
namespace's file, bind-mounted read-only, before the user-data runs (CAP_SYS_ADMIN is what setns
needs). Everything the bootstrap starts inherits that namespace; the job itself is a sibling
container docker starts with `--network none`, as `run`'s default. The relay records who connected:
only the namespace's address. Running the user-data as a host process under `ip netns exec` was the
other choice: it would share the host's file system and run its shutdown on the test machine.
Skipped (with the reason) without root or iproute2; CI runs as root and installs iproute2.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from provisioner import aws, sync
from tests import netns
from tests.bootstrap.stubs import ImdsStub
from tests.conftest import provisioner_exe
from tests.remote.test_remote_ec2_moto import REGION, ec2_config, launched_instance
from tests.remote.test_remote_sync_docker import JOB
from tests.remote.test_sync import digests, make_tree

pytestmark = [pytest.mark.moto, pytest.mark.docker]
ROLE = "provisioner-instance"
AWS_AGENT_TAG = "provisioner-agent:test-aws"


@pytest.fixture(scope="module")
def aws_agent_image(docker_client, pyimage) -> str:
    from provisioner.clouds.docker_image import build_agent_image
    return build_agent_image(docker_client, base=pyimage, tag=AWS_AGENT_TAG, aws=True)


@pytest.fixture
def instance_net(request, moto_env):
    """The instance's own network namespace, with the metadata stub's address and moto behind a relay."""
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    net = netns.make()
    request.addfinalizer(net.delete)
    relay = netns.TcpRelay(net.host_ip, ("127.0.0.1", int(moto_env.rsplit(":", 1)[1]))).start()
    request.addfinalizer(relay.stop)
    net.relay = relay
    return net


def imds_for(instance: dict, host: str) -> ImdsStub:
    """Instance metadata of the moto instance, with the instance profile's (temporary) credentials."""
    creds = {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAINSTANCEPROFILE",
             "SecretAccessKey": "instance-profile-secret", "Token": "instance-profile-session",
             "LastUpdated": "2030-01-01T00:00:00Z", "Expiration": "2099-01-01T00:00:00Z"}
    return ImdsStub({"instance-id": instance["InstanceId"], "instance-type": instance["InstanceType"],
                     "placement/region": REGION, "instance-life-cycle": "on-demand",
                     "iam/security-credentials/": ROLE, f"iam/security-credentials/{ROLE}": json.dumps(creds)},
                    host=host).start()


def play_instance(docker_client, image: str, net, root: str, found: dict, stop: threading.Event) -> None:
    """Wait for the launcher's instance in moto, then run its user-data as that instance, in `net`.
    When it ended, the instance is terminated (on EC2 its own shutdown does that; the image has none)."""
    ec2 = aws.client("ec2", region=REGION)
    inst = launched_instance(ec2, stop)
    if inst is None:
        return
    user_data = base64.b64decode(ec2.describe_instance_attribute(
        InstanceId=inst["InstanceId"], Attribute="userData")["UserData"]["Value"]).decode()
    imds = imds_for(inst, net.host_ip)
    found.update(instance_id=inst["InstanceId"], user_data=user_data, imds=imds)
    net.check_routes()                    # the namespace reaches the stub and the relay through the veth only
    # What an instance has: metadata (and through it the role's credentials), no keys of its own.
    env = {"PROVISIONER_CLOUD": "ec2", "PROVISIONER_IMDS_URL": imds.url,
           "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url + "/", "AWS_EC2_METADATA_DISABLED": "false",
           "PROVISIONER_AWS_ENDPOINT_URL": net.relay.url, "PROVISIONER_AWS_MAX_ATTEMPTS": "2",
           "PROVISIONER_SYNC_ROOT": root, "PROVISIONER_STATE_DIR": "/run/provisioner"}
    container = found["container"] = docker_client.containers.run(
        image, entrypoint=["nsenter", "--net=/run/netns/instance", "--", "/bin/sh", "-c", user_data],
        environment=env, network_mode="none", cap_add=["SYS_ADMIN"], init=True,
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                 net.path: {"bind": "/run/netns/instance", "mode": "ro"},
                 root: {"bind": root, "mode": "rw"}},        # the job container (a sibling) mounts it too
        labels={"provisioner:job": "sync-ec2-test"}, detach=True)
    while not stop.is_set():
        container.reload()
        if container.status not in ("created", "running"):
            ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
            return
        time.sleep(0.3)


class Player:
    """The instance, played in a thread that starts the container; `close()` ends and removes it."""

    def __init__(self, docker_client, image: str, net, tmp_path):
        self.root = str(tmp_path / f"instance-{uuid.uuid4().hex[:6]}")
        os.makedirs(self.root)
        self.found: dict = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=play_instance, daemon=True,
                                       args=(docker_client, image, net, self.root, self.found, self.stop))
        self.thread.start()

    def close(self) -> str:
        """The instance's own output (its log), once it is gone."""
        self.stop.set()
        self.thread.join(10)
        container = self.found.get("container")
        log = container.logs().decode() if container else ""
        if container:
            container.remove(force=True)
        if self.found.get("imds"):
            self.found["imds"].stop()
        return log


def prepare(tmp_path) -> tuple[str, object, object]:
    ec2 = aws.client("ec2", region=REGION)
    s3 = aws.client("s3", region=REGION)
    s3.create_bucket(Bucket="team-sync")
    config_path = ec2_config(tmp_path, ec2)
    config = json.loads(open(config_path).read())
    config["ec2"]["sync_s3"] = "s3://team-sync/provisioner/"
    open(config_path, "w").write(json.dumps(config))
    return config_path, ec2, s3


def cli(config_path: str, tmp_path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    return subprocess.run([provisioner_exe(), "--config", config_path, "--history", str(tmp_path / "h.sqlite3"),
                           *args], capture_output=True, text=True, timeout=timeout, env=env)


def run_args(pyimage: str, src, out, *extra: str) -> list[str]:
    return ["run", "--remote", *extra, "--label", "ec2 && vcpu=2 && mem=4 && ondemand && arch=x86_64",
            "--image", pyimage, "--job", "sync-ec2", "--sync", str(src), "--output", str(out),
            "--", "python3", "-c", JOB]


def test_sync_and_output_through_s3_with_the_real_user_data(instance_net, docker_client, aws_agent_image, pyimage,
                                                            tmp_path):
    config_path, ec2, s3 = prepare(tmp_path)
    src, out = tmp_path / "project", tmp_path / "results"
    make_tree(src)
    expected = {e.rel: digests(src)[e.rel] for e in sync.scan_for_sync(src).files}
    player = Player(docker_client, aws_agent_image, instance_net, tmp_path)
    try:
        done = cli(config_path, tmp_path, *run_args(pyimage, src, out))
    finally:
        instance_log = player.close()
    found = player.found
    assert done.returncode == 0, done.stdout + done.stderr + instance_log
    # the instance read the tree from S3 before the job, with the role's credentials from metadata
    assert "synced folder in place (6 files" in instance_log, instance_log
    assert any(path.endswith(f"iam/security-credentials/{ROLE}") for _, path, _ in found["imds"].log)
    # ... from inside its namespace: every connection to moto came from the namespace's address
    assert instance_net.relay.peers and set(instance_net.relay.peers) == {instance_net.ns_ip}
    seen = json.loads((out / "sums.json").read_text())
    assert seen["cwd"] == sync.SYNC_MOUNT and seen["sums"] == expected
    assert (out / "model" / "weights.bin").read_bytes() == b"w" * 5000
    assert not (out / sync.MANIFEST).exists()
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


def test_a_detached_runs_outputs_come_back_with_logs_f(instance_net, docker_client, aws_agent_image, pyimage,
                                                       tmp_path):
    config_path, ec2, s3 = prepare(tmp_path)
    src, out = tmp_path / "project", tmp_path / "results"
    make_tree(src)
    player = Player(docker_client, aws_agent_image, instance_net, tmp_path)
    try:
        done = cli(config_path, tmp_path, *run_args(pyimage, src, out, "--detach"))
        assert done.returncode == 0, done.stdout + done.stderr
        run_id = done.stdout.strip().splitlines()[-1]
        assert f"provisioner logs -f {run_id}" in done.stdout and str(out) in done.stdout
        tags = {t["Key"]: t["Value"] for t in ec2.describe_instances(InstanceIds=[player.found["instance_id"]])
                ["Reservations"][0]["Instances"][0]["Tags"]}
        assert tags["provisioner:output"].startswith("s3://team-sync/provisioner/runs/")
        assert tags["provisioner:output"].endswith("/output/") and tags["provisioner:output-dest"] == str(out)
        followed = cli(config_path, tmp_path, "logs", "-f", run_id)
    finally:
        instance_log = player.close()
    assert followed.returncode == 0, followed.stdout + followed.stderr + instance_log
    assert "job saw 6 files" in followed.stdout and "Exit code: 0" in followed.stdout
    (said,) = [line for line in followed.stderr.splitlines() if line.startswith("Outputs: ")]
    assert said.startswith("Outputs: 2 files, ") and said.endswith(f" from {tags['provisioner:output']} into {out}")
    assert (out / "model" / "weights.bin").read_bytes() == b"w" * 5000
    assert json.loads((out / "sums.json").read_text())["cwd"] == sync.SYNC_MOUNT
    assert not s3.list_objects_v2(Bucket="team-sync").get("Contents")     # the transfer is over
    assert set(instance_net.relay.peers) == {instance_net.ns_ip}
    again = cli(config_path, tmp_path, "output", run_id)
    assert again.returncode == 0 and f"already in {out}" in again.stderr, again.stderr
