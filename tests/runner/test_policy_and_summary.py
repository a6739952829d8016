"""Retry policy, the usage record, the summary lines, owner labels and orphan removal (fake engine),
console line splitting."""

from __future__ import annotations

import io

import pytest

from provisioner import records
from provisioner.errors import UsageError
from provisioner.runner.console import Console, LineSplitter, timestamp
from provisioner.runner.container import Attempt
from provisioner.runner.images import ImageInfo
from provisioner.runner.owners import Owner, reap_orphans, run_labels
from provisioner.runner.instance_price import Pricing
from provisioner.runner.retry import RetryPolicy, parse_retry_on
from provisioner.runner.spec import ContainerSpec
from provisioner.runner.summary import JobInfo, build_record, summary_line, summary_lines, team_for


def attempt(**kw) -> Attempt:
    base = dict(run_id="r-1", container_name="r-1", start="2026-01-01T00:00:00Z", duration_s=90.0,
                exit_code=0)
    return Attempt(**{**base, **kw})


# ---- retry ---------------------------------------------------------------------------------------

def policy(retry_on: str | None, retries: int = 2) -> RetryPolicy:
    return RetryPolicy(retries=retries, **parse_retry_on(retry_on))


@pytest.mark.parametrize("retry_on, outcome, expected", [
    (None, attempt(exit_code=1), True),
    (None, attempt(exit_code=0), False),
    (None, attempt(exit_code=124, timed_out=True), False),
    ("timeout", attempt(exit_code=124, timed_out=True), True),
    (None, attempt(exit_code=130, signal="SIGINT"), False),
    ("any,interrupted", attempt(exit_code=143, signal="SIGTERM"), False),
    ("3-5", attempt(exit_code=4), True),
    ("3-5", attempt(exit_code=6), False),
    ("oom", attempt(exit_code=137, oom_killed=True), True),
    ("oom", attempt(exit_code=143, killed_externally=True), False),
    ("interrupted", attempt(exit_code=143, killed_externally=True), True),
    ("1", attempt(exit_code=137, oom_killed=True), False),
], ids=lambda v: v if isinstance(v, str) else None)
def test_retry_conditions(retry_on, outcome, expected):
    assert policy(retry_on).should_retry(outcome, 1) is expected


def test_retry_count_and_backoff():
    p = RetryPolicy(retries=2, delay_s=10, max_delay_s=25)
    failed = attempt(exit_code=1)
    assert [p.should_retry(failed, n) for n in (1, 2, 3)] == [True, True, False]
    assert [p.delay(n) for n in (1, 2, 3)] == [10, 20, 25]
    assert not RetryPolicy().should_retry(failed, 1)


@pytest.mark.parametrize("bad", ["sometimes", "0", "256", "5-3", "1-x"])
def test_retry_on_errors(bad):
    with pytest.raises(UsageError):
        parse_retry_on(bad)


# ---- records and summaries ---------------------------------------------------------------------

IMAGE = ImageInfo(ref="img:1", id="sha256:" + "a" * 64, digest="img@sha256:" + "b" * 64,
                  pulled=False, pull_s=None)
JOB = JobInfo(job="train", build="42", team="ds", triggered_by="alice", node="agent-1")


def test_record_is_valid_and_complete():
    usage = {"cpu_avg_pct": 50.0, "cpu_max_pct": 100.0, "mem_avg_bytes": 1, "mem_max_bytes": 2,
             "gpu_count": 1, "gpu_util_avg_pct": 80.0, "gpu_util_max_pct": 99.0,
             "gpu_mem_max_bytes": 3}
    pricing = Pricing("g5.xlarge", "us-east-1", "spot", 0.4, 1.0, 4, "environment")
    spec = ContainerSpec(image="img:1", cpus=2.0, memory_bytes=3 * 2 ** 30)
    rec = build_record(attempt(usage=usage, oom_killed=False), JOB, spec, IMAGE, pricing,
                       attempt_no=2, log_lines_dropped=0)
    assert set(records.FIELDS) <= set(rec)
    assert rec["cost_usd"] == pytest.approx(0.01) and rec["vcpu"] == 4
    assert rec["requested_vcpu"] == 2.0 and rec["requested_mem_gib"] == 3.0
    assert rec["image_digest"] == IMAGE.digest and rec["attempt"] == 2
    assert (rec["job"], rec["build"], rec["team"], rec["market"]) == ("train", "42", "ds", "spot")
    lines = summary_lines(rec)
    assert lines[0] == "Exit code: 0"
    assert "GPU: 1 device(s), utilisation avg 80%, max 99%" in lines[3]
    assert lines[-1] == "Estimated cost: $0.0100 (g5.xlarge, spot, us-east-1 at $0.4000/h)"
    assert summary_line(rec) == ("exit 0 | 1m30s | CPU avg 50% max 100% | mem max 0.0 MiB | "
                                 "GPU avg 80% | $0.0100 on g5.xlarge")


@pytest.mark.parametrize("kw, note", [
    (dict(exit_code=124, timed_out=True), "124 (timed out after 1m)"),
    (dict(exit_code=137, oom_killed=True), "137 (OOM: killed for running out of memory)"),
    (dict(exit_code=130, signal="SIGINT"), "130 (interrupted by SIGINT)"),
    (dict(exit_code=143, killed_externally=True), "143 (killed by a signal from outside)"),
], ids=["timeout", "oom", "sigint", "outside"])
def test_exit_notes(kw, note):
    rec = build_record(attempt(**kw), JOB, ContainerSpec(image="i"), IMAGE, Pricing())
    assert summary_lines(rec, 60)[0] == f"Exit code: {note}"
    assert rec["interrupted"] is bool(kw.get("signal") or kw.get("killed_externally"))
    assert "Estimated cost: unknown" in summary_lines(rec)[-1]


def test_dropped_log_lines_are_in_the_summary():
    rec = build_record(attempt(), JOB, ContainerSpec(image="i"), IMAGE, Pricing(),
                       log_lines_dropped=17)
    assert summary_lines(rec)[-1] == "Log lines dropped by log sinks: 17"


def test_job_info_from_jenkins_environment():
    env = {"JOB_NAME": "folder/train", "BUILD_NUMBER": "7", "NODE_NAME": "ec2-1",
           "BUILD_USER_ID": "bob"}
    info = JobInfo.from_env(None, None, env, {"folder/*": "ml"})
    assert (info.job, info.build, info.node, info.triggered_by, info.team) == \
        ("folder/train", "7", "ec2-1", "bob", "ml")
    assert JobInfo.from_env("mine", "x", env).job == "mine"
    assert JobInfo.from_env(None, None, {}).job == "adhoc"
    assert team_for("etl-daily", {"data": ["etl-*"]}) == "data"


# ---- owners ----------------------------------------------------------------------------------------

class FakeEngine:
    """list_containers / remove_container over /containers/json-shaped dicts."""

    def __init__(self, items: list[tuple[str, dict]]):
        self.items = [{"Id": f"id-{name}", "Names": [f"/{name}"], "Labels": labels}
                      for name, labels in items]
        self.label: str | None = None
        self.removed: list[str] = []

    def list_containers(self, label: str) -> list[dict]:
        self.label = label
        return self.items

    def remove_container(self, cid: str, force: bool = True) -> None:
        assert force
        self.removed.append(cid)


def test_reap_removes_only_this_hosts_dead_owners():
    me = Owner("host-a", 100, 1000.0)
    engine = FakeEngine([
        ("dead", run_labels(Owner("host-a", 200, 900.0), "r1", "j", None)),
        ("alive", run_labels(Owner("host-a", 300, 950.0), "r2", "j", "1")),
        ("other", run_labels(Owner("host-b", 200, 900.0), "r3", "j", None)),
        ("mine", run_labels(me, "r4", "j", None)),
        ("garbled", {"provisioner:kind": "run", "provisioner:owner": "daemon-1"})])
    removed = reap_orphans(engine, me, alive=lambda pid, started: pid == 300)
    assert removed == ["dead"] and engine.removed == ["id-dead"]
    assert engine.label == "provisioner:kind=run"


def test_process_start_time_agrees_with_psutil():
    import os
    import psutil
    from provisioner.runner.owners import _psutil_started, process_started
    for pid in (os.getpid(), 1):
        assert process_started(pid) == pytest.approx(psutil.Process(pid).create_time(), abs=0.01)
        assert process_started(pid) == pytest.approx(_psutil_started(pid), abs=0.01)
    assert process_started(2 ** 22 + 12345) is None and _psutil_started(2 ** 22 + 12345) is None


def test_owner_alive_detects_pid_reuse():
    import os
    from provisioner.runner.owners import owner_alive, process_started
    started = process_started(os.getpid())
    assert owner_alive(os.getpid(), started)
    assert not owner_alive(os.getpid(), started - 100)  # same pid, a different (older) process
    assert not owner_alive(2 ** 22 + 12345, None)


# ---- console -----------------------------------------------------------------------------------------

def test_line_splitter_handles_partial_lines_and_utf8():
    s = LineSplitter()
    data = "héllo\r\nwörld\npart".encode()
    out = []
    for i in range(len(data)):  # one byte at a time, splitting multibyte characters
        out += s.feed(data[i:i + 1])
    assert out == ["héllo", "wörld"]
    assert s.flush() == ["part"] and s.flush() == []


def test_line_splitter_bounds_unterminated_lines():
    s = LineSplitter()
    out = s.feed(b"x" * (200 * 1024))
    assert [len(x) for x in out] == [65536] * 3 and len(s.flush()[0]) == 8192


def test_console_colour_only_when_asked():
    out, err = io.StringIO(), io.StringIO()
    Console(out, err, colour=False).lines(0.0, ["a", "b"], False)
    assert out.getvalue() == "1970-01-01T00:00:00.000Z a\n1970-01-01T00:00:00.000Z b\n"
    Console(out, err, colour=True).lines(1.5, ["bad"], True)
    assert err.getvalue() == "\x1b[2m1970-01-01T00:00:01.500Z\x1b[0m \x1b[31mbad\x1b[0m\n"
    assert Console(io.StringIO(), err).colour is False  # StringIO is not a terminal
    assert timestamp(1767323045.1239) == "2026-01-02T03:04:05.123Z"
