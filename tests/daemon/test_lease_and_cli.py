"""The lease (one daemon per owner id) and `provisioner daemon --check`."""

from __future__ import annotations

import os
import subprocess

import pytest

from provisioner.daemon.lease import Lease
from provisioner.history import open_store


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(tmp_path) -> str:
    path = str(tmp_path / "h.sqlite3")
    open_store(path).close()
    return path


def test_one_holder_at_a_time_expiry_and_release(db):
    clock = Clock()
    a = Lease(db, "team", "hostA:1:x", ttl_s=30, clock=clock)
    b = Lease(db, "team", "hostB:2:y", ttl_s=30, clock=clock)
    other = Lease(db, "other-owner", "hostB:2:y", ttl_s=30, clock=clock)
    assert a.try_acquire() and not b.try_acquire() and other.try_acquire()
    clock.t += 20
    assert a.try_acquire()                      # renewed
    clock.t += 20
    assert not b.try_acquire()                  # still within the renewed term
    clock.t += 31
    assert b.try_acquire() and not a.try_acquire() and not a.held   # expired: taken over; A knows it lost
    b.release()
    assert a.try_acquire()


def test_a_dead_holder_on_this_host_is_taken_over_at_once(db):
    dead = subprocess.Popen(["true"])
    dead.wait()
    import socket
    stale = Lease(db, "team", f"{socket.gethostname()}:{dead.pid}:z", ttl_s=3600)
    assert stale.try_acquire()
    assert Lease(db, "team", ttl_s=30).try_acquire()
    live = Lease(db, "team2", f"{socket.gethostname()}:{os.getppid()}:z", ttl_s=3600)
    assert live.try_acquire() and not Lease(db, "team2", ttl_s=30).try_acquire()


@pytest.mark.docker
def test_check_valid_and_invalid_configs(cli, tmp_path, docker_client):
    from tests.images import runtime_stub_image
    good = tmp_path / "good.yaml"
    # --check also looks for the instance image and its java and bootstrap (tests/daemon/test_deepcheck.py)
    good.write_text("jenkins:\n  url: http://127.0.0.1:8080/\n  user: bot\ndaemon:\n  owner_id: team\n"
                    f"  max_agents: 5\n  budget_usd_per_hour: 2.5\ndocker:\n  instance_image: {runtime_stub_image(docker_client)}\n")
    r = cli("daemon", "--check", str(good))
    assert r.returncode == 0 and "valid" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("jenkins:\n  url: jenkins.local\n  managed_atom: 'ec2 && x'\ndaemon:\n  interval_s: 0\n"
                   "  max_agents: many\n  listen: 9108\n  surprise: 1\n")
    r = cli("daemon", "--check", str(bad))
    assert r.returncode == 2
    for expected in ("bad.yaml:2: jenkins.url", "bad.yaml:3: jenkins.managed_atom", "bad.yaml:5: daemon.interval_s",
                     "bad.yaml:6: daemon.max_agents", "bad.yaml:7: daemon.listen", "bad.yaml:8: daemon.surprise"):
        assert expected in r.stderr, r.stderr
    missing = tmp_path / "missing.yaml"
    missing.write_text("jenkins:\n  user: bot\n")
    r = cli("daemon", "--check", str(missing))
    assert r.returncode == 2 and "missing.yaml:1: jenkins.url: is required" in r.stderr
    r = cli("--config", str(good), "daemon", "--check")         # the file --config names
    assert r.returncode == 0
    assert cli("daemon", "--check", str(tmp_path / "nope.yaml")).returncode == 2


def test_token_never_on_the_command_line(cli):
    r = cli("daemon", "--help")
    assert r.returncode == 0 and "--token" not in r.stdout and "JENKINS_TOKEN" in r.stdout


@pytest.mark.docker
def test_once_runs_one_tick_and_exits(cli, emu, tmp_path, docker_client):
    """The console script end to end, with the docker cloud (nothing queued: describe only)."""
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text(f"jenkins:\n  url: {emu.url}\n  user: bob\n  token_env: TEST_JENKINS_TOKEN\n"
                   "daemon:\n  owner_id: once-test\n  listen: 127.0.0.1:0\n")
    history = str(tmp_path / "h.sqlite3")
    r = cli("--config", str(cfg), "--history", history, "daemon", "--once", env={"TEST_JENKINS_TOKEN": "bob-token"})
    assert r.returncode == 0, r.stderr
    assert '"event": "daemon.started"' in r.stderr and "bob-token" not in r.stderr
    assert emu.node("autoscaler-sentinel") is not None             # bob may not use /scriptText
    bad = cli("--config", str(cfg), "--history", history, "daemon", "--once", env={"TEST_JENKINS_TOKEN": "tok-9f3a"})
    assert bad.returncode == 1 and '"code": "401"' in bad.stderr and "tok-9f3a" not in bad.stderr


@pytest.fixture(scope="module")
def pg_url():
    """A throwaway PostgreSQL (the history suite's helper), migrated like any team store."""
    pytest.importorskip("psycopg")
    from tests.history.test_postgres import PgCluster, pg_bin_dir
    if pg_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (scripts/lib.sh ensure_postgres installs it)")
    cluster = PgCluster().start()
    url = cluster.create_database("daemon_lease")
    open_store(url).close()
    yield url
    cluster.stop()


def test_lease_and_attempts_on_a_postgresql_team_store(pg_url):
    """Two daemons on different hosts share one PostgreSQL store: the lease holds across them."""
    from provisioner.daemon.state import Attempts
    clock = Clock()
    a = Lease(pg_url, "team", "hostA:1:x", ttl_s=30, clock=clock)
    b = Lease(pg_url, "team", "hostB:2:y", ttl_s=30, clock=clock)
    try:
        assert a.try_acquire() and not b.try_acquire()
        clock.t += 31
        assert b.try_acquire() and not a.try_acquire()
        b.release()
        assert a.try_acquire() and a.current()[0] == "hostA:1:x"
    finally:
        a.close()
        b.close()
    att = Attempts(pg_url, "team")
    try:
        att.record((7, 1000), 2)
        att.record((7, 1000), 1)                     # never goes back
        assert att.load() == {(7, 1000): 2}
        att.prune([], older_than_s=-1)
        assert att.load() == {}
    finally:
        att.close()
