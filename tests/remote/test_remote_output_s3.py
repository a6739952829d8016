"""Outputs of an EC2 run brought back through S3 (moto server): only a complete set counts (the
instance's list of outputs, put last, and every file it names with its size); a fetch interrupted
half-way is neither reported nor recorded, leaves nothing in the folder and the objects in place; the
retry completes, ends the transfer (the run's prefix goes) and a third time is a no-op."""

from __future__ import annotations

import pytest

from provisioner import aws, sync
from provisioner.remote import output as remote_output
from provisioner.remote.run import owner_id
from provisioner.remote.runs import Ec2Runs, find
from tests.remote.test_remote_ec2_moto import REGION

pytestmark = pytest.mark.moto
BASE = "s3://team-sync/provisioner/runs/t-1"
URL = BASE + "/output/"
FILES = {"metrics.json": b'{"loss": 0.042}', "model/weights.bin": b"w" * 5000}


def put(s3, files: dict[str, bytes], manifest: dict[str, int] | None) -> None:
    for rel, body in files.items():
        s3.put_object(Bucket="team-sync", Key=f"provisioner/runs/t-1/output/{rel}", Body=body)
    if manifest is not None:
        tree = sync.Tree(sync.Path("/nowhere"), tuple(sync.Entry(rel, size, 0o644) for rel, size in manifest.items()))
        sync.put_manifest(s3, tree, URL)


def keys(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket="team-sync").get("Contents", [])]


@pytest.fixture
def s3(moto_env):
    client = aws.client("s3", region=REGION)
    client.create_bucket(Bucket="team-sync")
    return client


def test_a_set_counts_only_once_the_instance_listed_it_and_every_file_arrived(s3, tmp_path):
    dest = tmp_path / "results"
    put(s3, FILES, None)
    with pytest.raises(remote_output.Incomplete, match="no complete set"):
        remote_output.fetch_s3(s3, URL, dest, "t-1")
    put(s3, {}, {**{k: len(v) for k, v in FILES.items()}, "model/optimizer.bin": 10})
    with pytest.raises(remote_output.Incomplete, match="1 of the 3 files .* missing .*optimizer.bin"):
        remote_output.fetch_s3(s3, URL, dest, "t-1")
    assert not dest.exists() and list(tmp_path.iterdir()) == []        # no partial folder either
    put(s3, {"model/optimizer.bin": b"o" * 10}, None)
    assert remote_output.fetch_s3(s3, URL, dest, "t-1") == (3, 5025)
    assert (dest / "model" / "optimizer.bin").read_bytes() == b"o" * 10
    assert not (dest / sync.MANIFEST).exists()                          # the list itself stays behind


class Flaky:
    """The real S3 client, with the connection lost on the second object downloaded."""

    def __init__(self, real):
        self.real, self.gets = real, 0

    def get_object(self, **kw):
        if kw["Key"].endswith(sync.MANIFEST):
            return self.real.get_object(**kw)
        self.gets += 1
        if self.gets == 2:
            raise ConnectionResetError("connection lost mid-download")
        return self.real.get_object(**kw)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_an_interrupted_fetch_is_not_complete_and_the_retry_is_then_a_no_op(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    ec2 = aws.client("ec2", region=REGION)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    dest = tmp_path / "results"
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large", TagSpecifications=[{
        "ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in {
            "provisioner:run-id": "t-1", "provisioner:owner": owner_id(), "provisioner:job": "train",
            **remote_output.tags(URL, dest)}.items()]}])
    put(s3, FILES, {k: len(v) for k, v in FILES.items()})
    s3.put_object(Bucket="team-sync", Key="provisioner/runs/t-1/sync/train.py", Body=b"print(1)")
    backend = Ec2Runs([REGION], lambda service, region: aws.client(service, region=region))
    run = find(backend, "t-1")
    said: list[str] = []
    flaky = Flaky(s3)
    monkeypatch.setattr(remote_output, "_s3", lambda region: flaky)
    assert remote_output.bring_back(backend, run, None, said.append) == 1
    assert "not brought back" in said[-1] and "connection lost" in said[-1]
    assert not dest.exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert remote_output.fetched_into("t-1") == set() and len(keys(s3)) == 4   # still there for the retry

    monkeypatch.setattr(remote_output, "_s3", lambda region: s3)
    assert remote_output.bring_back(backend, run, None, said.append) == 0
    assert said[-1] == f"Outputs: 2 files, 4.9 KiB from {URL} into {dest}"
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == FILES
    assert keys(s3) == []                    # in the launch's own folder: the run's prefix (inputs too) goes
    assert remote_output.bring_back(backend, run, None, said.append) == 0
    assert said[-1] == f"Outputs of run t-1 are already in {dest}"


def test_a_run_launched_elsewhere_says_where_its_outputs_are(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    ec2 = aws.client("ec2", region=REGION)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large", TagSpecifications=[{
        "ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in {
            "provisioner:run-id": "t-1", "provisioner:owner": "remote:another-laptop",
            **remote_output.tags(URL, tmp_path / "their-results")}.items()]}])
    backend = Ec2Runs([REGION], lambda service, region: aws.client(service, region=region))
    said: list[str] = []
    assert remote_output.bring_back(backend, find(backend, "t-1"), None, said.append) == 0
    assert said == [f"Outputs of run t-1: {URL} (this machine did not launch it; bring them here with: "
                    "provisioner output t-1 DIR)"]
    assert not (tmp_path / "their-results").exists()
