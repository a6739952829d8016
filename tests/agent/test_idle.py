"""The watcher's idle check (provisioner/agent/watcher.py, BuildProbe): a build is running while the
agent has a child (freestyle), while a process carries a Jenkins build cookie in its environment
(pipeline `sh` steps, which durable-task starts detached from agent.jar), or while a `provisioner run`
container of this host has a live owner; without any of these the agent is idle and the instance
stops itself after --idle-timeout."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from provisioner.agent.watcher import (BUILD_COOKIES, BuildProbe, WatchSettings, Watcher, agent_has_children,
                                       build_processes)
from provisioner.runner.owners import process_started

# The hermetic tests look for a cookie of their own: other test runs on this machine may start
# processes with Jenkins' names (the emulator's agents, a concurrent run of this file).
COOKIE = f"PROVISIONER_TEST_COOKIE_{uuid.uuid4().hex[:8].upper()}"
NO_BUILDS = SimpleNamespace(containers=SimpleNamespace(list=lambda **_: []))

STEP = ("import pathlib, os, time\n"
        "d = pathlib.Path({dir!r})\n"
        "(d / 'step.tmp').write_text(str(os.getpid())); (d / 'step.tmp').rename(d / 'step.pid')\n"
        "deadline = time.time() + 60\n"
        "while not (d / 'done').exists() and time.time() < deadline:\n    time.sleep(0.02)\n")


def fake_agent(tmp_path: Path, step_env: dict[str, str], *, detached: bool) -> subprocess.Popen:
    """An agent that runs one step once `go` exists: detached as durable-task launches a pipeline `sh`
    step (`nohup sh -c '(wrapper) >&- 2>&- &'`: the outer shell exits at once, the wrapper is
    reparented away from the agent), or as a child it waits for (a freestyle build step)."""
    step = f"{shlex.quote(sys.executable)} -c {shlex.quote(STEP.format(dir=str(tmp_path)))}"
    if detached:
        cmd = ["nohup", "sh", "-c", f"({step}; echo $? > {shlex.quote(str(tmp_path / 'result'))}) >&- 2>&- &"]
    else:
        cmd = ["sh", "-c", step]
    code = ("import os, pathlib, subprocess, sys, time\n"
            f"go = pathlib.Path({str(tmp_path / 'go')!r})\n"
            "print('up', flush=True)\n"
            "while not go.exists():\n    time.sleep(0.02)\n"
            f"subprocess.run({cmd!r}, env=dict(os.environ, **{step_env!r}), stdout=subprocess.DEVNULL)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n"
    (tmp_path / "agent.pid").write_text(str(proc.pid))
    return proc


def start_step(tmp_path: Path) -> int:
    (tmp_path / "go").touch()
    deadline = time.monotonic() + 10
    while not (tmp_path / "step.pid").exists():
        assert time.monotonic() < deadline, "the step did not start"
        time.sleep(0.02)
    return int((tmp_path / "step.pid").read_text())


def end_step(tmp_path: Path, pid: int) -> None:
    (tmp_path / "done").touch()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
        assert time.monotonic() < deadline, "the step did not end"
        time.sleep(0.02)
    time.sleep(0.1)                                   # its wrapper shell writes the result and exits


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def cleanup(agent: subprocess.Popen, tmp_path: Path) -> None:
    (tmp_path / "done").touch()                       # the step's own exit (a detached one included)
    try:
        os.kill(int((tmp_path / "step.pid").read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass
    agent.kill()
    agent.wait(5)


def watcher(tmp_path: Path, now: list[float], probe: Any = None, **kw: Any) -> Watcher:
    probe = probe or BuildProbe(names=(COOKIE,), own_environ={}, docker_client=lambda: NO_BUILDS)
    return Watcher(WatchSettings(idle_timeout_s=60, agent_pid_file=tmp_path / "agent.pid", state_dir=tmp_path),
                   clock=lambda: now[0], out=kw.pop("out", lambda _: None), docker_client=lambda: NO_BUILDS,
                   probe=probe, **kw)


# ---- pipeline and freestyle builds, real processes ---------------------------------------------------

def test_a_detached_pipeline_step_with_the_build_cookie_keeps_the_agent_busy(tmp_path):
    agent = fake_agent(tmp_path, {COOKIE: "durable-" + uuid.uuid4().hex[:32]}, detached=True)
    try:
        now = [0.0]
        w = watcher(tmp_path, now)
        assert w.check() is None and w.busy is None           # the agent alone: idle from 0
        step = start_step(tmp_path)
        deadline = time.monotonic() + 5
        while agent_has_children(agent.pid):                      # the launching shell exits at once
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert _state(step) in "RS"                          # detached: the old check saw nothing
        for now[0] in (30.0, 61.0, 1000.0):                  # a long step: never idle
            assert w.check() is None
            assert w.busy and w.busy.startswith("build process ") and w._idle_since is None
        end_step(tmp_path, step)
        assert (tmp_path / "result").read_text().strip() == "0"
        now[0] = 1001.0
        assert w.check() is None and w.busy is None           # the idle timer starts again here
        now[0] = 1060.0
        assert w.check() is None
        now[0] = 1061.0
        assert w.check() == ("idle", {"idle_s": 60})
    finally:
        cleanup(agent, tmp_path)


def test_a_detached_process_without_the_cookie_is_no_build_idle_after_the_timeout(tmp_path):
    agent = fake_agent(tmp_path, {}, detached=True)
    try:
        now = [0.0]
        w = watcher(tmp_path, now)
        start_step(tmp_path)
        assert w.check() is None and w.busy is None
        now[0] = 59.0
        assert w.check() is None
        now[0] = 61.0
        reason, detail = w.check()
        assert reason == "idle" and detail == {"idle_s": 61}
        w.stop(reason, detail)
        assert agent.wait(5) == -signal.SIGTERM              # the agent is stopped; the bootstrap shuts down
    finally:
        cleanup(agent, tmp_path)


def test_a_freestyle_step_is_a_child_of_the_agent_and_keeps_it_busy_without_any_cookie(tmp_path):
    agent = fake_agent(tmp_path, {}, detached=False)
    try:
        now = [0.0]
        w = watcher(tmp_path, now)
        assert w.check() is None and w.busy is None
        step = start_step(tmp_path)
        now[0] = 100.0
        assert w.check() is None and w.busy == "a process of the agent"
        end_step(tmp_path, step)
        now[0] = 101.0
        assert w.check() is None and w.busy is None
        now[0] = 161.0
        assert w.check() == ("idle", {"idle_s": 60})
    finally:
        cleanup(agent, tmp_path)


def test_the_jenkins_cookies_are_read_from_the_real_proc(tmp_path):
    """Jenkins' own names on a real detached process: found (no hermetic idle check here: any other
    process with a Jenkins cookie on this machine would count too)."""
    node = str(uuid.uuid4())
    agent = fake_agent(tmp_path, {"JENKINS_NODE_COOKIE": node, "JENKINS_SERVER_COOKIE": "durable-0a1b2c3d"},
                       detached=True)
    try:
        step = start_step(tmp_path)
        found = list(build_processes(ignore={agent.pid}, own={}))
        assert step in found
        assert step not in build_processes(own={"JENKINS_NODE_COOKIE": node})    # the watcher's own build
        probe = BuildProbe(own_environ={}, docker_client=lambda: NO_BUILDS)
        assert (probe(agent.pid) or "").startswith("build process ")
    finally:
        cleanup(agent, tmp_path)


# ---- the environment rules, on a /proc of files ------------------------------------------------------

def fake_proc(root: Path, entries: dict[str, bytes | None]) -> Path:
    for name, environ in entries.items():
        (root / name).mkdir(parents=True)
        if environ is not None:
            (root / name / "environ").write_bytes(environ)
    return root


def test_which_environments_are_a_build(tmp_path):
    proc = fake_proc(tmp_path / "proc", {
        "1": b"PATH=/usr/bin\0HOME=/root\0",                                          # init, the agent's peers
        "2": b"",                                                                     # a kernel thread
        "10": b"JENKINS_SERVER_COOKIE=5f0c9e1d\0JOB_NAME=train\0BUILD_ID=7\0",          # freestyle step
        "11": b"JENKINS_NODE_COOKIE=6c1f-uuid\0JENKINS_SERVER_COOKIE=durable-ab12\0",   # pipeline sh script
        "12": b"JENKINS_NODE_COOKIE=6c1f-uuid\0JENKINS_SERVER_COOKIE=please-do-not-kill-me\0",  # its wrapper
        "20": b"JENKINS_NODE_COOKIE=dontKillMe\0JENKINS_SERVER_COOKIE=durable-ab12\0",  # left behind on purpose
        "21": b"BUILD_ID=DontKillMe\0JENKINS_SERVER_COOKIE=5f0c9e1d\0",                 # the freestyle way
        "30": b"JENKINS_NODE_COOKIE=ci-uuid\0JENKINS_SERVER_COOKIE=please-do-not-kill-me\0",  # the watcher's build
        "31": None,                                                                   # unreadable, or gone
        "40": b"NOTE=JENKINS_NODE_COOKIE=x\0",                                        # the name, not the variable
        "41": b"JENKINS_NODE_COOKIE=\0",                                              # empty
        "self": b"JENKINS_NODE_COOKIE=6c1f-uuid\0",                                   # not a pid
    })
    own = {"JENKINS_NODE_COOKIE": "ci-uuid", "JENKINS_SERVER_COOKIE": "durable-ci", "PATH": "/bin"}
    assert BUILD_COOKIES == ("JENKINS_SERVER_COOKIE", "JENKINS_NODE_COOKIE")
    assert sorted(build_processes(proc, own=own)) == [10, 11, 12]
    assert sorted(build_processes(proc, own={})) == [10, 11, 12, 30]
    assert sorted(build_processes(proc, own=own, ignore={10, 12})) == [11]
    assert list(build_processes(tmp_path / "no-proc")) == []
    probe = BuildProbe(proc_root=proc, own_environ=own, has_children=lambda pid: False,
                       docker_client=lambda: NO_BUILDS)
    assert probe(10) in ("build process 11", "build process 12")      # the agent itself is never one


def test_nothing_but_idle_processes_is_idle(tmp_path):
    proc = fake_proc(tmp_path / "proc", {"1": b"PATH=/usr/bin\0", "20": b"JENKINS_NODE_COOKIE=dontKillMe\0"})
    probe = BuildProbe(proc_root=proc, own_environ={}, has_children=lambda pid: False,
                       docker_client=lambda: NO_BUILDS)
    assert probe(1) is None


# ---- provisioner run containers ------------------------------------------------------------------

def container(name: str, host: str, pid: int, started: float | None) -> SimpleNamespace:
    labels = {"provisioner:kind": "run", "provisioner:owner": f"{host}:{pid}"}
    if started is not None:
        labels["provisioner:owner-started"] = f"{started:.2f}"
    return SimpleNamespace(name=name, id=name + "0" * 12, labels=labels)


def engine(containers: list[SimpleNamespace], calls: list[dict] | None = None) -> SimpleNamespace:
    def list_(**kw: Any) -> list[SimpleNamespace]:
        if calls is not None:
            calls.append(kw)
        return containers
    return SimpleNamespace(containers=SimpleNamespace(list=list_))


def test_a_run_container_of_this_host_with_a_live_owner_is_a_build(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(5)
    try:
        started = process_started(owner.pid)
        calls: list[dict] = []
        other_host = container("other", "elsewhere", owner.pid, started)
        orphan = container("orphan", "agent-host", dead.pid, None)
        reused = container("reused", "agent-host", owner.pid, started - 100)          # pid of a younger process
        mine = container("train-42", "agent-host", owner.pid, started)
        kw = dict(proc_root=tmp_path / "no-proc", hostname="agent-host", has_children=lambda pid: False)
        assert BuildProbe(docker_client=lambda: engine([other_host, orphan, reused], calls), **kw)(1) is None
        assert calls == [{"ignore_removed": True, "filters": {"label": "provisioner:kind=run"}}]
        assert BuildProbe(docker_client=lambda: engine([orphan, mine]), **kw)(1) == "build container train-42"
        now = [0.0]
        w = watcher(tmp_path, now, probe=BuildProbe(docker_client=lambda: engine([mine]), **kw))
        (tmp_path / "agent.pid").write_text("1")
        now[0] = 1000.0
        assert w.check() is None and w._idle_since is None
    finally:
        owner.kill()
        owner.wait(5)


def test_no_engine_is_asked_again_only_after_a_minute(tmp_path):
    now = [0.0]
    made: list[float] = []

    def factory() -> Any:
        made.append(now[0])
        raise ConnectionError("no docker socket")
    probe = BuildProbe(proc_root=tmp_path, has_children=lambda pid: False, docker_client=factory,
                       clock=lambda: now[0])
    for now[0] in (0.0, 5.0, 59.0, 60.0, 65.0):
        assert probe(1) is None
    assert made == [0.0, 60.0]

    def gone(**_: Any) -> list:
        raise ConnectionError("engine gone")
    broken = SimpleNamespace(containers=SimpleNamespace(list=gone))
    made.clear()
    probe = BuildProbe(proc_root=tmp_path, has_children=lambda pid: False, clock=lambda: now[0],
                       docker_client=lambda: made.append(now[0]) or broken)
    for now[0] in (100.0, 105.0, 160.0):
        assert probe(1) is None
    assert made == [100.0, 160.0]                   # the client is made anew after the failure


def test_a_broken_probe_falls_back_to_the_agents_children_and_warns_once(tmp_path):
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "agent.pid").write_text(str(agent.pid))

        def probe(pid: int) -> str | None:
            raise RuntimeError("boom")
        out: list[str] = []
        now = [0.0]
        w = watcher(tmp_path, now, probe=probe, out=out.append)
        assert w.check() is None
        now[0] = 61.0
        assert w.check() == ("idle", {"idle_s": 61})
        assert out == ["provisioner-watcher: warning: build probe: RuntimeError: boom"]
    finally:
        agent.kill()
        agent.wait(5)


def test_the_default_watcher_probes_with_the_jenkins_cookies(tmp_path, monkeypatch):
    monkeypatch.setenv("JENKINS_NODE_COOKIE", "outer-build")
    w = Watcher(WatchSettings(idle_timeout_s=60, agent_pid_file=tmp_path / "agent.pid", state_dir=tmp_path),
                out=lambda _: None, docker_client=lambda: NO_BUILDS)
    probe = w._probe
    assert isinstance(probe, BuildProbe) and probe.names == BUILD_COOKIES
    assert probe._own["JENKINS_NODE_COOKIE"] == "outer-build"          # its own build is not a build
    assert probe._docker() is NO_BUILDS
