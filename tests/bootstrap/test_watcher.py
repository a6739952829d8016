"""The watcher against the IMDSv2 stub: token discipline, spot notice -> SIGTERM with grace ->
stop, self-termination on expiry and idleness, checkpoint sync (moto S3)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from types import SimpleNamespace

from provisioner.agent import markers
from provisioner.agent.imds import Imds, ImdsError, resolve_url
from provisioner.agent.watcher import WatchSettings, Watcher, settings_from, sync_to_s3
from tests.bootstrap.stubs import ImdsStub


@pytest.fixture
def imds():
    stub = ImdsStub().start()
    yield stub
    stub.stop()


def test_imds_v2_token_is_required_and_renewed_on_401(imds):
    client = Imds(imds.url)
    assert client.get("instance-id") == "i-0stub"
    assert client.spot_action() is None                  # 404 until a notice
    assert ("GET", "/latest/meta-data/instance-id", True) in imds.log
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as info:    # without the token: 401
        urllib.request.urlopen(f"{imds.url}/latest/meta-data/instance-id", timeout=2)
    assert info.value.code == 401
    imds.rotate_token()                                   # the old token now gets 401: renewed once
    imds.notify("terminate", "2030-01-01T00:02:00Z")
    assert client.spot_action() == {"action": "terminate", "time": "2030-01-01T00:02:00Z"}
    assert sum(1 for m, *_ in imds.log if m == "PUT") == 2


def test_no_metadata_service_is_an_error_not_a_hang():
    with pytest.raises(ImdsError):
        Imds("http://127.0.0.1:9", timeout_s=0.5).spot_action()


def test_link_local_address_only_on_ec2():
    assert resolve_url({}, lambda: False) is None
    assert resolve_url({}, lambda: True) == "http://169.254.169.254"
    assert resolve_url({"PROVISIONER_IMDS_URL": ""}, lambda: True) is None       # docker cloud: off
    assert resolve_url({"PROVISIONER_IMDS_URL": "http://127.0.0.1:5/"}, lambda: False) == "http://127.0.0.1:5"


def job_process(tmp_path: Path, ignore_term: bool = False) -> subprocess.Popen:
    """A job that notes SIGTERM in a file and exits 143 (or ignores it)."""
    code = ("import signal, sys, time, pathlib\n"
            f"p = pathlib.Path({str(tmp_path / 'got')!r})\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else
               "def h(*_):\n    p.write_text('SIGTERM'); sys.exit(143)\nsignal.signal(signal.SIGTERM, h)\n")
            + "print('up', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n"
    return proc


def test_spot_notice_sends_sigterm_and_reports_interrupted(imds, tmp_path):
    proc = job_process(tmp_path)
    (tmp_path / "job.pid").write_text(str(proc.pid))
    out: list[str] = []
    w = Watcher(WatchSettings(imds_url=imds.url, interval_s=0.05, grace_s=5, pid_file=tmp_path / "job.pid",
                              state_dir=tmp_path / "state", instance_id="i-0stub"), out=out.append)
    assert w.check() is None
    imds.notify()
    started = time.monotonic()
    assert w.run() == 0
    assert proc.wait(5) == 143 and (tmp_path / "got").read_text() == "SIGTERM"
    assert time.monotonic() - started < 3                 # it stopped at once, not after the grace
    assert w.stopped_reason == "interrupted" and (tmp_path / "state" / "interrupted").exists()
    events = [markers.parse(line) for line in out if markers.parse(line)]
    assert events[0][0] == "event" and events[0][1]["event"] == "interrupted"
    assert events[0][1]["notice"]["action"] == "terminate"


def test_a_job_ignoring_sigterm_is_killed_after_the_grace(imds, tmp_path):
    proc = job_process(tmp_path, ignore_term=True)
    (tmp_path / "job.pid").write_text(str(proc.pid))
    w = Watcher(WatchSettings(imds_url=imds.url, grace_s=0.5, exit_margin_s=0, pid_file=tmp_path / "job.pid",
                              state_dir=tmp_path), out=lambda _: None)
    imds.notify()
    w.stop(*w.check())
    assert proc.wait(10) == -signal.SIGKILL


def test_max_lifetime_fires_without_metadata(tmp_path):
    now = [1000.0]
    w = Watcher(WatchSettings(expires_at=1010.0, state_dir=tmp_path), clock=lambda: now[0], out=lambda _: None)
    assert w.check() is None
    now[0] = 1010.0
    assert w.check() == ("expired", {"expires_at": 1010.0})


def test_idle_agent_fires_after_the_idle_timeout(tmp_path):
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "agent.pid").write_text(str(agent.pid))
        now = [0.0]
        # No docker client of the host's: the real one would find (and stop) every `provisioner run`
        # of this machine, other tests' included.
        no_builds = SimpleNamespace(containers=SimpleNamespace(list=lambda **_: []))
        w = Watcher(WatchSettings(idle_timeout_s=60, agent_pid_file=tmp_path / "agent.pid", state_dir=tmp_path),
                    clock=lambda: now[0], out=lambda _: None, docker_client=lambda: no_builds)
        assert w.check() is None
        now[0] = 61.0
        reason, _ = w.check()
        assert reason == "idle"
        w.stop(reason, {})
        assert agent.wait(5) == -signal.SIGTERM           # the agent is stopped; the bootstrap shuts down
    finally:
        agent.kill()


def test_settings_come_from_the_bootstrap_environment(tmp_path):
    s = settings_from(["--pid-file", str(tmp_path / "p")],
                      {"PROVISIONER_EXPIRES_AT": "2030-01-01T00:00:00Z", "PROVISIONER_GRACE_S": "80",
                       "PROVISIONER_IMDS_URL": "", "PROVISIONER_INSTANCE_ID": "i-1"})
    assert s.imds_url is None and s.grace_s == 80 and s.instance_id == "i-1"
    assert s.expires_at == 1893456000.0 and s.interval_s == 5.0


@pytest.mark.moto
def test_checkpoint_directory_is_synced_under_the_instance_id(moto_env, tmp_path):
    from provisioner import aws
    s3 = aws.client("s3", region="us-east-1")
    s3.create_bucket(Bucket="ckpt")
    (tmp_path / "ck" / "sub").mkdir(parents=True)
    (tmp_path / "ck" / "model.pt").write_text("weights")
    (tmp_path / "ck" / "sub" / "step").write_text("42")
    assert sync_to_s3(tmp_path / "ck", "s3://ckpt/provisioner/checkpoints", "i-0abc", client=s3) == 2
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="ckpt")["Contents"])
    assert keys == ["provisioner/checkpoints/i-0abc/model.pt", "provisioner/checkpoints/i-0abc/sub/step"]
