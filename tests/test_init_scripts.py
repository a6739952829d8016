"""The admin's init scripts (per cloud, per label): config validation, EC2's 16 KiB user-data limit,
what the daemon puts in an agent's user-data, and what the bootstrap does with it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from provisioner.bootstrap import BootstrapSpec, render_user_data
from provisioner.config import parse_config
from provisioner.daemon.provision_executor import AgentSettings, ProvisionExecutor
from provisioner.daemon.state import Tokens
from provisioner.errors import ConfigError, InputError
from provisioner.init_scripts import DELIMITER, USER_DATA_LIMIT, InitScripts, canonical
from tests.daemon.test_provision_executor import SECRET, Named, provision
from tests.factories import offer

NASTY = "echo \"it's $HOME `date`\" > /tmp/x\ncat <<EOF\nEOF\n"
GPU_LABEL = "ec2 && gpu=1"


def config(text: str):
    return parse_config(text)


def test_labels_entries_are_validated_by_canonical_expression():
    c = config("labels:\n  'ec2 && gpu=1': {init_script: 'nvidia-smi'}\n")
    assert InitScripts.from_config(c, "docker").by_label == {canonical(GPU_LABEL): "nvidia-smi"}
    bad = {"labels: [a]": "must map label expressions",
           "labels: {'ec2 &&': {init_script: x}}": "not a label expression Jenkins can parse",
           "labels: {'ec2': {spares: {min_spare: 1}}}": "unknown key 'spares'",
           "labels: {'ec2': {init_script: ''}}": "must be a non-empty shell script",
           f"labels: {{'ec2': {{init_script: \"a\\n{DELIMITER}\\nb\"}}}}": f"must not contain a line {DELIMITER}",
           "labels: {'ec2&&gpu=1': {init_script: a}, 'ec2 && gpu=1': {init_script: b}}": "the same label as",
           "ec2: {init_script: 3}": "must be a non-empty shell script"}
    for text, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            config(text)


def test_an_ec2_init_script_over_the_user_data_limit_is_refused_when_read():
    big = "echo " + "x" * USER_DATA_LIMIT
    with pytest.raises(ConfigError, match=r"ec2.init_script.*over EC2's 16384"):
        config(f"cloud: ec2\nec2: {{init_script: '{big}'}}\n")
    with pytest.raises(ConfigError, match=r"labels\.'ec2'\.init_script.*over EC2's 16384"):
        config(f"cloud: ec2\nlabels: {{'ec2': {{init_script: '{big}'}}}}\n")
    assert config(f"cloud: docker\ndocker: {{init_script: '{big}'}}\n")    # no such limit on docker
    spec = BootstrapSpec(run_id="", expires_at="2030-01-01T00:00:00Z", jenkins_url="http://j/", init_script=big)
    with pytest.raises(InputError, match="over EC2's 16384"):
        render_user_data("agent", offer(), spec, "ec2")


def test_the_cloud_script_runs_before_the_labels_and_only_matching_labels_get_theirs():
    scripts = InitScripts.from_config(config(
        "ec2: {init_script: 'echo cloud'}\nlabels: {'ec2&&gpu=1': {init_script: 'echo gpu'}}"), "ec2")
    assert scripts.for_label("ec2 && gpu=1") == "echo cloud\necho gpu\n"
    assert scripts.for_label("(ec2 && gpu=1)") == "echo cloud\n"     # another expression, as Jenkins names it
    assert scripts.for_label("ec2 && vcpu=2") == "echo cloud\n"
    assert scripts.for_label("ec2 &&") == "echo cloud\n"              # unparseable: no label entry
    assert InitScripts().for_label(GPU_LABEL) is None


def test_the_daemon_puts_the_items_label_script_in_its_agents_user_data():
    scripts = InitScripts.from_config(config(f"labels: {{'{GPU_LABEL}': {{init_script: {json.dumps(NASTY)}}}}}"),
                                      "docker")
    launcher = ProvisionExecutor(AgentSettings("t", "http://127.0.0.1:8080/", "http://127.0.0.1:9108",
                                               init_scripts=scripts), None, Named("docker"), None, Tokens(b"k" * 32))
    gpu, _ = launcher.spec(provision(GPU_LABEL), SECRET, 1700000000.0)
    plain, _ = launcher.spec(provision("ec2 && vcpu=2"), SECRET, 1700000000.0)
    assert NASTY in gpu.user_data and "init.sh" not in plain.user_data


def fake_agent(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "provisioner-agent").write_text(
        '#!/bin/sh\ncase "$1" in secrets) echo "PROVISIONER_REPORT_TOKEN=t0ken" > "$PROVISIONER_STATE_DIR/report.env" ;;'
        ' job) echo "job ran" ;; esac\nexit 0\n')
    (bin_dir / "provisioner-agent").chmod(0o755)
    return bin_dir


def run_job_script(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    spec = BootstrapSpec(run_id="r", expires_at="2030-01-01T00:00:00Z", run_args=("--", "true"), init_script=script)
    env = {"PATH": f"{fake_agent(tmp_path)}:/usr/bin:/bin", "PROVISIONER_CLOUD": "docker", "HOME": "/nonexistent",
           "PROVISIONER_STATE_DIR": str(tmp_path / "state"), "PROVISIONER_SECRETS": "{}"}
    return subprocess.run(["sh", "-c", render_user_data("job", offer(), spec, "docker")], env=env,
                          capture_output=True, text=True, timeout=30)


def test_the_bootstrap_runs_the_script_verbatim_after_the_secrets_without_the_report_token(tmp_path):
    out, token = tmp_path / "seen", tmp_path / "token"
    script = (f"echo \"${{PROVISIONER_REPORT_TOKEN-unset}}\" > {token}\n"
              f"cat > {out} <<'NASTY_END'\n{NASTY}NASTY_END\n")
    done = run_job_script(tmp_path, script)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == NASTY and token.read_text() == "unset\n"
    assert "job ran" in done.stdout and "running the init script" in done.stderr


def test_a_failing_init_script_stops_the_instance_before_the_job(tmp_path):
    done = run_job_script(tmp_path, "echo preparing\nfalse\necho never\n")
    assert done.returncode == 125
    assert "the init script failed (exit 1): stopping" in done.stderr
    assert "never" not in done.stdout and "job ran" not in done.stdout
