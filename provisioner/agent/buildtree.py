"""Which processes and containers of this instance are the build, and what they use right now.

The build is measured from the **process tree**, not a cgroup: on the docker cloud every process of
the instance (agent, watcher, build) shares one container cgroup, and on EC2 the build's processes
live in the agent's service cgroup with the agent itself. A process belongs to the build when
- its environment carries a Jenkins build cookie (`JENKINS_SERVER_COOKIE`, `JENKINS_NODE_COOKIE`:
  every `sh` step and what it starts, also the detached durable-task ones), as `watcher.BuildProbe`
  finds builds; or
- it descends from the agent JVM (a freestyle step whose environment was scrubbed).
Never counted: the agent JVM itself, the watcher (this process), processes that opted out with
dontKillMe, and processes sharing the watcher's own cookie. Containers the build starts are not in
this tree (another PID namespace on the docker cloud; children of containerd on EC2): they are
counted from the engine's stats, those owned by this host's `provisioner run` processes
(`provisioner:owner=<hostname>:<pid>`) and those labelled `provisioner:node=<this node>`, the
instance's own container excepted.

CPU is summed from each process' own user+system time (/proc/PID/stat), as the difference between
two looks; a process that ends between two looks loses at most one interval of its time. Memory is
the sum of the processes' resident sets (shared pages count once per process: an upper bound).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from provisioner.agent.procs import BUILD_COOKIES, build_environ

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
CONTAINERS_EVERY_S = 5.0             # the engine is asked for new build containers this often


@dataclass(frozen=True)
class Look:
    """One look at the build: CPU seconds used since the last look, memory in use now, how many of
    its processes and containers run, and the first build process' environment seen (or None)."""

    cpu_s: float
    mem_bytes: int
    processes: int
    containers: int
    environ: Mapping[str, str] | None = None
    first_start: float | None = None         # epoch start of the oldest build process seen

    @property
    def running(self) -> bool:
        return bool(self.processes or self.containers)


def read_stat(proc_root: str, pid: str) -> tuple[int, int, int, int] | None:
    """(ppid, user+system ticks, start time in ticks, resident pages) of one process, or None."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()      # the command name may hold spaces
        return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19]), int(fields[21])
    except (OSError, ValueError, IndexError):
        return None


def boot_time(proc_root: str, now: float | None = None) -> float | None:
    """The kernel's boot time in epoch seconds: process start ticks count from it.

    From /proc/uptime (to a hundredth of a second): /proc/stat's btime is whole seconds, cut
    down, so a start time built on it can be up to a second early, and a five-second build's
    CPU average a fifth too low. btime where uptime cannot be read."""
    try:
        with open(f"{proc_root}/uptime", "rb") as f:
            return (time.time() if now is None else now) - float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"{proc_root}/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class ProcessTree:
    """The build's processes, looked at every interval; classification is cached per process."""

    def __init__(self, proc_root: str | Path = "/proc", names: tuple[str, ...] = BUILD_COOKIES,
                 own_environ: Mapping[str, str] | None = None, self_pid: int | None = None):
        self.proc_root, self.names = str(proc_root), names
        own = os.environ if own_environ is None else own_environ
        self._mine = {(n, own[n]) for n in names if own.get(n)}
        self.self_pid = os.getpid() if self_pid is None else self_pid
        self._kind: dict[tuple[int, int], dict[str, str] | None] = {}   # (pid, start) -> env or None
        self._cpu: dict[tuple[int, int], int] = {}
        self._boot = boot_time(self.proc_root)

    def _classify(self, pid: str) -> dict[str, str] | None:
        try:
            with open(f"{self.proc_root}/{pid}/environ", "rb") as f:
                data = f.read()
        except OSError:                      # gone, or another user's: not ours to count
            return None
        if not any(n.encode() + b"=" in data for n in self.names):
            return None
        return build_environ(data, self.names, self._mine)

    def look(self, agent_pid: int | None) -> Look:
        try:
            pids = [p for p in os.listdir(self.proc_root) if p.isdigit()]
        except OSError:
            return Look(0.0, 0, 0, 0)
        stats = {int(p): s for p in pids if (s := read_stat(self.proc_root, p)) is not None}
        parents = {pid: s[0] for pid, s in stats.items()}
        skip = {self.self_pid} | ({agent_pid} if agent_pid else set())
        kind: dict[tuple[int, int], dict[str, str] | None] = {}
        cpu: dict[tuple[int, int], int] = {}
        used = rss = count = 0
        environ, oldest = None, None
        for pid, (_, ticks, start, pages) in stats.items():
            if pid in skip:
                continue
            ident = (pid, start)
            env = self._kind[ident] if ident in self._kind else self._classify(str(pid))
            kind[ident] = env
            if env is None and not (agent_pid and _descends(pid, agent_pid, parents)):
                continue
            environ = environ or env
            oldest = start if oldest is None else min(oldest, start)
            count += 1
            rss += pages * PAGE
            cpu[ident] = ticks
            # A process new since the last look started within the interval (or, at the first look,
            # since the build began: the build starts at its oldest process): all its time is new.
            used += ticks - self._cpu.get(ident, 0)
        self._kind, self._cpu = kind, cpu
        first = self._boot + oldest / TICKS if oldest is not None and self._boot else None
        return Look(max(0, used) / TICKS, rss, count, 0, environ, first)


def _descends(pid: int, ancestor: int, parents: Mapping[int, int]) -> bool:
    for _ in range(64):                   # a cycle cannot happen in /proc; a bound all the same
        pid = parents.get(pid, 0)
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


class BuildContainers:
    """Containers the build started, followed with the engine's stats stream (runner/sampler.py)."""

    def __init__(self, client: Callable[[], Any], node: str | None, hostname: str | None = None,
                 every_s: float = CONTAINERS_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self._client_factory, self.node = client, node
        self.hostname = hostname or socket.gethostname()
        self.every_s, self._clock = every_s, clock
        self._client: Any = None
        self._due = 0.0
        self._samplers: dict[str, Any] = {}

    def _listed(self) -> list[Any]:
        if self._client is None:
            self._client = self._client_factory()
        found = {}
        filters = [{"label": "provisioner:kind=run"}]
        if self.node:
            filters.append({"label": f"provisioner:node={self.node}"})
        for f in filters:
            for c in self._client.containers.list(ignore_removed=True, filters=f):
                labels = c.labels or {}
                if labels.get("provisioner:kind") == "instance":
                    continue                  # the instance itself: its processes are the tree
                owner = labels.get("provisioner:owner", "").rpartition(":")[0]
                if labels.get("provisioner:kind") == "run" and owner != self.hostname \
                        and labels.get("provisioner:node") != self.node:
                    continue
                found[c.id] = c
        return list(found.values())

    def look(self) -> tuple[float, int, int]:
        """(CPU % now, memory bytes now, containers running), summed over the build's containers."""
        from provisioner.runner.sampler import StatsSampler
        now = self._clock()
        if now >= self._due:
            self._due = now + self.every_s
            try:
                listed = {c.id for c in self._listed()}
            except Exception:                 # no engine, no SDK: try again later
                self._client, listed = None, set(self._samplers)
            for cid in list(self._samplers):
                if cid not in listed:
                    self._samplers.pop(cid).stop()
            for cid in listed - set(self._samplers):
                self._samplers[cid] = StatsSampler(self._client.api, cid).start()
        cpu = mem = running = 0
        for sampler in self._samplers.values():
            if not sampler.thread.is_alive():
                continue                      # its stream ended with the container
            running += 1
            cpu += sampler.usage.latest_cpu_pct or 0.0
            mem += sampler.usage.latest_mem_bytes or 0
        return cpu, mem, running

    def close(self) -> None:
        for sampler in self._samplers.values():
            sampler.stop()
        self._samplers.clear()
