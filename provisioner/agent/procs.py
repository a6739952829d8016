"""Process facts the instance-side watcher, the build-start signal and the build's usage sampler
all read (kept apart so none of them imports agent/watcher, which starts them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Container, Iterator, Mapping


def read_pid(path: Path | None) -> int | None:
    try:
        return int(path.read_text().strip()) if path else None
    except (OSError, ValueError):
        return None


def agent_has_children(pid: int) -> bool:
    try:
        import psutil
        return bool(psutil.Process(pid).children())
    except Exception:
        return False


# Set by Jenkins in the environment of every process a build starts on an agent, and of nothing else:
# - JENKINS_SERVER_COOKIE: Job#getCharacteristicEnvVars (core), in every build's environment (a
#   freestyle `Execute shell` has the server's cookie); durable-task's FileMonitoringTask overrides it
#   for each pipeline `sh` step (`durable-<digest of the workspace>`; the launcher wrapper itself gets
#   `please-do-not-kill-me` in current versions).
# - JENKINS_NODE_COOKIE: workflow-durable-task-step's ExecutorStepExecution, a UUID per node() body.
# Jenkins' own ProcessTree finds a build's processes the same way (/proc/PID/environ on Linux), so it
# can kill them when the build ends: the cookies survive `nohup`, `setsid` and double forks, which is
# how durable-task starts a pipeline step (`nohup sh -c '(wrapper ...) >&- 2>&- &'`, or its
# durable_task_monitor binary with -daemon): detached, no child of agent.jar.
BUILD_COOKIES = ("JENKINS_SERVER_COOKIE", "JENKINS_NODE_COOKIE")
# A process a build deliberately leaves behind (Jenkins' documented escape from its process killer:
# BUILD_ID=dontKillMe for freestyle, JENKINS_NODE_COOKIE=dontKillMe for pipelines) is no build.
KEEP_ALIVE_VARS, KEEP_ALIVE_VALUE = ("BUILD_ID", "JENKINS_NODE_COOKIE"), "dontkillme"


def _alive(pid: int) -> bool:
    try:
        import psutil
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:  # psutil.NoSuchProcess, or psutil missing: fall back to a signal 0 probe
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def _environ(data: bytes) -> dict[str, str]:
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def build_processes(proc_root: str | Path = "/proc", names: tuple[str, ...] = BUILD_COOKIES,
                    own: Mapping[str, str] | None = None, ignore: Container[int] = ()) -> Iterator[int]:
    """The pids of processes of a build, found by the build cookies (`names`) in their environment.

    Reads /proc/PID/environ (the environment the process was started with) of every process it may
    read: unreadable ones (another user's, as non-root; gone) are skipped, and the read is only parsed
    when a cookie's name is in it. Not counted: a process that shares a cookie (same name and value)
    with `own`, the watcher's own environment (a watcher started inside a build, as in this project's
    CI, must not count its own build), and one that opted out of the build with dontKillMe."""
    own = os.environ if own is None else own
    mine = {(n, own[n]) for n in names if own.get(n)}
    needles = [n.encode() + b"=" for n in names]
    try:
        entries = list(os.scandir(proc_root))
    except OSError:                                   # no /proc (not Linux): the other checks remain
        return
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) in ignore:
            continue
        try:
            with open(os.path.join(entry.path, "environ"), "rb") as f:
                data = f.read()
        except OSError:
            continue
        if any(needle in data for needle in needles) and build_environ(data, names, mine) is not None:
            yield int(entry.name)


def build_environ(data: bytes, names: tuple[str, ...], mine: set[tuple[str, str]]) -> dict[str, str] | None:
    """The environment of a build's process (`data`: its /proc/PID/environ), or None when it is
    none: no cookie of `names`, a cookie shared with `mine` (the watcher's own), or dontKillMe."""
    env = _environ(data)
    cookies = {(n, env[n]) for n in names if env.get(n)}
    if not cookies or cookies & mine:
        return None
    if any(env.get(k, "").lower() == KEEP_ALIVE_VALUE for k in KEEP_ALIVE_VARS):
        return None
    return env


def _docker_from_env(**kwargs: Any) -> Any:
    import docker
    return docker.from_env(**kwargs)
