"""Agent mode: one usage record (`kind: build`) for the build this agent ran, whatever it ran.

A thread of the watcher looks at the build every `interval_s` (1 s) from the moment its first
process shows (provisioner/agent/buildtree.py says which processes and containers count) and keeps
CPU % (100 = one vCPU busy), memory average and peak, and GPU figures through NVML when the instance
has GPUs (runner/gpu.py; whole-device figures: the build is the instance's only GPU user). It posts
ONE record to the daemon's /v1/usage with the runner's client (retried, spooled to disk and re-sent
when the daemon is away; provisioner/runner/daemon_client.py), when
- the watcher is told to quit (the agent exited: the daemon deleted the node after the build, or the
  instance is being stopped). A build still running then is cut short: `interrupted`, ABORTED;
- the agent process is gone while the build runs (disconnected, killed): `interrupted`, what was
  seen up to then;
- no build process or container was seen for `end_quiet_s` (an agent the daemon left running).
The daemon takes job and build from what it saw run on this node (never from the body), and the
result from Jenkins where it can read it. Until then the record carries the watcher's own reading of
the build's durable-task result files (`<workspace>@tmp/durable-*/jenkins-result.txt`: a missing
file or 130/137/143 is ABORTED, another non-zero code FAILURE, else SUCCESS; a freestyle build leaves
none and reads as SUCCESS). Exit code mapping (the usage record's contract): SUCCESS and UNSTABLE 0,
FAILURE 1, ABORTED 130 with `interrupted`, NOT_BUILT 125.

The record's run_id is `PROVISIONER_BUILD_RUN_ID` (the bootstrap exports it to the agent, so every
`provisioner run` inside the build names it as its `parent_run_id`), else a new UUID.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from provisioner.agent.buildtree import BuildContainers, Look, ProcessTree
from provisioner.agent.procs import _alive, read_pid
from provisioner.runner.sampler import Frame, UsageAccumulator

BUILD_RUN_ID_ENV = "PROVISIONER_BUILD_RUN_ID"
INTERVAL_S = 1.0
END_QUIET_S = 600.0
EXIT_CODES = {"SUCCESS": 0, "UNSTABLE": 0, "FAILURE": 1, "ABORTED": 130, "NOT_BUILT": 125}
KILLED = frozenset({130, 137, 143, -1, -2})


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def result_of_steps(work_dir: Path | None, since: float) -> str:
    """The build's result as its durable-task control files tell it (see the module's docstring)."""
    codes: list[int | None] = []
    for control in (work_dir / "workspace").glob("*@tmp/durable-*") if work_dir else ():
        try:
            if control.stat().st_mtime < since - 1.0:
                continue                      # an older build's (a reused workspace)
            text = (control / "jenkins-result.txt").read_text().strip()
            codes.append(int(text))
        except FileNotFoundError:
            codes.append(None)                # the wrapper itself was killed
        except (OSError, ValueError):
            continue
    if any(c is None or c in KILLED for c in codes):
        return "ABORTED"
    return "FAILURE" if any(codes) else "SUCCESS"


class BuildUsage:
    """Samples the build and posts its record once. `post(record)` sends it (Reporter.report)."""

    def __init__(self, post: Callable[[dict], None], *, agent_pid_file: Path | None, work_dir: Path | None,
                 environ: Mapping[str, str], tree: ProcessTree | None = None,
                 containers: BuildContainers | None = None, gpu: Any = None,
                 interval_s: float = INTERVAL_S, end_quiet_s: float = END_QUIET_S,
                 clock: Callable[[], float] = time.time, out: Callable[[str], None] | None = None):
        self._post, self.agent_pid_file, self.work_dir = post, agent_pid_file, work_dir
        self.environ = dict(environ)
        self.tree = tree or ProcessTree()
        self.containers = containers
        self._gpu_factory = gpu
        self.interval_s, self.end_quiet_s, self.clock = interval_s, end_quiet_s, clock
        self._out = out or (lambda line: print(line, flush=True))
        self.run_id = self.environ.get(BUILD_RUN_ID_ENV) or str(uuid.uuid4())
        self.usage = UsageAccumulator()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.started: float | None = None
        self.last_seen: float | None = None
        self._gone: float | None = None      # the first look that saw nothing after last_seen
        self.identity: Mapping[str, str] | None = None
        self._cpu_s = 0.0
        self._looked: float | None = None
        self._gpu: Any = None
        self._agent_seen = False
        self.record: dict | None = None      # once posted
        self._began = clock()
        self.thread: threading.Thread | None = None

    # -- looking --------------------------------------------------------------------------------
    def look(self) -> Look:
        """One look; starts the build's clock at its first process. Returns what was seen."""
        now = self.clock()
        agent = read_pid(self.agent_pid_file)
        seen = self.tree.look(agent)
        cpu_pct = mem = running = 0
        if self.containers is not None and (self.started is not None or seen.running):
            cpu_pct, mem, running = self.containers.look()
        with self._lock:
            if self.record is not None:
                return seen
            if self.started is None and (seen.running or running):
                # from the oldest build process' own start (the look may come up to an interval late)
                self.started = min(now, seen.first_start) if seen.first_start and seen.first_start > now - 60 else now
                self._start_gpu()
                if now - self.started >= 0.2:            # what ran before this look is in its first interval
                    self.usage.add(Frame(self.started, 0, None))
                    self._looked = self.started
            if self.started is not None:
                if seen.running or running:
                    self.last_seen, self._gone = now, None
                elif self._gone is None and self.last_seen is not None:
                    self._gone = now                 # it ended between last_seen and this look
                self.identity = self.identity or seen.environ
                wall = now - self._looked if self._looked is not None else 0.0
                self._looked = now
                self._cpu_s += seen.cpu_s + cpu_pct / 100.0 * wall
                if seen.running or running:          # a pause between steps is no sample of the build
                    self.usage.add(Frame(now, int(self._cpu_s * 1e9), seen.mem_bytes + mem))
            self._agent_seen = self._agent_seen or agent is not None
        return Look(seen.cpu_s, seen.mem_bytes + mem, seen.processes, running, seen.environ)

    def _unseen_build(self) -> None:
        """A build that ran between two looks: its time from the durable-task control dirs made since
        this sampler began (created: start; last log or result write: end) and its job from their
        workspace's name; no figures. Nothing when there are none (a freestyle build)."""
        starts, ends, job = [], [], None
        for control in (self.work_dir / "workspace").glob("*@tmp/durable-*") if self.work_dir else ():
            try:
                times = [f.stat().st_mtime for f in control.iterdir()] or [control.stat().st_mtime]
                if max(times) < self._began:
                    continue
                starts.append(min(times))                  # script.sh: written as the step starts
                ends.append(max(times))
                job = job or control.parent.name[:-len("@tmp")]
            except OSError:
                continue
        if starts:
            self.started, self.last_seen = min(starts), max(ends)
            self.identity = self.identity or {"JOB_NAME": job or "unknown"}

    def _start_gpu(self) -> None:
        try:
            if self._gpu_factory is not None:
                gpu = self._gpu_factory()
            else:
                from provisioner.runner.gpu import NvmlSampler
                gpu = NvmlSampler(interval_s=self.interval_s)
            self._gpu = gpu if gpu.start() else None
        except Exception:                     # GPUs are a bonus, never a failure
            self._gpu = None

    # -- the record -----------------------------------------------------------------------------
    def finish(self, why: str, interrupted: bool = False) -> dict | None:
        """Build the record and post it, once; None when no build was seen."""
        with self._lock:
            if self.started is None:
                self._unseen_build()
            if self.record is not None or self.started is None:
                return None
            end = self.clock() if interrupted else max(self._end(), self.started)
            result = "ABORTED" if interrupted else result_of_steps(self.work_dir, self.started)
            gpu = self._gpu.stop() if self._gpu is not None else {}
            self.record = self._record(self.started, end, result, gpu)
        self._out(f"provisioner-watcher: build {self.record['job']} #{self.record['build'] or '?'} "
                  f"ended ({why}): {result}, usage record {self.run_id}")
        try:
            self._post(self.record)
        except Exception as exc:              # the client spools; nothing here may stop the watcher
            self._out(f"provisioner-watcher: warning: build record not posted: {type(exc).__name__}: {exc}")
        return self.record

    def _end(self) -> float:
        """The build's end: between the last look that saw it and the first that did not, so the
        middle (off by at most half a look); the last look that saw it where no later look was."""
        last = self.last_seen if self.last_seen is not None else self.started
        return (last + self._gone) / 2 if self._gone is not None else last

    def _record(self, start: float, end: float, result: str, gpu: Mapping[str, Any]) -> dict:
        from provisioner import records
        from provisioner.runner.instance_price import resolve_pricing
        ident = {**self.environ, **(self.identity or {})}
        try:
            pricing = resolve_pricing(None, self.environ, is_ec2=lambda: False)
        except Exception:
            from provisioner.runner.instance_price import Pricing
            pricing = Pricing()
        duration = round(max(0.0, end - start), 3)
        figures = self.usage.summary()
        record = {
            "kind": "build", "job": ident.get("JOB_NAME") or "unknown", "build": ident.get("BUILD_NUMBER"),
            "run_id": self.run_id, "start": iso(start), "duration_s": duration,
            "result": result, "exit_code": EXIT_CODES[result], "interrupted": result == "ABORTED",
            "instance_type": pricing.instance_type, "region": pricing.region, "market": pricing.market,
            "vcpu": pricing.vcpu, **figures,
            "gpu_count": gpu.get("gpu_count"), "gpu_util_avg_pct": gpu.get("gpu_util_avg_pct"),
            "gpu_util_max_pct": gpu.get("gpu_util_max_pct"), "gpu_mem_max_bytes": gpu.get("gpu_mem_max_bytes"),
            "price_usd_per_hour": pricing.price_usd_per_hour,
            "ondemand_usd_per_hour": pricing.ondemand_usd_per_hour, "cost_usd": pricing.cost(duration),
            "requested": self.environ.get("PROVISIONER_REQUESTED") or None,
            "team": self.environ.get("PROVISIONER_TEAM") or None,
            "node": ident.get("NODE_NAME") or self.environ.get("PROVISIONER_NODE_NAME") or None,
            "queue_id": self.environ.get("PROVISIONER_QUEUE_ID") or None,
            "measured": "process tree and build containers",
        }
        return records.normalise(record)

    # -- the thread -----------------------------------------------------------------------------
    def run(self) -> None:
        try:
            # Before the build shows, look 4x as often: a build shorter than a look still gets its start.
            while not self._stop.wait(self.interval_s if self.started is not None else self.interval_s / 4):
                seen = self.look()
                now = self.clock()
                if self.started is None:
                    continue
                agent = read_pid(self.agent_pid_file)
                if self._agent_seen and (agent is None or not _alive(agent)) and seen.running:
                    self.finish("the agent is gone", interrupted=True)
                    return
                if self.last_seen is not None and now - self.last_seen >= self.end_quiet_s:
                    self.finish(f"no build process for {self.end_quiet_s:g} s")
                    return
        except Exception as exc:              # never into the watcher
            self._out(f"provisioner-watcher: warning: build sampling: {type(exc).__name__}: {exc}")

    def start(self) -> "BuildUsage":
        self.thread = threading.Thread(target=self.run, name="provisioner-build-usage", daemon=True)
        self.thread.start()
        return self

    def stop(self, why: str = "the watcher stops") -> dict | None:
        """The watcher quits: one last look, then the record (interrupted if the build still ran)."""
        self._stop.set()
        if self.thread is not None:
            self.thread.join(self.interval_s + 2.0)
        try:
            seen = self.look()
        except Exception:
            seen = None
        record = self.finish(why, interrupted=bool(seen and seen.running))
        if self.containers is not None:
            self.containers.close()
        return record


def from_env(settings: Any, environ: Mapping[str, str], out: Callable[[str], None]) -> BuildUsage | None:
    """Agent mode with a daemon to report to: the started sampler; else None. Never raises."""
    if settings.agent_pid_file is None:
        return None
    try:
        from provisioner.runner.daemon_client import Reporter
        spool = Path(environ.get("PROVISIONER_STATE_DIR") or "/run/provisioner") / "spool"
        reporter = Reporter.from_env(environ, spool_dir=spool, deadline_s=6.0)
        if reporter is None:
            out("provisioner-watcher: no report URL: the build's usage is not recorded")
            return None
        from provisioner.agent.procs import _docker_from_env
        node = environ.get("PROVISIONER_NODE_NAME") or None
        containers = BuildContainers(lambda: _docker_from_env(timeout=5), node)
        return BuildUsage(reporter.report, agent_pid_file=settings.agent_pid_file, work_dir=settings.work_dir,
                          environ=environ, containers=containers, out=out).start()
    except Exception as exc:
        out(f"provisioner-watcher: warning: build usage not sampled: {type(exc).__name__}: {exc}")
        return None
