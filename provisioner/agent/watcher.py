"""The instance's watcher: spot interruption notices and the self-termination limits.

Started in the background by the bootstrap (`provisioner-agent watch`). Every
`--interval` (5 s) it
- asks instance metadata (IMDSv2) for `spot/instance-action`. AWS gives a 2-minute notice; the
  watcher sends the job SIGTERM and allows it GRACE seconds (default 90 s of the 120 s: a 5 s poll
  may see the notice late, and ~25 s are left to sync the checkpoint directory and stop cleanly).
  In job mode the job is the supervisor of `provisioner run`, which passes SIGTERM to the job's
  container with the same grace and records `interrupted`; in agent mode it is every `provisioner
  run` a build started here (found by their containers' owner labels).
- compares the clock with PROVISIONER_EXPIRES_AT (the instance's `expires-at` tag: the maximum
  lifetime), and in agent mode the agent's idle time (no build running: `BuildProbe`) with
  --idle-timeout, so an instance stops itself when the daemon that should have terminated it is gone.
In agent mode a thread also tells the daemon the moment the build starts (one sample to its
/v1/samples, which drains the node before any second build can come: provisioner/agent/buildstart.py),
seen as a new entry in `--work-dir`'s workspace/ (inotify, else a 0.1 s poll) or a child of the agent,
and another samples the build and posts its usage record at its end (provisioner/agent/buildusage.py).
On any of these it stops the job the same way, optionally syncs the checkpoint directory to S3
(PROVISIONER_CHECKPOINT_DIR, default /var/lib/provisioner/checkpoint, to PROVISIONER_CHECKPOINT_S3
= s3://bucket/prefix, under the instance id), stops the agent, prints an event marker and exits; the
bootstrap then shuts the instance down.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

from provisioner.agent import markers
from provisioner.agent.imds import Imds, ImdsError, resolve_url
from provisioner.agent.procs import (BUILD_COOKIES, _alive, _docker_from_env,  # noqa: F401 (tests import them here)
                                     agent_has_children, build_processes, read_pid)

log = logging.getLogger("provisioner.watcher")

DEFAULT_GRACE_S = 90.0
DEFAULT_INTERVAL_S = 5.0
DEFAULT_CHECKPOINT_DIR = "/var/lib/provisioner/checkpoint"


@dataclass(frozen=True)
class WatchSettings:
    imds_url: str | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    grace_s: float = DEFAULT_GRACE_S
    expires_at: float | None = None          # epoch seconds
    idle_timeout_s: float | None = None
    pid_file: Path | None = None             # job mode: the supervisor of `provisioner run`
    agent_pid_file: Path | None = None       # agent mode: the java agent
    work_dir: Path | None = None             # agent mode: the agent's -workDir (builds in workspace/)
    state_dir: Path = Path("/run/provisioner")
    checkpoint_dir: Path | None = None
    checkpoint_s3: str | None = None
    instance_id: str = ""
    exit_margin_s: float = 5.0               # after the grace: the runner records and reports


RECYCLE_KILL_S = 10.0        # agent reuse: the agent has this long to stop on TERM, then KILL
ENGINE_RETRY_S = 60.0        # after the engine failed to answer, the container check waits this long
ENGINE_TIMEOUT_S = 5.0       # a hung engine must not hold up the loop (the spot notice check)


def build_pids(client: Any, hostname: str) -> tuple[list[int], list[Any]]:
    """The `provisioner run` processes of this instance and their containers, from the owner
    label `provisioner:owner=<hostname>:<pid>` every run container carries."""
    pids, containers = [], []
    for c in client.containers.list(ignore_removed=True, filters={"label": "provisioner:kind=run"}):
        host, _, pid = (c.labels or {}).get("provisioner:owner", "").rpartition(":")
        if host == hostname and pid.isdigit():
            pids.append(int(pid))
            containers.append(c)
    return pids, containers


class BuildProbe:
    """Is a build running on this instance? One look, cheapest check first; what shows it, or None.

    1. a child of the agent: a freestyle build's steps (and whatever a step starts in the foreground);
    2. a process with a build cookie in its environment (`build_processes`): a pipeline `sh` step,
       which durable-task starts detached from the agent, and anything it started;
    3. a `provisioner run` container of this host (owner label) whose owner process still runs: a
       job whose runner the environment check cannot see (started with a scrubbed environment, e.g.
       `sudo` or `env -i`). A container whose owner is dead is an orphan, not a build: the next run
       reaps it, and a stop removes it.
    Each part is a /proc scan or one engine request; every 5 s that is a few milliseconds."""

    def __init__(self, *, docker_client: Callable[[], Any] | None = None, hostname: str | None = None,
                 proc_root: str | Path = "/proc", names: tuple[str, ...] = BUILD_COOKIES,
                 own_environ: Mapping[str, str] | None = None,
                 has_children: Callable[[int], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._docker = docker_client or (lambda: _docker_from_env(timeout=ENGINE_TIMEOUT_S))
        self.hostname = hostname or socket.gethostname()
        self.proc_root, self.names = proc_root, names
        self._own = dict(os.environ if own_environ is None else own_environ)
        self._has_children = has_children or agent_has_children
        self._clock = clock
        self._client: Any = None
        self._engine_retry_at = 0.0

    def __call__(self, agent_pid: int) -> str | None:
        if self._has_children(agent_pid):
            return "a process of the agent"
        pid = next(build_processes(self.proc_root, self.names, self._own, ignore={agent_pid, os.getpid()}),
                   None)
        if pid is not None:
            return f"build process {pid}"
        name = self._run_container()
        return f"build container {name}" if name else None

    def _run_container(self) -> str | None:
        from provisioner.runner.owners import OWNER_STARTED_LABEL, owner_alive
        client = self._engine()
        if client is None:
            return None
        try:
            pids, containers = build_pids(client, self.hostname)
        except Exception as exc:                      # the engine went away: ask again later
            log.debug("build containers not listed: %s", exc)
            self._client, self._engine_retry_at = None, self._clock() + ENGINE_RETRY_S
            return None
        for pid, container in zip(pids, containers):
            try:
                started: float | None = float((container.labels or {}).get(OWNER_STARTED_LABEL, ""))
            except ValueError:
                started = None
            if owner_alive(pid, started):
                return getattr(container, "name", None) or str(getattr(container, "id", pid))[:12]
        return None

    def _engine(self) -> Any:
        if self._client is None and self._clock() >= self._engine_retry_at:
            try:
                self._client = self._docker()
            except Exception as exc:                  # no engine, no SDK: not every 5 s
                log.debug("no container engine: %s", exc)
                self._engine_retry_at = self._clock() + ENGINE_RETRY_S
        return self._client


class Watcher:
    def __init__(self, settings: WatchSettings, *, imds: Imds | None = None,
                 clock: Callable[[], float] = time.time, out: Callable[[str], None] | None = None,
                 docker_client: Callable[[], Any] | None = None, kill: Callable[[int, int], None] = os.kill,
                 probe: Callable[[int], str | None] | None = None):
        self.s = settings
        self.imds = imds if imds is not None else (Imds(settings.imds_url) if settings.imds_url else None)
        self.clock = clock
        self.out = out or (lambda line: print(line, flush=True))
        self._docker = docker_client or _docker_from_env
        self._kill = kill
        self._probe = probe if probe is not None else BuildProbe(docker_client=docker_client)
        self._quit = threading.Event()
        self._imds_failed = self._probe_failed = False
        self._idle_since: float | None = None
        self.busy: str | None = None                 # what showed a build at the last look
        self.stopped_reason: str | None = None
        self.next_build: Any = None                  # EC2 agent reuse: agent/nextbuild.NextBuild

    # ---- one poll ----------------------------------------------------------------------------

    def check(self) -> tuple[str, dict] | None:
        """The reason to stop now, with its detail, or None."""
        if self.imds is not None:
            try:
                notice = self.imds.spot_action()
                self._imds_failed = False
                if notice is not None:
                    return "interrupted", {"notice": notice}
            except ImdsError as exc:
                if not self._imds_failed:   # once per outage: a 5 s poll must not flood the log
                    self.out(f"provisioner-watcher: warning: {exc}")
                self._imds_failed = True
        now = self.clock()
        if self.s.expires_at is not None and now >= self.s.expires_at:
            return "expired", {"expires_at": self.s.expires_at}
        if self.s.idle_timeout_s is not None:
            agent = read_pid(self.s.agent_pid_file)
            self.busy = self._busy(agent) if agent is not None else None
            if agent is not None and self.busy is None:
                self._idle_since = now if self._idle_since is None else self._idle_since
                if now - self._idle_since >= self.s.idle_timeout_s:
                    return "idle", {"idle_s": round(now - self._idle_since)}
            else:
                self._idle_since = None
        # EC2 agent reuse: the daemon hands the next bundle over only once Jenkins says the build
        # ended (what it left running may still look like a build here: the recycle kills it)
        if self.next_build is not None and read_pid(self.s.agent_pid_file) is not None and self.next_build.poll():
            return "recycle", {}
        return None

    def _busy(self, agent: int) -> str | None:
        try:
            found = self._probe(agent)
            self._probe_failed = False
            return found
        except Exception as exc:  # never into the loop: fall back to the agent's children alone
            if not self._probe_failed:
                self.out(f"provisioner-watcher: warning: build probe: {type(exc).__name__}: {exc}")
            self._probe_failed = True
            return "a process of the agent" if agent_has_children(agent) else None

    def run(self) -> int:
        """Poll until a reason to stop (then stop the job and return 0) or until asked to quit."""
        while not self._quit.is_set():
            found = self.check()
            if found and found[0] == "recycle":
                self.recycle()
                return 0
            if found:
                self.stop(*found)
                return 0
            self._quit.wait(self.s.interval_s)
        return 0

    def quit(self) -> None:
        self._quit.set()

    # ---- stopping ----------------------------------------------------------------------------

    def recycle(self) -> None:
        """EC2 agent reuse: the next bundle is in place; the agent stops, the bootstrap recycles."""
        self.stopped_reason = "recycled for the next build"
        agent = read_pid(self.s.agent_pid_file)
        if agent is None:
            return
        self._signal(agent, signal.SIGTERM)
        deadline = time.monotonic() + RECYCLE_KILL_S
        while time.monotonic() < deadline and _alive(agent):
            time.sleep(0.1)
        if _alive(agent):
            self._signal(agent, signal.SIGKILL)

    def stop(self, reason: str, detail: dict) -> None:
        self.stopped_reason = reason
        what = {"interrupted": "spot interruption notice", "expired": "maximum lifetime reached",
                "idle": "agent idle"}[reason]
        self.out(f"provisioner-watcher: {what}: stopping the job with SIGTERM (grace {self.s.grace_s:g} s)")
        self.out(markers.event_line(reason, instance_id=self.s.instance_id, **detail))
        try:
            self.s.state_dir.mkdir(parents=True, exist_ok=True)
            (self.s.state_dir / reason).write_text(f"{self.clock():.3f}\n")
        except OSError as exc:
            self.out(f"provisioner-watcher: warning: cannot write {reason} marker: {exc}")
        pids, containers = self._targets()
        for pid in pids:
            self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.s.grace_s + self.s.exit_margin_s  # the runner's grace, then its exit
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        for pid in [p for p in pids if _alive(p)]:
            self.out(f"provisioner-watcher: pid {pid} still running after the grace: killing it")
            self._signal(pid, signal.SIGKILL)
        for container in containers:
            try:
                container.remove(force=True)             # the job container of a killed runner
            except Exception:
                pass                                     # already removed by its runner
        self._sync_checkpoint(reason)
        agent = read_pid(self.s.agent_pid_file)
        if agent is not None:
            self._signal(agent, signal.SIGTERM)          # the bootstrap then shuts the instance down

    def _targets(self) -> tuple[list[int], list[Any]]:
        pids, containers = [], []
        job = read_pid(self.s.pid_file)
        if job is not None:
            pids.append(job)
        else:
            try:
                pids, containers = build_pids(self._docker(), socket.gethostname())
            except Exception as exc:                     # no engine, no SDK: nothing to stop there
                log.debug("no build containers found: %s", exc)
        return pids, containers

    def _signal(self, pid: int, signum: int) -> None:
        try:
            self._kill(pid, signum)
        except ProcessLookupError:
            pass
        except OSError as exc:
            self.out(f"provisioner-watcher: warning: cannot signal pid {pid}: {exc}")

    def _sync_checkpoint(self, reason: str) -> None:
        if not (self.s.checkpoint_s3 and self.s.checkpoint_dir and self.s.checkpoint_dir.is_dir()):
            return
        try:
            count = sync_to_s3(self.s.checkpoint_dir, self.s.checkpoint_s3, self.s.instance_id or "instance")
            self.out(f"provisioner-watcher: checkpoint: {count} files synced to {self.s.checkpoint_s3}")
        except Exception as exc:  # a failed sync must not keep the instance from stopping
            self.out(f"provisioner-watcher: warning: checkpoint sync failed: {type(exc).__name__}: {exc}")


def sync_to_s3(folder: Path, url: str, instance_id: str, client: Any = None) -> int:
    """Upload every file under `folder` to s3://bucket/prefix/<instance_id>/<relative path>."""
    if not url.startswith("s3://"):
        raise ValueError(f"checkpoint target must be s3://bucket/prefix, got {url!r}")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if client is None:
        from provisioner import aws
        client = aws.client("s3")
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = "/".join(x for x in (prefix.strip("/"), instance_id, path.relative_to(folder).as_posix()) if x)
        client.upload_file(str(path), bucket, key)
        count += 1
    return count


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def settings_from(argv: list[str] | None, environ: dict[str, str]) -> WatchSettings:
    from provisioner.runner.instance_price import on_ec2
    env = environ.get
    p = argparse.ArgumentParser(prog="provisioner-agent watch",
                                description="Spot interruption and self-termination watcher.")
    p.add_argument("--pid-file", type=Path, help="job mode: the pid to send SIGTERM")
    p.add_argument("--agent-pid-file", type=Path, help="agent mode: the java agent's pid")
    p.add_argument("--grace", type=float, default=float(env("PROVISIONER_GRACE_S") or DEFAULT_GRACE_S))
    p.add_argument("--interval", type=float,
                   default=float(env("PROVISIONER_WATCH_INTERVAL_S") or DEFAULT_INTERVAL_S))
    p.add_argument("--expires-at", default=env("PROVISIONER_EXPIRES_AT"), help="ISO time or epoch")
    p.add_argument("--idle-timeout", type=float, default=None, help="agent mode: seconds without a build")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="agent mode: the agent's -workDir; a new entry in its workspace/ is a build starting")
    p.add_argument("--state-dir", type=Path, default=Path(env("PROVISIONER_STATE_DIR") or "/run/provisioner"))
    p.add_argument("--checkpoint-dir", type=Path,
                   default=Path(env("PROVISIONER_CHECKPOINT_DIR") or DEFAULT_CHECKPOINT_DIR))
    p.add_argument("--checkpoint-s3", default=env("PROVISIONER_CHECKPOINT_S3") or None)
    a = p.parse_args(argv)
    return WatchSettings(imds_url=resolve_url(environ, on_ec2), interval_s=a.interval, grace_s=a.grace,
                         expires_at=_epoch(a.expires_at), idle_timeout_s=a.idle_timeout,
                         pid_file=a.pid_file, agent_pid_file=a.agent_pid_file, work_dir=a.work_dir,
                         state_dir=a.state_dir,
                         checkpoint_dir=a.checkpoint_dir, checkpoint_s3=a.checkpoint_s3,
                         instance_id=env("PROVISIONER_INSTANCE_ID") or socket.gethostname())


def build_start_signal(settings: WatchSettings, environ: dict[str, str],
                       out: Callable[[str], None] | None = None) -> Any:
    """Agent mode: the started build-start detector (provisioner/agent/buildstart.py), or None in job
    mode or without a report URL and token (no daemon to tell). Never raises."""
    if settings.agent_pid_file is None:
        return None
    out = out or (lambda line: print(line, flush=True))
    try:
        from provisioner.agent.buildstart import BuildStartSignal, SignalPoster
        poster = SignalPoster.from_env(environ, out=out)
        if poster is None:
            out("provisioner-watcher: no report URL: the build start is not signalled to a daemon")
            return None
        return BuildStartSignal(poster, agent_pid_file=settings.agent_pid_file, work_dir=settings.work_dir,
                                out=out).start()
    except Exception as exc:  # the signal is an optimisation: the watcher's duties come first
        out(f"provisioner-watcher: warning: build start signal not started: {type(exc).__name__}: {exc}")
        return None


def main(argv: list[str] | None = None) -> int:
    settings = settings_from(argv, dict(os.environ))
    watcher = Watcher(settings)
    # The bootstrap sends SIGTERM when the job ended on its own: quit at once, unless a stop (and
    # its checkpoint sync) is under way, which finishes first.
    signal.signal(signal.SIGTERM, lambda *_: watcher.quit())
    if settings.imds_url is None:
        print("provisioner-watcher: no instance metadata service: spot notices are not watched", flush=True)
    build_start_signal(settings, dict(os.environ))
    if settings.agent_pid_file is not None:
        from provisioner.agent.nextbuild import NextBuild
        watcher.next_build = NextBuild.from_env(dict(os.environ), settings.state_dir, watcher.out)
    from provisioner.agent import buildusage       # agent mode: the build's usage record
    usage = buildusage.from_env(settings, dict(os.environ), watcher.out)
    try:
        return watcher.run()
    finally:
        if usage is not None:
            usage.stop(watcher.stopped_reason or "the agent exited")


if __name__ == "__main__":
    sys.exit(main())
