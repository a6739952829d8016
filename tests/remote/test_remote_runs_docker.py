"""Remote runs you can leave (`run --remote --detach`, `ps`, `logs`, `stop`, `attach`) on the docker
cloud with the real engine, each command a separate process with no shared state but the engine
(and, for the launching machine's record import, its state dir)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.conftest import provisioner_exe
from tests.remote.test_remote_docker import Remote

pytestmark = pytest.mark.docker


class Runs(Remote):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.state = self.tmp / "state"

    def env(self) -> dict:
        return dict(super().env(), XDG_STATE_HOME=str(self.state))

    def cmd(self, *args: str, timeout: float = 90, env: dict | None = None) -> subprocess.CompletedProcess:
        argv = [provisioner_exe(), "--config", str(self.config), "--history", str(self.history), *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env or self.env(), timeout=timeout)

    def ps(self, *extra: str, env: dict | None = None) -> list[dict]:
        done = self.cmd("ps", "--cloud", "docker", "--json", *extra, env=env)
        assert done.returncode == 0, done.stderr
        return [r for r in json.loads(done.stdout) if r["job"] == self.job]

    def detach(self, *command: str) -> tuple[str, subprocess.CompletedProcess]:
        done = self("--detach", "--image", self.pyimage, "--", *command)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1], done


@pytest.fixture
def runs(docker_client, agent_image, pyimage, tmp_path):
    r = Runs(docker_client, tmp_path, agent_image)
    r.pyimage = pyimage
    yield r
    for c in r.left():
        c.remove(force=True)


def _wait_until(predicate, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_detach_ps_from_another_process_logs_to_the_end_and_the_record_is_imported(runs):
    run_id, done = runs.detach("python3", "-c", "import time; print('first', flush=True); "
                                                "time.sleep(6); print('last', flush=True)")
    assert "Detached: run " + run_id in done.stdout and "provisioner logs -f" in done.stdout
    # another process, no shared state with the launcher: a fresh state dir, another history
    other = dict(runs.env(), XDG_STATE_HOME=str(runs.tmp / "elsewhere"))
    listed = runs.ps(env=other)
    assert [(r["run_id"], r["state"]) for r in listed] == [(run_id, "running")]
    assert listed[0]["instance_type"] and listed[0]["cost_usd"] is not None
    logs = runs.cmd("logs", "-f", run_id, "--cloud", "docker", env=other)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert any(line.endswith("first") for line in lines) and any(line.endswith("last") for line in lines)
    assert lines[-2].startswith("Summary:") and lines[-1] == "Exit code: 0"
    assert _wait_until(lambda: runs.ps()[0]["state"] == "ended")
    (record,) = runs.records()         # imported (same host: `logs -f` and `ps` both may; the store keeps one)
    assert record["exit_code"] == 0 and record["remote"] is True and record["cloud"] == "docker"
    runs.ps()
    assert len(runs.records()) == 1                   # once


def test_stop_leaves_an_interrupted_record_and_nothing_running(runs):
    run_id, _ = runs.detach("python3", "-c", "import time; print('working', flush=True); time.sleep(300)")
    stopped = runs.cmd("stop", run_id[:8], "--cloud", "docker")
    assert stopped.returncode == 0, stopped.stderr
    assert "Summary:" in stopped.stderr
    (record,) = runs.records()
    assert record["interrupted"] is True and record["exit_code"] in (130, 143)
    assert not [c for c in runs.left() if c.status == "running"]
    assert runs.ps()[0]["state"] == "ended"
    assert len(runs.records()) == 1                   # the import does not add it twice


def test_a_killed_launcher_leaves_a_run_that_ends_and_its_record_is_imported(runs):
    proc = runs.popen("--image", runs.pyimage, "--", "python3", "-c",
                      "import time; print('working', flush=True); time.sleep(4); print('done', flush=True)")
    seen = ""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and "Z working" not in seen:
        seen += proc.stdout.readline()
    proc.kill()                                       # SIGKILL: no cleanup, no record written here
    proc.wait(10)
    assert runs.left(), "the run goes on without its launcher"
    assert _wait_until(lambda: not [c for c in runs.left() if c.status == "running"]), "the run did not end"
    other_run = runs("--image", runs.pyimage, "--", "true")   # a later run reaps nothing
    assert other_run.returncode == 0 and "left behind" not in other_run.stderr
    assert not runs.records() or all(r["exit_code"] == 0 for r in runs.records())
    listed = runs.ps()
    assert [r["state"] for r in listed] == ["ended"]
    records = runs.records()
    assert len(records) == 2 and all(r["exit_code"] == 0 for r in records), records


def test_unknown_run_ids_exit_2(runs):
    for command in ("logs", "stop", "attach"):
        done = runs.cmd(command, "no-such-run", "--cloud", "docker")
        assert done.returncode == 2, (command, done.stderr)
        assert "no remote run 'no-such-run'" in done.stderr and "Traceback" not in done.stderr


def test_sighup_stops_the_job_records_it_and_exits_129(runs):
    proc = subprocess.Popen(runs.argv("--image", runs.pyimage, "--", "python3", "-c",
                                      "import time; print('working', flush=True); time.sleep(120)"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=runs.env())
    seen = ""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and "Z working" not in seen:
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 129, err
    (record,) = runs.records()
    assert record["exit_code"] == 129 and record["interrupted"] is True
    assert not runs.left()


def test_booting_progress_is_one_line_off_a_tty_and_rewritten_on_one(runs):
    import os
    import pty
    done = runs("--image", runs.pyimage, "--", "true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Waiting for instance") == 1 and "\r" not in done.stdout + done.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(runs.argv("--image", runs.pyimage, "--", "true"), stdout=subprocess.PIPE,
                            stderr=slave, text=True, env=runs.env())
    os.close(slave)
    proc.communicate(timeout=90)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0
    assert b"\rBooting instance i-" in seen and b"s elapsed" in seen


def test_detach_returns_after_the_jobs_first_line_and_a_silent_job_after_its_start(runs):
    run_id, done = runs.detach("python3", "-c", "import time; print('hello', flush=True); time.sleep(30)")
    assert "Z hello" in done.stdout                      # not before the job printed
    _, silent = runs.detach("sleep", "30")
    assert "Docker command:" in silent.stdout and "Detached: run" in silent.stdout
    assert {r["state"] for r in runs.ps()} == {"running"}


def test_attach_follows_and_ctrl_c_with_yes_stops_the_run(runs):
    run_id, _ = runs.detach("python3", "-c", "import time\nfor i in range(300): print('tick', i, flush=True); "
                                             "time.sleep(0.5)")
    argv = [provisioner_exe(), "--config", str(runs.config), "--history", str(runs.history),
            "attach", run_id, "--cloud", "docker", "--yes"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=runs.env())
    seen = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "tick 3" not in seen:
        seen += proc.stdout.readline()
    assert "tick 0" in seen                          # from the run's start
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "Stopping run" in err
    (record,) = runs.records()
    assert record["interrupted"] is True
    assert not [c for c in runs.left() if c.status == "running"]


def test_history_imports_the_record_of_a_run_whose_launcher_is_gone(runs):
    run_id, _ = runs.detach("python3", "-c", "print('short', flush=True)")
    assert _wait_until(lambda: not [c for c in runs.left() if c.status == "running"])
    shown = runs.cmd("history", "show", runs.job, "--json")
    assert shown.returncode == 0, shown.stderr
    assert "imported the usage record of 1 finished remote run" in shown.stderr
    assert [r["exit_code"] for r in json.loads(shown.stdout)] == [0]
    assert runs.cmd("history", "show", runs.job).returncode == 0 and len(runs.records()) == 1
