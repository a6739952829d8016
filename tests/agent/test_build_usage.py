"""The instance side of a build's usage record (issue 14): which processes count, the figures
against a known profile, and the one record posted at the build's end, cut short or not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from provisioner.agent.buildtree import Look, ProcessTree, boot_time
from provisioner.agent.buildusage import BuildUsage, result_of_steps

MIB = 2 ** 20
# Cookie names of this test run only: the machine runs other people's builds (emulator agents).
SERVER, NODE = f"TEST_SERVER_COOKIE_{os.getpid()}", f"TEST_NODE_COOKIE_{os.getpid()}"


def tree(own: dict[str, str] | None = None) -> ProcessTree:
    return ProcessTree(names=(SERVER, NODE), own_environ=own or {})
# Holds MB MiB (every page touched) and keeps one vCPU busy for S seconds; prints its own CPU share.
BURN = ("import sys, time\nmb, s = int(sys.argv[1]), float(sys.argv[2])\nbuf = bytearray(mb << 20)\n"
        "for i in range(0, len(buf), 4096): buf[i] = 1\nt0, c0 = time.time(), time.process_time()\n"
        "while time.time() - t0 < s: pass\n"
        "print('share', round(100 * (time.process_time() - c0) / (time.time() - t0)), flush=True)\n")


def spawn(env: dict[str, str], *argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(list(argv), env={"PATH": os.environ.get("PATH", ""), **env}, **kw)


def burner(mb: int, seconds: float, env: dict[str, str]) -> subprocess.Popen:
    return spawn(env, sys.executable, "-c", BURN, str(mb), str(seconds), stdout=subprocess.PIPE, text=True)


def test_cookie_processes_and_agent_children_count_the_agent_watcher_and_others_do_not(tmp_path):
    agent = spawn({}, "/bin/sh", "-c", "sleep 30 & wait")                   # stands in for the JVM
    cookie = spawn({SERVER: "durable-1", "JOB_NAME": "app"}, "sleep", "30")
    kept = spawn({SERVER: "durable-1", "JENKINS_NODE_COOKIE": "dontKillMe"}, "sleep", "30")   # opted out
    other = spawn({}, "sleep", "30")
    own = spawn({NODE: "watcher-cookie"}, "sleep", "30")                     # the watcher's own build
    try:
        time.sleep(0.3)
        procs = tree({NODE: "watcher-cookie"})
        look = procs.look(agent.pid)
        counted = {pid for pid in (cookie.pid, kept.pid, other.pid, own.pid, agent.pid)
                   if pid in _counted(procs, agent.pid)}
        assert counted == {cookie.pid}
        assert look.processes == 2                        # the cookie process and the agent's sleep child
        assert look.environ is not None and look.environ["JOB_NAME"] == "app"
    finally:
        for p in (agent, cookie, kept, other, own):
            p.kill()
            p.wait()


def _counted(tree: ProcessTree, agent_pid: int) -> set[int]:
    tree.look(agent_pid)
    return {pid for (pid, _), env in tree._kind.items() if env is not None}


def test_boot_time_to_the_hundredth_from_uptime_else_btime(tmp_path):
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1000\n")
    assert boot_time(str(tmp_path), now=2000.0) == 1000.0            # btime: whole seconds, cut down
    (tmp_path / "uptime").write_text("999.05 12000.00\n")
    assert boot_time(str(tmp_path), now=2000.0) == pytest.approx(1000.95)
    (tmp_path / "uptime").write_text("garbage\n")
    assert boot_time(str(tmp_path), now=2000.0) == 1000.0


def test_a_build_process_starts_when_it_was_spawned():
    """The start comes from the process' start ticks and the boot time: with btime (whole
    seconds) it was up to a second early, which made short builds longer and their CPU lower."""
    t0 = time.time()
    job = spawn({SERVER: "durable-3", "JOB_NAME": "clock"}, "sleep", "5")
    try:
        time.sleep(0.3)
        seen = tree().look(None)
        assert seen.first_start is not None and abs(seen.first_start - t0) < 0.25, (seen.first_start, t0)
    finally:
        job.kill()
        job.wait()


def test_figures_match_a_known_profile():
    """300 MiB held and one vCPU busy: memory within 15 %; CPU average within 15 points of the
    share the process itself measured (100 on an idle machine; these machines are shared), and the
    peak between that share and one vCPU."""
    posted: list[dict] = []
    usage = BuildUsage(posted.append, agent_pid_file=None, work_dir=None, environ={}, tree=tree(),
                       interval_s=1.0, gpu=lambda: _NoGpu())
    job = burner(300, 4.0, {SERVER: "durable-2", "JOB_NAME": "burn", "BUILD_NUMBER": "3"})
    try:
        deadline = time.time() + 30
        while job.poll() is None and time.time() < deadline:
            usage.look()
            time.sleep(1.0)
        usage.look()
        share = int(job.stdout.read().split()[-1])
    finally:
        job.kill()
        job.wait()
    record = usage.finish("test")
    assert posted == [record] and record["kind"] == "build" and record["result"] == "SUCCESS"
    assert (record["job"], record["build"], record["exit_code"]) == ("burn", "3", 0)
    assert abs(record["mem_max_bytes"] - 300 * MIB) <= 0.15 * 300 * MIB, record
    assert abs(record["cpu_avg_pct"] - share) <= 15, (record, share)
    assert share - 15 <= record["cpu_max_pct"] <= 115, (record, share)
    assert 3.0 <= record["duration_s"] <= 8.0
    assert usage.finish("again") is None and len(posted) == 1          # one record per build


class _NoGpu:
    def start(self) -> bool:
        return False


def test_the_watcher_quitting_mid_build_posts_an_interrupted_record(tmp_path):
    posted: list[dict] = []
    usage = BuildUsage(posted.append, agent_pid_file=None, work_dir=tmp_path, interval_s=0.2,
                       environ={"PROVISIONER_BUILD_RUN_ID": "b-42", "PROVISIONER_INSTANCE_TYPE": "c5.large",
                                "PROVISIONER_MARKET": "spot", "PROVISIONER_REGION": "us-east-1",
                                "PROVISIONER_PRICE_USD_PER_HOUR": "0.036"},
                       tree=tree(), gpu=lambda: _NoGpu()).start()
    job = spawn({SERVER: "durable-3", "JOB_NAME": "long", "BUILD_NUMBER": "9"}, "sleep", "30")
    try:
        deadline = time.time() + 10
        while usage.started is None and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        record = usage.stop("the agent exited")
    finally:
        job.kill()
        job.wait()
    assert posted == [record]
    assert (record["result"], record["exit_code"], record["interrupted"]) == ("ABORTED", 130, True)
    assert (record["run_id"], record["instance_type"], record["market"]) == ("b-42", "c5.large", "spot")
    assert record["cost_usd"] == pytest.approx(0.036 * record["duration_s"] / 3600, abs=1e-6)


def test_the_agent_gone_mid_build_ends_the_record_with_what_was_seen(tmp_path):
    agent = spawn({}, "sleep", "30")
    (tmp_path / "agent.pid").write_text(f"{agent.pid}\n")
    posted: list[dict] = []
    usage = BuildUsage(posted.append, agent_pid_file=tmp_path / "agent.pid", work_dir=None, interval_s=0.2,
                       environ={}, tree=tree(), gpu=lambda: _NoGpu()).start()
    job = spawn({SERVER: "durable-4", "JOB_NAME": "cut"}, "sleep", "30")
    try:
        time.sleep(1.0)
        agent.kill()
        agent.wait()
        usage.thread.join(10)
    finally:
        job.kill()
        job.wait()
    [record] = posted
    assert record["interrupted"] is True and record["job"] == "cut" and record["duration_s"] >= 0.5


class _Script:
    """A process tree that answers looks from a script: (running, first_start) per look."""

    def __init__(self, looks):
        self.looks = iter(looks)

    def look(self, agent_pid):
        running, first = next(self.looks)
        return Look(0.5 if running else 0.0, 1 << 20, int(running), 0, {"JOB_NAME": "steps"}, first)


def test_the_build_ends_halfway_between_the_last_look_that_saw_it_and_the_first_that_did_not():
    """Looks at t = 10, 11, 12 (a pause between steps), 13, 14 (gone): from its first process' start
    (9.6) to 13.5; the pause does not end it."""
    times = iter([5.0, 10.0, 11.0, 12.0, 13.0, 14.0, 20.0])     # the first: the sampler begins
    usage = BuildUsage(lambda r: None, agent_pid_file=None, work_dir=None, environ={},
                       clock=lambda: next(times),
                       tree=_Script([(True, 9.6), (True, 9.6), (False, None), (True, 9.6), (False, None)]),
                       gpu=lambda: _NoGpu())
    for _ in range(5):
        usage.look()
    record = usage.finish("test")
    assert record["duration_s"] == pytest.approx(13.5 - 9.6)


def test_a_build_that_ended_is_posted_after_the_quiet_time(tmp_path):
    posted: list[dict] = []
    usage = BuildUsage(posted.append, agent_pid_file=None, work_dir=None, interval_s=0.2, end_quiet_s=1.0,
                       environ={}, tree=tree(), gpu=lambda: _NoGpu()).start()
    job = spawn({SERVER: "durable-5", "JOB_NAME": "short"}, "sleep", "1")
    job.wait()
    usage.thread.join(10)
    [record] = posted
    assert record["result"] == "SUCCESS" and 0.6 <= record["duration_s"] <= 2.5


@pytest.mark.parametrize("codes,result", [
    (["0", "0"], "SUCCESS"), (["0", "2"], "FAILURE"), (["143"], "ABORTED"), (["0", None], "ABORTED"), ([], "SUCCESS"),
], ids=["ok", "failed", "killed", "wrapper-killed", "freestyle"])
def test_the_result_read_from_durable_task_control_files(tmp_path, codes, result):
    for i, code in enumerate(codes):
        control = tmp_path / "workspace" / "job@tmp" / f"durable-{i:08x}"
        control.mkdir(parents=True)
        (control / "jenkins-log.txt").write_text("")
        if code is not None:
            (control / "jenkins-result.txt").write_text(code + "\n")
    old = tmp_path / "workspace" / "old@tmp" / "durable-ffffffff"           # an earlier build's
    old.mkdir(parents=True)
    (old / "jenkins-result.txt").write_text("1\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert result_of_steps(tmp_path, time.time() - 60) == result
    assert result_of_steps(None, 0) == "SUCCESS"


def test_a_build_shorter_than_a_look_still_leaves_a_record_from_its_control_files(tmp_path):
    posted: list[dict] = []
    usage = BuildUsage(posted.append, agent_pid_file=None, work_dir=tmp_path, interval_s=60,
                       environ={}, tree=tree(), gpu=lambda: _NoGpu())
    control = tmp_path / "workspace" / "quick@tmp" / "durable-0000abcd"
    control.mkdir(parents=True)
    (control / "jenkins-log.txt").write_text("+ true\n")
    time.sleep(0.3)
    (control / "jenkins-result.txt").write_text("0\n")
    record = usage.stop("the agent exited")
    assert posted == [record] and (record["job"], record["result"]) == ("quick", "SUCCESS")
    assert 0.2 <= record["duration_s"] <= 2 and record["cpu_max_pct"] is None
