"""`run --remote --sync DIR --output DIR` on the docker cloud (a copy into the instance's folder) and
the refusals that come before anything is launched: `-v` on EC2, --sync without a bucket, a file."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from provisioner import sync
from tests.conftest import provisioner_exe
from tests.remote.test_remote_docker import remote  # noqa: F401  (the fixture: one instance left behind fails)
from tests.remote.test_sync import digests, make_tree

# The job checks what arrived (sha256 of every file under its working directory) and writes it,
# plus a file of its own, where --output collects.
JOB = ("import hashlib, json, os, pathlib\n"
       "root = pathlib.Path('.').resolve()\n"
       "sums = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()\n"
       "        for p in sorted(root.rglob('*')) if p.is_file()}\n"
       "out = pathlib.Path(os.environ['PROVISIONER_OUTPUT_DIR'])\n"
       "(out / 'sums.json').write_text(json.dumps({'cwd': str(root), 'sums': sums}))\n"
       "(out / 'model' / 'weights.bin').parent.mkdir()\n"
       "(out / 'model' / 'weights.bin').write_bytes(b'w' * 5000)\n"
       "print('job saw', len(sums), 'files', flush=True)\n")


@pytest.mark.docker
def test_sync_arrives_intact_without_ignored_files_and_output_comes_back(remote, tmp_path, monkeypatch):
    src, out, scratch = tmp_path / "project", tmp_path / "results", tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))             # where the launcher makes the host copy
    make_tree(src)
    expected = {e.rel: digests(src)[e.rel] for e in sync.scan_for_sync(src).files}
    done = remote("--image", remote.pyimage, "--sync", str(src), "--output", str(out), "--",
                  "python3", "-c", JOB)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Syncing " in done.stdout and "6 files" in done.stdout and "5 ignored by .provisionerignore" in done.stdout
    seen = json.loads((out / "sums.json").read_text())
    assert seen["cwd"] == sync.SYNC_MOUNT
    assert seen["sums"] == expected                        # every byte, and nothing ignored
    assert (out / "model" / "weights.bin").read_bytes() == b"w" * 5000
    assert "Outputs: 2 files into" in done.stdout
    assert not list(scratch.iterdir())                     # the host copy is gone


def ec2_cli(tmp_path, *args: str, config: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))
    return subprocess.run([provisioner_exe(), "--config", str(path), "--history", str(tmp_path / "h.sqlite3"),
                           "run", "--remote", "--cloud", "ec2", "--label", "vcpu=2", "--image", "busybox", *args,
                           "--", "true"], capture_output=True, text=True, timeout=60, env=dict(os.environ))


@pytest.mark.moto
def test_volume_on_ec2_is_refused_with_exit_2_and_nothing_is_launched(moto_env, tmp_path):
    from provisioner import aws
    done = ec2_cli(tmp_path, "-v", f"{tmp_path}:/data", config={"cloud": "ec2", "regions": ["us-east-1"]})
    assert done.returncode == 2, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.strip()]
    assert "-v/--volume" in line and "--sync DIR" in line and "Traceback" not in done.stderr
    assert not aws.client("ec2", region="us-east-1").describe_instances()["Reservations"]


@pytest.mark.parametrize("args, config, message", [
    (("--sync", "."), {"cloud": "ec2"}, "set ec2.sync_s3"),
    (("--sync", "/no/such/dir"), {"cloud": "ec2", "ec2": {"sync_s3": "s3://b/p/"}}, "not a directory"),
    (("--output", "/etc/hostname"), {"cloud": "ec2", "ec2": {"sync_s3": "s3://b/p/"}}, "not a directory"),
], ids=["no-bucket", "missing-dir", "output-is-a-file"])
def test_bad_sync_options_exit_2_naming_the_problem(tmp_path, args, config, message):
    done = ec2_cli(tmp_path, *args, config=config)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_bad_sync_bucket_in_the_config_is_named(tmp_path):
    done = ec2_cli(tmp_path, config={"cloud": "ec2", "ec2": {"sync_s3": "bucket-without-scheme"}})
    assert done.returncode == 2 and "ec2.sync_s3" in done.stderr, done.stderr


def test_sync_without_remote_is_refused(tmp_path):
    done = subprocess.run([provisioner_exe(), "run", "--sync", str(tmp_path), "--", "true"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--sync" in done.stderr and "--remote" in done.stderr
