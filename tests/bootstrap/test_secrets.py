"""The secret bundle: 0600 files on the instance, shell-safe report.env, SSM read-then-delete (moto)."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from provisioner import aws
from provisioner import secret_bundle
from provisioner.agent import secrets


def test_files_are_private_and_the_report_env_is_shell_safe(tmp_path):
    bundle = secret_bundle.make_bundle(agent_secret="a" * 64, report_url="http://127.0.0.1:9108/",
                                 report_token="t'o$k`en\"x", job_env={"K": "v=1 2", "EMPTY": ""})
    state = tmp_path / "state"
    written = secrets.write_files(bundle, state)
    assert {p.name for p in written} == {"agent-secret", "report.env", "job.env", "identity.env"}
    for path in written:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (state / "agent-secret").read_text() == "a" * 64
    shown = subprocess.run(["sh", "-c", f'set -a; . "{state}/report.env"; printf %s "$PROVISIONER_REPORT_TOKEN"'],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert shown.stdout == "t'o$k`en\"x"
    assert (state / "job.env").read_text() == "K=v=1 2\nEMPTY=\n"


def test_the_identity_names_the_node_and_run_for_the_shared_script(tmp_path):
    secrets.write_files(secret_bundle.make_bundle(agent_secret="s", node_name="prov-o-q7 x", run_id="prov-o-q7"), tmp_path)
    shown = subprocess.run(["sh", "-c", f'set -a; . "{tmp_path}/identity.env"; '
                                        'printf "%s|%s" "$PROVISIONER_NODE_NAME" "$PROVISIONER_RUN_ID"'],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert shown.stdout == "prov-o-q7 x|prov-o-q7"
    secrets.write_files({"job_env": {}}, tmp_path)              # job mode: no identity, an empty file
    assert (tmp_path / "identity.env").read_text() == ""


def test_an_instance_without_an_id_cannot_name_its_parameter(tmp_path, capsys):
    from provisioner.agent.__main__ import main
    assert main(["secrets", "--for-instance", "", "--region", "us-east-1", "--state-dir", str(tmp_path)]) == 125
    assert "no instance id" in capsys.readouterr().err
    assert not (tmp_path / "agent-secret").exists()


def test_a_value_with_a_line_break_is_left_out_and_named_not_shown(tmp_path, caplog):
    secrets.write_files({"job_env": {"MULTI": "line1\nline2-secret"}}, tmp_path)
    assert (tmp_path / "job.env").read_text() == ""
    assert "MULTI" in caplog.text and "line2-secret" not in caplog.text


@pytest.mark.parametrize("text,message", [("not json", "not JSON"), ("[1]", "not a JSON object"),
                                          ('{"job_env": {"A": 1}}', "job_env")], ids=["text", "list", "env"])
def test_malformed_bundles_are_named_without_their_content(text, message):
    with pytest.raises(secret_bundle.SecretError, match=message) as info:
        secrets.from_env({"PROVISIONER_SECRETS": text})
    assert text not in str(info.value) or text == "[1]"


def test_missing_env_bundle_is_a_clear_error():
    with pytest.raises(secret_bundle.SecretError, match=r"\$PROVISIONER_SECRETS is not set"):
        secrets.from_env({})


@pytest.mark.moto
def test_ssm_bundle_is_tagged_with_the_instance_arn_read_once_and_deleted(moto_env):
    ssm = aws.client("ssm", region="us-east-1")
    name = secret_bundle.parameter_name("run/with spaces")
    assert name == "/provisioner/agents/run-with-spaces"
    bundle = secret_bundle.make_bundle(agent_secret="s3cret", job_env={"A": "1"})
    arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"
    sleeps: list[float] = []

    def appear_after_first_poll(_: float) -> None:   # the launcher writes it once the instance exists
        sleeps.append(_)
        if len(sleeps) == 1:
            secret_bundle.put_ssm(ssm, name, bundle, arn)
            tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
            assert {"Key": "provisioner:instance-arn", "Value": arn} in tags
            described = ssm.describe_parameters()["Parameters"]
            assert [p["Type"] for p in described if p["Name"] == name] == ["SecureString"]

    got = secrets.from_ssm(name, ssm, wait_s=30, poll_s=0.5, sleep=appear_after_first_poll)
    assert got == bundle and sleeps == [0.5]
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=name)                  # deleted on read
    secret_bundle.delete_ssm(ssm, name)                     # already gone: fine


@pytest.mark.moto
def test_ssm_bundle_that_never_appears_times_out(moto_env):
    ssm = aws.client("ssm", region="us-east-1")
    clock = iter([0.0, 0.0, 5.0, 11.0])
    with pytest.raises(secret_bundle.SecretError, match="did not appear within 10 s"):
        secrets.from_ssm("/provisioner/agents/none", ssm, wait_s=10, sleep=lambda _: None,
                         clock=lambda: next(clock))


@pytest.mark.moto
def test_an_agent_reads_the_parameter_named_after_its_instance(moto_env, tmp_path, capsys):
    from provisioner.agent.__main__ import main
    ssm = aws.client("ssm", region="us-east-1")
    bundle = secret_bundle.make_bundle(agent_secret="s3cret", node_name="prov-o-q9", run_id="prov-o-q9")
    secret_bundle.put_ssm(ssm, secret_bundle.parameter_name("i-0feed"), bundle, "arn:aws:ec2:us-east-1:1:instance/i-0feed")
    assert main(["secrets", "--for-instance", "i-0feed", "--region", "us-east-1", "--wait", "5",
                 "--state-dir", str(tmp_path)]) == 0
    assert (tmp_path / "identity.env").read_text() == "PROVISIONER_NODE_NAME=prov-o-q9\nPROVISIONER_RUN_ID=prov-o-q9\n"
    assert (tmp_path / "agent-secret").read_text() == "s3cret" and "s3cret" not in capsys.readouterr().out
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name="/provisioner/agents/i-0feed")   # read once, then gone
