"""The deployment files under deploy/: the systemd unit passes `systemd-analyze verify` with no
warning, keeps its hardening, and runs the daemon's check before the daemon."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "provisioner-daemon.service"
INSTALLED = "/opt/provisioner/bin/provisioner"


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with its commands pointed at this checkout's `provisioner` (verify checks they exist)."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    command = Path(sys.executable).with_name("provisioner")
    if not command.exists():
        pytest.skip(f"no {command}: install the package into this venv")
    path = tmp_path / UNIT.name
    path.write_text(UNIT.read_text().replace(INSTALLED, str(command)))
    return path


def test_the_unit_verifies_without_a_warning(unit):
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout


def test_the_unit_is_hardened(unit):
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert level, done.stdout + done.stderr
    assert float(level.group(1)) <= 2.0, done.stdout          # systemd's scale: 0 safest, 10 exposed


def test_the_unit_runs_the_check_first_as_a_dedicated_user():
    settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["User"] == "provisioner" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["StateDirectory"] == "provisioner"
    assert settings["ExecStartPre"] == f"{INSTALLED} daemon --check"
    assert settings["ExecStart"] == f"{INSTALLED} daemon"


CFN = ROOT / "deploy" / "cloudformation"


def test_the_template_is_built_from_the_shipped_policies():
    done = subprocess.run([sys.executable, str(CFN / "build.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_template_passes_cfn_lint():
    lint = shutil.which("cfn-lint") or str(Path(sys.executable).with_name("cfn-lint"))
    if not Path(lint).exists():
        pytest.skip("cfn-lint is not installed (pip install cfn-lint; the test extras have it)")
    done = subprocess.run([lint, str(CFN / "provisioner.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _expected(statements: list, buckets: dict) -> list:
    """The shipped statements as deployed: an optional one only with its bucket, named in it."""
    import json
    out = []
    for s in statements:
        text = json.dumps(s)
        marker = next((m for m in buckets if m in text), None)
        if marker is None:
            out.append(s)
        elif buckets[marker]:
            out.append(json.loads(text.replace(marker, buckets[marker])))
    return out


@pytest.mark.moto
@pytest.mark.parametrize("bucket, sync_bucket", [("", ""), ("ckpt-bucket", ""), ("", "sync-bucket"),
                                                 ("ckpt-bucket", "sync-bucket")],
                         ids=["no-buckets", "checkpoints", "sync", "both"])
def test_the_template_deploys(moto_env, bucket, sync_bucket):
    """Deployed to moto: the roles carry exactly the shipped policies, the profiles hold them, the
    launchers' managed policy is the shipped one, and the log group exists with its retention."""
    import json

    from provisioner import aws
    cfn = aws.client("cloudformation", region="us-east-1")
    cfn.create_stack(StackName="provisioner", TemplateBody=(CFN / "provisioner.json").read_text(),
                     Parameters=[{"ParameterKey": "CheckpointBucket", "ParameterValue": bucket},
                                 {"ParameterKey": "SyncBucket", "ParameterValue": sync_bucket}],
                     Capabilities=["CAPABILITY_NAMED_IAM"])
    stack = cfn.describe_stacks(StackName="provisioner")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    iam = aws.client("iam", region="us-east-1")
    shipped = {name: json.loads((ROOT / "provisioner" / "clouds" / "iam" / f"{name}-policy.json").read_text())
               for name in ("daemon", "instance", "launcher")}
    buckets = {"REPLACE-WITH-CHECKPOINT-BUCKET": bucket, "REPLACE-WITH-SYNC-BUCKET": sync_bucket}
    for name in ("daemon", "instance"):
        role = f"provisioner-{name}"
        document = iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
        if isinstance(document, str):   # moto keeps a policy made by CloudFormation as Python's repr
            import ast
            document = ast.literal_eval(document)
        expected = _expected(shipped[name]["Statement"], buckets)
        # moto leaves an AWS::NoValue in a list as null where CloudFormation drops it
        assert [s for s in document["Statement"] if s is not None] == expected
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [role]
    assert outputs["InstanceProfileArn"].endswith(":instance-profile/provisioner-instance")
    launcher = iam.get_policy(PolicyArn=outputs["LauncherPolicyArn"])["Policy"]
    document = iam.get_policy_version(PolicyArn=launcher["Arn"],
                                      VersionId=launcher["DefaultVersionId"])["PolicyVersion"]["Document"]
    if isinstance(document, str):
        import ast
        document = json.loads(document) if document.lstrip().startswith("{\"") else ast.literal_eval(document)
    assert launcher["PolicyName"] == "provisioner-launcher"
    assert [s for s in document["Statement"] if s is not None] == _expected(shipped["launcher"]["Statement"], buckets)
    logs = aws.client("logs", region="us-east-1")
    group = logs.describe_log_groups(logGroupNamePrefix="/provisioner/jobs")["logGroups"][0]
    assert group["retentionInDays"] == 30
