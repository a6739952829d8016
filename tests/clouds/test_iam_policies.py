"""The shipped IAM policy documents: valid JSON, least privilege where IAM allows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import provisioner.clouds

IAM = Path(provisioner.clouds.__file__).parent / "iam"
READ_ONLY_PREFIXES = ("ec2:Describe", "pricing:GetProducts")


def load(name: str) -> dict:
    return json.loads((IAM / name).read_text())


def statements(doc: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in doc["Statement"]}


def actions(statement: dict) -> list[str]:
    a = statement["Action"]
    return [a] if isinstance(a, str) else a


def as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


@pytest.mark.parametrize("name", ["daemon-policy.json", "instance-policy.json", "launcher-policy.json"])
def test_documents_are_well_formed(name):
    doc = load(name)
    assert doc["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in doc["Statement"]]
    assert len(sids) == len(set(sids)) and all(s.isalnum() for s in sids)   # IAM: Sid is [A-Za-z0-9]
    for s in doc["Statement"]:
        assert s["Effect"] == "Allow" and actions(s) and s["Resource"]
        assert not any(a.endswith(":*") or a == "*" for a in actions(s)), s["Sid"]
        if "*" in as_list(s["Resource"]):           # unscoped resources only for read-only calls
            assert all(a.startswith(READ_ONLY_PREFIXES) for a in actions(s)), s["Sid"]


def test_daemon_policy_covers_what_the_adapter_calls():
    doc = load("daemon-policy.json")
    allowed = {a for s in doc["Statement"] for a in actions(s)}
    assert {"ec2:CreateFleet", "ec2:RunInstances", "ec2:CreateLaunchTemplate", "ec2:CreateTags",
            "ec2:DescribeInstances", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
            "ec2:DescribeSpotPriceHistory", "ec2:TerminateInstances", "iam:PassRole", "ssm:PutParameter",
            "ssm:DeleteParameter", "ssm:DeleteParameters", "pricing:GetProducts",
            "servicequotas:GetServiceQuota", "servicequotas:GetAWSDefaultServiceQuota"} <= allowed
    assert "ec2:DeleteLaunchTemplate" not in allowed           # the base template is never deleted


def test_daemon_policy_conditions():
    s = statements(load("daemon-policy.json"))
    owner_tag = {"Null": {"aws:RequestTag/provisioner:owner": "false"}}
    assert s["LaunchOnlyOwnerTaggedInstancesAndVolumes"]["Condition"] == owner_tag
    assert s["CreateOwnerTaggedBaseTemplate"]["Condition"] == owner_tag
    assert s["TerminateOnlyProvisionerInstances"]["Condition"] == \
        {"Null": {"ec2:ResourceTag/provisioner:owner": "false"}}
    assert set(s["TagOnlyWhileCreating"]["Condition"]["StringEquals"]["ec2:CreateAction"]) == \
        {"CreateFleet", "RunInstances", "CreateLaunchTemplate"}
    batch_tags = s["TagBatchedInstancesAfterLaunch"]       # a batch's own tags, written after launch
    assert actions(batch_tags) == ["ec2:CreateTags"]
    assert set(as_list(batch_tags["Resource"])) == {"arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:*:*:volume/*"}
    assert batch_tags["Condition"]["Null"] == {"aws:ResourceTag/provisioner:owner": "false", "aws:TagKeys": "false"}
    assert set(batch_tags["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]) == \
        {"provisioner:node", "provisioner:queue-id", "provisioner:job", "Name"}
    assert s["PassOnlyTheInstanceRoleToEc2"]["Condition"] == \
        {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    assert all(r.startswith("arn:aws:ssm:*:*:parameter/provisioner/")
               for r in as_list(s["AgentSecretsUnderProvisionerPath"]["Resource"]))


def test_instance_policy_reads_only_its_own_secret_and_writes_only_provisioner_logs():
    doc = load("instance-policy.json")
    s = statements(doc)
    secret = s["ReadAndDeleteOnlyItsOwnAgentSecret"]
    assert set(actions(secret)) == {"ssm:GetParameter", "ssm:DeleteParameter"}
    assert secret["Condition"]["StringEquals"] == \
        {"ssm:resourceTag/provisioner:instance-arn": "${ec2:SourceInstanceARN}"}
    assert set(actions(s["ShipJobLogs"])) >= {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert all(":log-group:/provisioner/" in r for r in as_list(s["ShipJobLogs"]["Resource"]))
    allowed = {a for st in doc["Statement"] for a in actions(st)}
    assert not any(a.startswith(("ec2:", "iam:")) for a in allowed)   # shutdown -h terminates it
    # The optional S3 statements are inert until a real (lower-case) bucket name replaces the marker.
    assert "REPLACE-WITH-CHECKPOINT-BUCKET" in json.dumps(doc)


def s3_statements(doc: dict) -> list[dict]:
    return [s for s in doc["Statement"] if any(a.startswith("s3:") for a in actions(s))
            and "SYNC-BUCKET" in json.dumps(s)]


def allows(doc: dict, action: str, arn: str, prefix: str | None = None) -> bool:
    """Whether an S3 statement of `doc` grants `action` on `arn` (ListBucket: for that `prefix`)."""
    from fnmatch import fnmatchcase
    for s in s3_statements(doc):
        if action not in actions(s) or not any(fnmatchcase(arn, r) for r in as_list(s["Resource"])):
            continue
        wanted = s.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if wanted is None or (prefix is not None and any(fnmatchcase(prefix, w) for w in wanted)):
            return True
    return False


def test_sync_rights_are_scoped_to_the_run_prefixes_the_code_uses():
    """The keys provisioner/sync.py makes for a run, checked against both policies: the instance
    reads the tree and writes outputs, nothing else; the launcher does all of it in runs/ only."""
    from provisioner import sync
    base = sync.run_prefix("s3://REPLACE-WITH-SYNC-BUCKET/provisioner/", "3f2a")
    bucket, tree = sync.split_url(base + "/sync/")
    _, outputs = sync.split_url(base + "/output/")
    arn = f"arn:aws:s3:::{bucket}"
    instance, launcher = load("instance-policy.json"), load("launcher-policy.json")
    assert allows(instance, "s3:GetObject", f"{arn}/{tree}src/train.py")
    assert allows(instance, "s3:ListBucket", arn, prefix=tree)
    assert allows(instance, "s3:PutObject", f"{arn}/{outputs}model.bin")
    assert not allows(instance, "s3:PutObject", f"{arn}/{tree}src/train.py")      # cannot change the input
    assert not allows(instance, "s3:GetObject", f"{arn}/{outputs}model.bin")
    assert not allows(instance, "s3:ListBucket", arn, prefix="")                   # nor list the bucket
    assert not any(a in ("s3:DeleteObject", "s3:ListAllMyBuckets") for s in s3_statements(instance) for a in actions(s))
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert allows(launcher, action, f"{arn}/{tree}src/train.py")
        assert allows(launcher, action, f"{arn}/{outputs}model.bin")
        assert not allows(launcher, action, f"{arn}/provisioner/checkpoints/x")
        assert not allows(launcher, action, f"{arn}/elsewhere/runs/x")
    assert allows(launcher, "s3:ListBucket", arn, prefix=base.split("/", 3)[3] + "/")
    assert not allows(launcher, "s3:ListBucket", arn, prefix="")


def test_launcher_policy_covers_run_remote_ps_logs_and_stop():
    doc = load("launcher-policy.json")
    allowed = {a for s in doc["Statement"] for a in actions(s)}
    assert {"ec2:CreateFleet", "ec2:RunInstances", "ec2:CreateLaunchTemplate", "ec2:CreateTags",
            "ec2:DescribeInstances", "ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:TerminateInstances",
            "iam:PassRole", "ssm:PutParameter", "ssm:DeleteParameter", "ssm:AddTagsToResource",
            "logs:GetLogEvents", "pricing:GetProducts"} <= allowed
    s = statements(doc)
    # `stop` marks a run stopping: only that tag, only on provisioner's instances
    assert s["MarkRunStateOfProvisionerInstances"]["Condition"]["ForAllValues:StringEquals"] == \
        {"aws:TagKeys": ["provisioner:state"]}
    assert s["TerminateOnlyProvisionerInstances"]["Condition"] == \
        {"Null": {"ec2:ResourceTag/provisioner:owner": "false"}}
    assert s["PassOnlyTheInstanceRoleToEc2"]["Resource"] == "arn:aws:iam::*:role/provisioner-instance"
    assert as_list(s["RunSecretsUnderAgentsPath"]["Resource"]) == ["arn:aws:ssm:*:*:parameter/provisioner/agents/*"]
    # nothing the daemon alone needs
    assert not {"ssm:DeleteParameters", "iam:CreateServiceLinkedRole", "ssm:GetParameter"} & allowed
