"""Owner labels on every container `provisioner run` starts, and removal of what a dead owner left.

Every exit path removes the container at once, except a SIGKILL of provisioner itself. For that
case each container carries `provisioner:owner=<hostname>:<pid>` and the owner's process start time;
the next `provisioner run` on the same host removes containers whose owner process is gone (or whose
pid now belongs to a younger process). Containers of other hosts, and containers without
`provisioner:kind=run` (e.g. docker-cloud instances, whose owner is a daemon id), are never touched.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

from provisioner.runner import LazyLogger

log = LazyLogger(__name__)

KIND_LABEL, KIND = "provisioner:kind", "run"
OWNER_LABEL = "provisioner:owner"
OWNER_STARTED_LABEL = "provisioner:owner-started"
RUN_ID_LABEL = "provisioner:run-id"
JOB_LABEL, BUILD_LABEL = "provisioner:job", "provisioner:build"


@dataclass(frozen=True)
class Owner:
    """This process: host name, pid and process start time (epoch seconds, as psutil reports)."""

    hostname: str
    pid: int
    started: float

    @classmethod
    def current(cls) -> "Owner":
        return cls(socket.gethostname(), os.getpid(), process_started(os.getpid()) or 0.0)

    @property
    def label(self) -> str:
        return f"{self.hostname}:{self.pid}"


def process_started(pid: int) -> float | None:
    """The start time of a live process, None when there is no such process.

    On Linux read from /proc with psutil's own formula (boot time + start ticks / clock ticks), so
    labels written by either agree: importing psutil would cost every run ~20 ms of start-up."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
        ticks = int(stat[stat.rfind(b")") + 2:].split()[19])
        return ticks / os.sysconf("SC_CLK_TCK") + boot
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # /proc works: no such process
    except PermissionError:
        return -1.0  # alive, but not ours to inspect
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return _psutil_started(pid)


def _psutil_started(pid: int) -> float | None:
    import psutil
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return -1.0  # alive, but not ours to inspect


def owner_alive(pid: int, started: float | None) -> bool:
    """True while the owner's pid runs the same process (same start time, within 1 s)."""
    now_started = process_started(pid)
    if now_started is None:
        return False
    if now_started < 0 or not started:
        return True
    return abs(now_started - started) < 1.0


def run_labels(owner: Owner, run_id: str, job: str, build: str | None) -> dict[str, str]:
    labels = {KIND_LABEL: KIND, OWNER_LABEL: owner.label, OWNER_STARTED_LABEL: f"{owner.started:.2f}",
              RUN_ID_LABEL: run_id, JOB_LABEL: job}
    if build:
        labels[BUILD_LABEL] = build
    return labels


def _parse_owner(labels: dict[str, str]) -> tuple[str, int, float | None] | None:
    host, sep, pid = labels.get(OWNER_LABEL, "").rpartition(":")
    if not sep or not pid.isdigit():
        return None
    try:
        started: float | None = float(labels.get(OWNER_STARTED_LABEL, ""))
    except ValueError:
        started = None
    return host, int(pid), started


def reap_orphans(engine: Any, owner: Owner,
                 alive: Callable[[int, float | None], bool] = owner_alive) -> list[str]:
    """Remove this host's run containers whose owner process is dead; return their names.
    `engine` lists and removes containers (engine.py)."""
    removed = []
    for container in engine.list_containers(f"{KIND_LABEL}={KIND}"):
        parsed = _parse_owner(container.get("Labels") or {})
        if parsed is None:
            continue
        host, pid, started = parsed
        if host != owner.hostname or (pid == owner.pid and started == round(owner.started, 2)):
            continue
        if alive(pid, started):
            continue
        names = container.get("Names") or []
        name = names[0].lstrip("/") if names else container["Id"][:12]
        try:
            engine.remove_container(container["Id"], force=True)
            removed.append(name)
            log.info("removed container %s left by dead owner %s:%s", name, host, pid)
        except Exception as exc:  # another run may be removing it at the same time
            log.debug("could not remove orphan %s: %s", name, exc)
    return removed
