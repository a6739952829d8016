"""A run's exit code and record survive what goes wrong around it (issue 13, items 6 and 10): an
unwritable --summary-json, a history store locked by another writer, a full disk."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.history import open_store
from provisioner.history import store as store_module
from tests.conftest import provisioner_exe

ROOT = Path(__file__).resolve().parents[2]


def test_unwritable_summary_is_a_warning_and_the_job_exit_code_stands(prun, busybox):
    done = subprocess.run([provisioner_exe(), "--history", str(prun.history), "run", "--job", prun.job,
                           "--summary-json", "/nonexistent/x.json", "--image", busybox,
                           "--", "sh", "-c", "exit 7"], capture_output=True, text=True,
                          env=prun.env(None), timeout=60)
    assert done.returncode == 7, done.stderr
    assert "Traceback" not in done.stderr
    assert "--summary-json /nonexistent/x.json not written" in done.stderr
    assert prun.records()[0]["exit_code"] == 7


def test_run_under_a_held_lock_spools_its_record_and_the_next_command_merges_it(
        tmp_path, capsys, monkeypatch, docker_client, busybox):
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.5)
    hist = tmp_path / "h.sqlite3"
    job = f"test-{uuid.uuid4().hex[:10]}"
    open_store(str(hist)).close()
    holder = sqlite3.connect(str(hist), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, holding the lock past the timeout
    try:
        code = main(["--history", str(hist), "run", "--job", job, "--image", busybox,
                     "--", "sh", "-c", "exit 3"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert code == 3
    assert "locked" in err and "spooled to" in err and "Traceback" not in err
    assert main(["--history", str(hist), "history", "show", job, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [r["exit_code"] for r in shown] == [3]
    assert not list((tmp_path / "h.sqlite3.spool").glob("*.json"))


def _can_mount_tmpfs() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and mount namespaces (CI runs as root)")
def test_full_disk_spools_the_record_elsewhere_and_it_is_merged_later(tmp_path, busybox):
    disk = tmp_path / "disk"
    disk.mkdir()
    hist = disk / "h.sqlite3"
    job = f"test-{uuid.uuid4().hex[:10]}"
    exe = f"{sys.executable} -m provisioner --history {hist}"
    script = (f"mount -t tmpfs -o size=256k tmpfs {disk} && "
              f"{exe} history export >/dev/null 2>&1; "  # no store yet: nothing to export
              f"{sys.executable} -c 'from provisioner.history import open_store; open_store(\"{hist}\").close()' && "
              f"(dd if=/dev/zero of={disk}/fill bs=4k 2>/dev/null; true) && "
              f"{exe} run --job {job} --image {busybox} -- sh -c 'exit 4'; echo rc=$?; "
              f"rm {disk}/fill && {exe} history show {job} --json")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert "rc=4" in done.stdout, (done.stdout, done.stderr)
    assert "disk is full" in done.stderr and "move it away" not in done.stderr, done.stderr
    assert "spooled to" in done.stderr and "Traceback" not in done.stderr, done.stderr
    shown = json.loads(done.stdout.splitlines()[-1])
    assert [r["exit_code"] for r in shown] == [4]
