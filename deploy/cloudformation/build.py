#!/usr/bin/env python3
"""Writes provisioner.json, the CloudFormation template of what the daemon and its instances need
in an AWS account, from the IAM policies the package ships (provisioner/clouds/iam/*.json), so the
template can never grant more or less than the documented policies.

    python3 deploy/cloudformation/build.py            # rewrite provisioner.json
    python3 deploy/cloudformation/build.py --check    # exit 1 if provisioner.json is stale
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
IAM = HERE.parents[1] / "provisioner" / "clouds" / "iam"
TEMPLATE = HERE / "provisioner.json"
BUCKET_PLACEHOLDER = "REPLACE-WITH-CHECKPOINT-BUCKET"
SYNC_PLACEHOLDER = "REPLACE-WITH-SYNC-BUCKET"
# An optional statement names its bucket by a placeholder: the template's parameter and condition.
OPTIONAL = {BUCKET_PLACEHOLDER: ("CheckpointBucket", "HasCheckpointBucket"),
            SYNC_PLACEHOLDER: ("SyncBucket", "HasSyncBucket")}
INSTANCE_ROLE = "provisioner-instance"      # the name the daemon policy's iam:PassRole allows


def _policy(name: str) -> dict:
    return json.loads((IAM / name).read_text())


def _with_buckets(name: str) -> dict:
    """A shipped policy; its optional S3 statements only where their bucket is given."""
    doc = copy.deepcopy(_policy(name))
    statements = []
    for s in doc["Statement"]:
        text = json.dumps(s)
        found = [marker for marker in OPTIONAL if marker in text]
        if not found:
            statements.append(s)
            continue
        param, condition = OPTIONAL[found[0]]
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        subbed = [{"Fn::Sub": r.replace(found[0], "${%s}" % param)} for r in resources]
        resource = subbed if isinstance(s["Resource"], list) else subbed[0]
        statements.append({"Fn::If": [condition, {**s, "Resource": resource}, {"Ref": "AWS::NoValue"}]})
    return {**doc, "Statement": statements}


def _launcher_policy() -> dict:
    """The launchers' managed policy: one whole document per case (IAM, and moto, refuse a managed
    policy whose statement list holds a removed entry), with or without its S3 statements."""
    doc = _policy("launcher-policy.json")
    param, condition = OPTIONAL[SYNC_PLACEHOLDER]
    plain = [s for s in doc["Statement"] if SYNC_PLACEHOLDER not in json.dumps(s)]
    full = [s if SYNC_PLACEHOLDER not in json.dumps(s) else
            {**s, "Resource": {"Fn::Sub": s["Resource"].replace(SYNC_PLACEHOLDER, "${%s}" % param)}}
            for s in doc["Statement"]]
    return {"Fn::If": [condition, {**doc, "Statement": full}, {**doc, "Statement": plain}]}


def _instance_policy() -> dict:
    return _with_buckets("instance-policy.json")


def _ec2_trust() -> dict:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "ec2.amazonaws.com"}}]}


def template() -> dict:
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "provisioner: the daemon's role and instance profile, the agents' instance role "
                       "and profile, the remote-run launchers' policy and the job log group "
                       "(least-privilege policies as shipped).",
        "Parameters": {
            "CheckpointBucket": {"Type": "String", "Default": "",
                                 "Description": "S3 bucket for spot checkpoints (provisioner/checkpoints/ "
                                                "prefix); empty: no S3 access"},
            "SyncBucket": {"Type": "String", "Default": "",
                           "Description": "S3 bucket of run --remote --sync/--output (ec2.sync_s3 = "
                                          "s3://BUCKET/provisioner/); empty: no S3 access for them"},
            "LogRetentionDays": {"Type": "Number", "Default": 30,
                                 "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 180, 365],
                                 "Description": "How long job logs are kept"},
        },
        "Conditions": {condition: {"Fn::Not": [{"Fn::Equals": [{"Ref": param}, ""]}]}
                       for param, condition in OPTIONAL.values()},
        "Resources": {
            "InstanceRole": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": INSTANCE_ROLE, "AssumeRolePolicyDocument": _ec2_trust(),
                "Policies": [{"PolicyName": "provisioner-instance", "PolicyDocument": _instance_policy()}]}},
            "InstanceProfile": {"Type": "AWS::IAM::InstanceProfile", "Properties": {
                "InstanceProfileName": INSTANCE_ROLE, "Roles": [{"Ref": "InstanceRole"}]}},
            "DaemonRole": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": "provisioner-daemon", "AssumeRolePolicyDocument": _ec2_trust(),
                "Policies": [{"PolicyName": "provisioner-daemon", "PolicyDocument": _policy("daemon-policy.json")}]}},
            "DaemonInstanceProfile": {"Type": "AWS::IAM::InstanceProfile", "Properties": {
                "InstanceProfileName": "provisioner-daemon", "Roles": [{"Ref": "DaemonRole"}]}},
            "LauncherPolicy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
                "ManagedPolicyName": "provisioner-launcher",
                "Description": "for people who run `provisioner run --remote` (attach to their users or group)",
                "PolicyDocument": _launcher_policy()}},
            "JobLogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {
                "LogGroupName": "/provisioner/jobs", "RetentionInDays": {"Ref": "LogRetentionDays"}}},
        },
        "Outputs": {
            "InstanceProfileArn": {"Description": "ec2.instance_profile in the config",
                                   "Value": {"Fn::GetAtt": ["InstanceProfile", "Arn"]}},
            "DaemonInstanceProfileArn": {"Description": "the profile of the machine the daemon runs on",
                                         "Value": {"Fn::GetAtt": ["DaemonInstanceProfile", "Arn"]}},
            "LauncherPolicyArn": {"Description": "attach to the users or group who run `run --remote`",
                                  "Value": {"Ref": "LauncherPolicy"}},
            "DaemonRoleArn": {"Value": {"Fn::GetAtt": ["DaemonRole", "Arn"]}},
            "JobLogGroupName": {"Value": {"Ref": "JobLogGroup"}},
            "AgentSecretPath": {"Description": "SSM path of the agents' secret bundles (made and deleted "
                                               "at run time, SecureString with the account's aws/ssm key)",
                                "Value": "/provisioner/agents/"},
        },
    }


def render() -> str:
    return json.dumps(template(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if TEMPLATE.read_text() != text:
            print(f"{TEMPLATE} is stale: run python3 {Path(__file__).relative_to(HERE.parents[1])}",
                  file=sys.stderr)
            return 1
        return 0
    TEMPLATE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
