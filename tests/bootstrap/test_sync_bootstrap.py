"""The bootstrap's part in `run --remote --sync/--output`: the EC2 user-data downloads the tree
before the job (with the instance role: no credentials in the script), a failed download stops the
instance with 125 before the job, the job mounts the folders, and its outputs go to S3 before the
exit line."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import pytest

from provisioner.agent import supervise
from provisioner.bootstrap import render_user_data
from tests.bootstrap.test_render import SPEC, calls, fake_python
from tests.factories import offer

EC2_SYNC = replace(SPEC, sync_s3="s3://b/provisioner/runs/r1/sync/", output_s3="s3://b/provisioner/runs/r1/output/",
                   sync_mount="/work", output_mount="/outputs")


def test_ec2_user_data_downloads_the_tree_before_the_job(tmp_path):
    bin_dir = fake_python(tmp_path)
    script = render_user_data("job", offer(region="eu-west-1"), EC2_SYNC, "ec2")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert name not in script
    root = tmp_path / "sync"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PROVISIONER_CLOUD": "docker", "PROVISIONER_IMDS_URL": "",
           "PROVISIONER_STATE_DIR": str(tmp_path / "state"), "PROVISIONER_SYNC_ROOT": str(root)}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 7, done.stderr
    order = [c[0] for c in calls(tmp_path)]
    assert order.index("sync-down") < order.index("job")
    down = next(c for c in calls(tmp_path) if c[0] == "sync-down")
    assert down[1:] == [EC2_SYNC.sync_s3, f"{root}/work", "--region", "eu-west-1"]
    job_env = (tmp_path / "job-env").read_text()
    for line in (f"PROVISIONER_SYNC_ROOT={root}", "PROVISIONER_SYNC_MOUNT=/work", "PROVISIONER_OUTPUT_MOUNT=/outputs",
                 f"PROVISIONER_OUTPUT_S3={EC2_SYNC.output_s3}"):
        assert line in job_env
    assert (root / "output").stat().st_mode & 0o1777 == 0o1777          # the job may run as any user


def test_a_failed_download_stops_with_125_before_the_job(tmp_path):
    bin_dir = fake_python(tmp_path)
    agent = bin_dir / "provisioner-agent"
    agent.write_text(agent.read_text().replace("case \"$1\" in", "case \"$1\" in\n  sync-down) exit 125 ;;"))
    script = render_user_data("job", offer(), EC2_SYNC, "ec2")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PROVISIONER_CLOUD": "docker", "PROVISIONER_IMDS_URL": "",
           "PROVISIONER_STATE_DIR": str(tmp_path / "state"), "PROVISIONER_SYNC_ROOT": str(tmp_path / "sync")}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 125 and "could not be read from S3" in done.stderr
    assert "job" not in [c[0] for c in calls(tmp_path)]


@pytest.mark.parametrize("cloud", ["docker", "ec2"])
def test_sync_rendering_is_valid_posix_shell(cloud):
    spec = EC2_SYNC if cloud == "ec2" else replace(SPEC, sync_root="/tmp/provisioner-sync-x", sync_mount="/work",
                                                    output_mount="/outputs")
    script = render_user_data("job", offer(), spec, cloud)
    for shell in ("sh", "dash"):
        if shutil.which(shell):
            assert subprocess.run([shell, "-n"], input=script, text=True).returncode == 0
    assert ("sync-down" in script) == (cloud == "ec2")
    assert "provisioner-agent sync-down" not in render_user_data("job", offer(), SPEC, cloud)   # off by default


def test_the_job_mounts_the_folders_the_bootstrap_made(tmp_path):
    env = {"PROVISIONER_SYNC_ROOT": "/var/lib/provisioner/sync", "PROVISIONER_SYNC_MOUNT": "/work",
           "PROVISIONER_OUTPUT_MOUNT": "/outputs"}
    argv = supervise.runner_argv(["--image", "img", "--", "python3", "x.py"], tmp_path, env)
    options = argv[argv.index("run") + 1:argv.index("--")]
    assert options[-6:] == ["--volume", "/var/lib/provisioner/sync/work:/work",
                            "--volume", "/var/lib/provisioner/sync/output:/outputs",
                            "--env", "PROVISIONER_OUTPUT_DIR=/outputs"]
    assert "--volume" not in supervise.runner_argv(["--image", "img", "--", "true"], tmp_path, {})


@pytest.mark.moto
def test_outputs_go_to_s3_and_a_failure_is_only_a_warning(moto_env, tmp_path):
    from provisioner import aws
    s3 = aws.client("s3", region="us-east-1")
    s3.create_bucket(Bucket="out-bucket")
    (tmp_path / "output" / "m").mkdir(parents=True)
    (tmp_path / "output" / "m" / "w.bin").write_bytes(b"x" * 100)
    lines: list[str] = []
    env = {"PROVISIONER_SYNC_ROOT": str(tmp_path), "PROVISIONER_OUTPUT_S3": "s3://out-bucket/p/runs/r1/output/",
           "PROVISIONER_REGION": "us-east-1"}
    supervise.upload_outputs(env, lines.append)
    assert lines == ["provisioner-agent: outputs: 1 files, 100 B to s3://out-bucket/p/runs/r1/output/"]
    assert s3.get_object(Bucket="out-bucket", Key="p/runs/r1/output/m/w.bin")["Body"].read() == b"x" * 100
    lines.clear()
    supervise.upload_outputs({**env, "PROVISIONER_OUTPUT_S3": "s3://no-such-bucket/x/"}, lines.append)
    assert len(lines) == 1 and lines[0].startswith("provisioner-agent: warning: outputs not uploaded to s3://no-such-bucket/x/")
