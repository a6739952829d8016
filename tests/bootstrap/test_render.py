"""The user-data renderings: docker and EC2 differ only in the secret source; the script parses in
dash and busybox sh; job arguments survive quoting; no secret ever lands in it."""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner import __version__, bootstrap
from provisioner import secret_bundle
from provisioner.remote import parts
from provisioner.bootstrap import BootstrapSpec, render_user_data
from provisioner.runner.spec import ContainerSpec
from provisioner.runner.summary import JobInfo
from tests.factories import offer

NASTY = ("python3", "-c", "import sys; print('it''s $HOME `x` \"q\" \\\\ ;&|')", "--", "-e", "*", "a b")
SPEC = BootstrapSpec(run_id="0b6c-run", expires_at="2030-01-01T00:00:00Z",
                     run_args=("--image", "img:1", "--timeout", "60s", "--", *NASTY))
ROOT = Path(__file__).resolve().parents[2]
AGENT = BootstrapSpec(run_id="", expires_at="2030-01-01T00:00:00Z", jenkins_url="http://127.0.0.1:8080/",
                      idle_timeout_s=600)


def changed_lines(a: str, b: str) -> list[str]:
    return [line for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def secret_block(text: str) -> list[str]:
    lines = text.splitlines()
    start, end = lines.index("# --- secret source ---"), lines.index("# --- end of secret source ---")
    return lines[start + 1:end]


@pytest.mark.parametrize("mode,spec", [("job", SPEC), ("agent", AGENT)], ids=["job", "agent"])
def test_docker_and_ec2_differ_only_in_the_secret_source(mode, spec):
    plan = offer("r5.large", market="spot", price=0.07, ondemand=0.13)
    docker = render_user_data(mode, plan, spec, "docker")
    ec2 = render_user_data(mode, plan, spec, "ec2")
    changed = changed_lines(ec2, docker)
    assert changed, "the secret source must differ"
    inside = {f"-{x}" for x in secret_block(ec2)} | {f"+{x}" for x in secret_block(docker)}
    assert set(changed) <= inside, f"lines outside the secret block differ: {set(changed) - inside}"
    if mode == "agent":                  # one script for every agent of a launch: named by instance id
        assert '--for-instance "${PROVISIONER_INSTANCE_ID-}"' in "\n".join(secret_block(ec2))
    else:
        assert "--from-ssm /provisioner/agents/" in "\n".join(secret_block(ec2))
    assert "--from-env PROVISIONER_SECRETS" in "\n".join(secret_block(docker))
    # the rest is literally identical, line for line
    outside = lambda t: [x for x in t.splitlines() if x not in secret_block(t)]
    assert outside(ec2) == outside(docker)


@pytest.mark.parametrize("shell", ["sh", "dash", "busybox"])
@pytest.mark.parametrize("mode,spec,cloud", [("job", SPEC, "docker"), ("job", SPEC, "ec2"),
                                             ("agent", AGENT, "docker"), ("agent", AGENT, "ec2")],
                         ids=["job-docker", "job-ec2", "agent-docker", "agent-ec2"])
def test_rendering_is_valid_posix_shell(shell, mode, spec, cloud):
    if not shutil.which(shell):
        pytest.skip(f"{shell} not installed")
    script = render_user_data(mode, offer(), spec, cloud)
    argv = ["busybox", "sh", "-n"] if shell == "busybox" else [shell, "-n"]
    done = subprocess.run(argv, input=script, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert script.startswith("#!/bin/sh\n")


def fake_python(tmp_path: Path) -> Path:
    """A `provisioner-agent` that records each call's argv (NUL-separated) and plays the helpers' parts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "provisioner-agent").write_text(f"""#!/bin/sh
printf '%s\\0' "$@" > "{tmp_path}/call-$$"
case "$1" in
  secrets) : > "$PROVISIONER_STATE_DIR/report.env"; echo "PROVISIONER_REPORT_URL=http://x" > "$PROVISIONER_STATE_DIR/report.env" ;;
  job) env > "{tmp_path}/job-env"; exit 7 ;;
esac
exit 0
""")
    (bin_dir / "provisioner-agent").chmod(0o755)
    return bin_dir


def calls(tmp_path: Path) -> list[list[str]]:
    return [p.read_bytes().decode().split("\0")[:-1] for p in sorted(tmp_path.glob("call-*"))]


def test_job_script_runs_the_job_with_its_arguments_intact_and_exits_with_its_code(tmp_path):
    bin_dir = fake_python(tmp_path)
    script = render_user_data("job", offer("c5.large", market="spot", price=0.04), SPEC, "docker")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PROVISIONER_CLOUD": "docker",
           "PROVISIONER_STATE_DIR": str(tmp_path / "state"), "PROVISIONER_SECRETS": "{}"}
    done = subprocess.run(["sh", "-c", script, "user-data"], env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 7, done.stderr                   # the job's exit code, via shutdown_instance
    job_call = next(c for c in calls(tmp_path) if c[:1] == ["job"])
    assert job_call[1:] == ["--", *SPEC.run_args]              # every argument survived the quoting
    job_env = (tmp_path / "job-env").read_text()
    assert "PROVISIONER_INSTANCE_TYPE=c5.large" in job_env and "PROVISIONER_MARKET=spot" in job_env
    assert "PROVISIONER_REPORT_URL=http://x" in job_env        # report.env sourced into the job's env
    assert "PROVISIONER_SECRETS" not in job_env                # the bundle is gone from the environment
    mode = stat.S_IMODE(os.stat(tmp_path / "state").st_mode)
    assert mode == 0o700


def test_a_failing_secret_fetch_stops_with_125(tmp_path):
    bin_dir = fake_python(tmp_path)
    (bin_dir / "provisioner-agent").write_text('#!/bin/sh\n[ "$1" = secrets ] && exit 1\nexit 0\n')
    script = render_user_data("job", offer(), SPEC, "docker")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PROVISIONER_CLOUD": "docker",
           "PROVISIONER_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 125
    assert "no secret bundle" in done.stderr


def test_the_job_environment_travels_in_the_bundle_never_in_user_data():
    args = argparse.Namespace(grace=10.0, retry=0, retry_delay=10.0, retry_on=None, log_group=None,
                              docker_args=None)
    spec = ContainerSpec(image="img", command=("env",), timeout_s=60,
                         env={"API_KEY": "s3cr3t-value", "OTHER": "x"})
    job = JobInfo(job="j", build="4")
    bspec = parts.bootstrap_spec(args, spec, job, "run-1", lifetime_s=600)
    for cloud in ("docker", "ec2"):
        text = render_user_data("job", offer(), bspec, cloud)
        assert "s3cr3t-value" not in text and "API_KEY" not in text
    bundle = parts.secret_bundle(spec, {"PROVISIONER_REPORT_URL": "http://d", "PROVISIONER_REPORT_TOKEN": "tok"})
    assert bundle == {"job_env": {"API_KEY": "s3cr3t-value", "OTHER": "x"}, "report_url": "http://d",
                      "report_token": "tok"}
    assert bootstrap.secret_env("docker", bundle) == {secret_bundle.BUNDLE_ENV: secret_bundle.encode(bundle)}
    assert bootstrap.secret_env("ec2", bundle) == {}
    assert bspec.grace_s == 90 and "--grace" in bspec.run_args and "90s" in bspec.run_args


def test_agent_mode_runs_agent_jar_with_the_secret_from_a_file():
    text = render_user_data("agent", offer(), AGENT, "ec2")
    assert 'secret_file="$PROVISIONER_STATE_DIR/agent-secret"' in text and '-secret @"$secret_file"' in text
    assert "-url http://127.0.0.1:8080/" in text and '-name "$PROVISIONER_NODE_NAME"' in text and "-webSocket" in text
    assert "PROVISIONER_RUN_ID" not in text.split("# --- secret source ---")[0]   # the bundle names the run
    assert "fetch-agent-jar http://127.0.0.1:8080/" in text and "--idle-timeout 600" in text


@pytest.mark.parametrize("mode,spec,message", [
    ("job", BootstrapSpec(run_id="r", expires_at="x"), "provisioner run"),
    ("agent", BootstrapSpec(run_id="r", expires_at="x"), "Jenkins URL"),
    ("nope", SPEC, "unknown bootstrap mode"),
], ids=["job-without-args", "agent-without-url", "bad-mode"])
def test_bad_input_is_refused_with_a_clear_message(mode, spec, message):
    with pytest.raises(ValueError, match=message):
        render_user_data(mode, offer(), spec, "docker")
    with pytest.raises(ValueError, match="unknown cloud"):
        render_user_data("job", offer(), SPEC, "gcp")


def test_templates_come_from_the_override_directory(tmp_path, monkeypatch):
    for name in ("_base.sh.j2", "agent.sh.j2"):
        (tmp_path / name).write_text((bootstrap.template_dir() / name).read_text())
    (tmp_path / "job.sh.j2").write_text("#!/bin/sh\necho {{ offer.instance_type }} {{ cloud }}\n")
    monkeypatch.setenv(bootstrap.TEMPLATE_DIR_ENV, str(tmp_path))
    assert render_user_data("job", offer("m5.xlarge"), SPEC, "ec2") == "#!/bin/sh\necho m5.xlarge ec2\n"


@pytest.mark.parametrize("mode,spec", [("job", SPEC), ("agent", AGENT)], ids=["job", "agent"])
@pytest.mark.parametrize("cloud", ["docker", "ec2"])
def test_user_data_calls_only_the_stable_entry_point(mode, spec, cloud):
    """Images bake the `provisioner-agent` console script; module paths may move between versions."""
    script = render_user_data(mode, offer(), spec, cloud)
    assert "python3 -m" not in script and "provisioner.agent" not in script
    assert f"provisioner-agent check-version {__version__}" in script


def test_an_image_of_another_version_stops_the_bootstrap_with_a_clear_message(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    agent = bin_dir / "provisioner-agent"     # the real helper, as an image of version 0.0.1 has it
    agent.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import provisioner, sys; "
                     "provisioner.__version__ = \"0.0.1\"; from provisioner.agent.__main__ import main; "
                     "sys.exit(main())' \"$@\"\n")
    agent.chmod(0o755)
    script = render_user_data("job", offer(), SPEC, "docker")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PROVISIONER_CLOUD": "docker", "PYTHONPATH": str(ROOT),
           "PROVISIONER_STATE_DIR": str(tmp_path / "state"), "PROVISIONER_SECRETS": "{}"}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 125
    assert (f"this image has provisioner 0.0.1, but the user-data was rendered by provisioner {__version__}"
            in done.stderr)


def test_an_image_without_the_entry_point_stops_the_bootstrap(tmp_path):
    script = render_user_data("job", offer(), SPEC, "docker")
    env = {"PATH": "/usr/bin:/bin", "PROVISIONER_CLOUD": "docker", "PROVISIONER_STATE_DIR": str(tmp_path / "s")}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 125
    assert f"this image has no provisioner-agent command: rebuild it with provisioner {__version__}" in done.stderr


@pytest.mark.parametrize("mode,spec", [("job", SPEC), ("agent", AGENT)], ids=["job", "agent"])
@pytest.mark.parametrize("cloud", ["docker", "ec2"])
def test_renderings_pass_shellcheck(mode, spec, cloud):
    if not shutil.which("shellcheck"):
        if os.environ.get("CI"):
            pytest.fail("shellcheck is missing: scripts/test installs it")
        pytest.skip("shellcheck is not installed")
    from dataclasses import replace
    script = render_user_data(mode, offer(), replace(spec, init_script="echo prepared\n"), cloud)
    done = subprocess.run(["shellcheck", "-s", "sh", "--severity=warning", "-"], input=script,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
