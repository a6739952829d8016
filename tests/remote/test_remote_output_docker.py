"""Outputs of a detached run on the docker cloud (`run --remote --detach --output DIR`): the run's
labels carry where they are and where they go; `provisioner output` before the end says so (exit 1);
followed from another machine (another hostname and state dir: `unshare --uts`), `logs -f` says where
they are and `provisioner output RUN DIR` fetches a copy; `attach` on the launching machine brings
them into the launch's --output folder and ends the transfer (the host folder goes); doing it again
is a no-op that says so."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import provisioner_exe
from tests.remote.test_remote_runs_docker import runs  # noqa: F401  (the fixture)

pytestmark = pytest.mark.docker

# Prints at once (so --detach returns), then writes its outputs after a pause.
JOB = ("import os, pathlib, time\n"
       "print('training', flush=True)\n"
       "time.sleep(4)\n"
       "out = pathlib.Path(os.environ['PROVISIONER_OUTPUT_DIR'])\n"
       "(out / 'metrics.json').write_text('{\"loss\": 0.042}')\n"
       "(out / 'model').mkdir()\n"
       "(out / 'model' / 'weights.bin').write_bytes(b'w' * 5000)\n"
       "print('saved', flush=True)\n")


def elsewhere(runs, *args: str) -> subprocess.CompletedProcess:
    """The CLI as another machine would run it: its own hostname (a UTS namespace) and state dir."""
    env = dict(runs.env(), XDG_STATE_HOME=str(runs.tmp / "elsewhere"))
    argv = [provisioner_exe(), "--config", str(runs.config), "--history", str(runs.tmp / "other.sqlite3"), *args]
    return subprocess.run(["unshare", "--uts", "sh", "-c", 'hostname other-laptop && exec "$@"', "sh", *argv],
                          capture_output=True, text=True, env=env, timeout=120)


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_detached_outputs_come_back_with_attach_once_and_elsewhere_on_request(runs, tmp_path, monkeypatch):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (util-linux) to play another machine (its own hostname)")
    scratch, results = tmp_path / "tmp", tmp_path / "results"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))               # where the launcher makes the host folder
    done = runs("--detach", "--image", runs.pyimage, "--output", str(results), "--", "python3", "-c", JOB,
                timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    run_id = done.stdout.strip().splitlines()[-1]
    assert f"provisioner attach {run_id}" in done.stdout and str(results) in done.stdout
    (labels,) = [c.attrs.get("Labels") or {} for c in runs.left()
                 if (c.attrs.get("Labels") or {}).get("provisioner:run-id") == run_id]
    (stage,) = list(scratch.iterdir())
    assert labels["provisioner:output"] == str(stage / "output")
    assert labels["provisioner:output-dest"] == str(results)

    early = runs.cmd("output", run_id, "--cloud", "docker")
    assert early.returncode == 1 and "not ended yet" in early.stderr, early.stderr
    assert not results.exists()

    other = elsewhere(runs, "logs", "-f", run_id, "--cloud", "docker")
    assert other.returncode == 0, other.stderr
    assert "saved" in other.stdout
    assert f"Outputs of run {run_id}: {stage / 'output'}" in other.stderr
    assert f"provisioner output {run_id} DIR" in other.stderr and not results.exists()
    no_dir = elsewhere(runs, "output", run_id, "--cloud", "docker")
    assert no_dir.returncode == 2 and "name the folder" in no_dir.stderr, no_dir.stderr
    copy = tmp_path / "copy"
    fetched = elsewhere(runs, "output", run_id, str(copy), "--cloud", "docker")
    assert fetched.returncode == 0, fetched.stderr
    assert "Outputs: 2 files" in fetched.stderr
    assert stage.exists(), "a copy elsewhere leaves the launch's transfer in place"

    attached = runs.cmd("attach", run_id, "--cloud", "docker", "--yes")
    assert attached.returncode == 0, attached.stderr
    assert f"Outputs: 2 files, 4.9 KiB from {stage / 'output'} into {results}" in attached.stderr
    expected = {"metrics.json": b'{"loss": 0.042}', "model/weights.bin": b"w" * 5000}
    assert files_of(results) == expected == files_of(copy)
    assert not stage.exists(), "the launch's own folder got them: the host folder goes"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]

    again = runs.cmd("output", run_id, "--cloud", "docker")
    assert again.returncode == 0 and f"already in {results}" in again.stderr, again.stderr
    followed = runs.cmd("logs", "-f", run_id, "--cloud", "docker")
    assert followed.returncode == 0 and f"already in {results}" in followed.stderr, followed.stderr
    assert files_of(results) == expected


def test_output_of_a_run_without_output_exits_2(runs):
    run_id, _ = runs.detach("python3", "-c", "print('no outputs', flush=True)")
    done = runs.cmd("output", run_id, "--cloud", "docker")
    assert done.returncode == 2 and "started without --output" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
