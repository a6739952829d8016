"""One attempt: create, attach, start, follow, wait (with timeout and signals), inspect, remove.

The main thread only waits on one event queue, fed by the engine waiter thread and by the signal
handlers (SignalWatch), so a signal, the exit and the deadline are handled in one place, and every
path goes through the same `finally` that removes the container.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from provisioner.records import iso_utc
from provisioner.runner import (EXIT_OOM, EXIT_SIGINT, EXIT_SIGTERM, EXIT_TIMEOUT, LaunchError,
                                LazyLogger, new_run_id)
from provisioner.runner.console import Console, LogPump
from provisioner.runner.engine import EngineError, EngineTimeout, NotFound, Unreachable, as_engine
from provisioner.runner.images import ImageInfo
from provisioner.runner.sampler import StatsSampler, parse_engine_time
from provisioner.runner.spec import ContainerSpec, gpu_selection

log = LazyLogger(__name__)

LOG_DRAIN_S = 5.0      # after the exit, with the console's reader gone: how long to drain
LOG_IDLE_S = 30.0      # after the exit: how long the engine may send nothing yet keep the stream
WAIT_CHUNK_S = 3600.0  # the engine's wait is re-issued after this long (socket timeout)


@dataclass
class Attempt:
    """What one container run did. `exit_code` is the one `provisioner run` returns."""

    run_id: str
    container_name: str
    start: str
    duration_s: float
    exit_code: int
    container_exit_code: int | None = None
    timed_out: bool = False
    oom_killed: bool = False
    signal: str | None = None            # SIGINT / SIGTERM received by provisioner
    killed_externally: bool = False      # died by a signal nobody here sent (not OOM)
    usage: dict[str, Any] = field(default_factory=dict)
    log_lines: int = 0
    console_lines_dropped: int = 0       # output lines not shown: the console's reader went away

    @property
    def interrupted(self) -> bool:
        return self.signal is not None or self.killed_externally


class SignalWatch:
    """While active, SIGINT and SIGTERM post ("signal", signum) to `events` instead of raising.
    SimpleQueue.put is reentrant, so it is safe inside a signal handler."""

    def __init__(self, events: "queue.SimpleQueue[tuple]", signums=(signal.SIGINT, signal.SIGTERM)):
        self.events, self._signums = events, signums
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "SignalWatch":
        if threading.current_thread() is threading.main_thread():
            for signum in self._signums:
                self._old[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.events.put(("signal", signum))

    def __exit__(self, *exc: Any) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)


class ContainerRunner:
    """Runs ContainerSpecs on an injected engine (engine.py; a `docker.DockerClient` is wrapped)."""

    def __init__(self, client: Any, console: Console, *,
                 gpu_factory: Callable[[Any], Any] | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 sample_every_s: float = 15.0):
        self.engine, self.console = as_engine(client), console
        self.gpu_factory = gpu_factory or _nvml_sampler
        self.clock, self.monotonic, self.sample_every_s = clock, monotonic, sample_every_s
        self._removal: threading.Thread | None = None

    def run(self, spec: ContainerSpec, image: ImageInfo, labels: dict[str, str],
            events: "queue.SimpleQueue[tuple]", *, run_id: str | None = None,
            sinks: list | None = None, reporter: Any = None,
            remove_in_background: bool = False) -> Attempt:
        """Run one container to its end; LaunchError (125) when it could not be started.

        The container is removed before returning, or with `remove_in_background` on a thread that
        `wait_removed()` joins (the caller writes the record meanwhile: the removal is engine time)."""
        run_id = run_id or new_run_id()
        kwargs = spec.create_kwargs(run_id, labels)
        kwargs["image"] = image.ref
        try:
            cid = self.engine.create_container(kwargs)
        except EngineError as exc:
            raise LaunchError(f"cannot create the container: {exc}") from None
        try:
            return self._run_created(spec, cid, run_id, events, sinks or [], reporter)
        except EngineError as exc:
            raise LaunchError(f"Docker engine error: {exc}") from None
        finally:
            if remove_in_background:
                self._removal = threading.Thread(target=self._remove, args=(cid,),
                                                 name="provisioner-remove", daemon=True)
                self._removal.start()
            else:
                self._remove(cid)

    def wait_removed(self) -> None:
        """Return once the container of the last run(remove_in_background=True) is removed."""
        removal, self._removal = self._removal, None
        if removal is not None:
            removal.join()

    def _run_created(self, spec: ContainerSpec, cid: str, run_id: str, events: Any, sinks: list,
                     reporter: Any) -> Attempt:
        stream = self.engine.attach(cid)
        dropped_at_start = self.console.dropped
        pump = LogPump(stream, self.console, sinks, clock=self.clock).start()
        selection = gpu_selection(spec.gpus)
        gpu = self.gpu_factory(selection) if selection is not None else None
        started_wall = self.clock()
        try:
            self.engine.start(cid)
        except EngineError as exc:
            pump.join(0.5)
            raise LaunchError(f"cannot start the container: {exc}") from None
        started = self.monotonic()
        stats = StatsSampler(self.engine, cid).start()
        has_gpu = bool(gpu and gpu.start())
        threading.Thread(target=self._wait, args=(cid, events), name="provisioner-wait",
                         daemon=True).start()
        attempt = Attempt(run_id=run_id, container_name=spec.container_name(run_id),
                          start=iso_utc_ts(started_wall), duration_s=0.0, exit_code=-1)
        status = self._follow(spec, cid, run_id, events, attempt, started, stats, gpu, reporter)
        ended = self.monotonic()
        dropped_before = self.console.dropped - dropped_at_start
        if not pump.drain(LOG_IDLE_S, LOG_DRAIN_S, stop=_signal_seen(events)):
            self.console.warn("the job's output stream did not end after its exit: stopped reading it")
        attempt.log_lines = pump.lines
        attempt.console_lines_dropped = self.console.dropped - dropped_at_start
        if attempt.console_lines_dropped:
            after = attempt.console_lines_dropped - dropped_before
            self.console.warn(f"{attempt.console_lines_dropped} lines of output not shown: the "
                              f"console's reader went away ({after} of them after the job's exit)")
        attempt.usage = stats.stop()
        if has_gpu:
            attempt.usage.update(gpu.stop())
        else:
            attempt.usage["gpu_count"] = 0 if selection is None else None
        self._finish(cid, status, attempt, ended - started)
        if attempt.oom_killed and spec.memory_bytes:
            # the kill proves the limit was reached, even between two stats frames
            attempt.usage["mem_max_bytes"] = max(attempt.usage.get("mem_max_bytes") or 0,
                                                 spec.memory_bytes)
        return attempt

    def _follow(self, spec: ContainerSpec, cid: str, run_id: str, events: Any, attempt: Attempt,
                started: float, stats: StatsSampler, gpu: Any, reporter: Any) -> dict:
        """Wait for the exit, stopping the container on the deadline or a signal; the wait result."""
        deadline = started + spec.timeout_s
        kill_at: float | None = None
        sample = getattr(reporter, "sample", None)
        next_tick = started + self.sample_every_s if sample else None
        while True:
            now = self.monotonic()
            wakes = [t for t in (None if (attempt.timed_out or attempt.signal) else deadline,
                                 kill_at, next_tick) if t is not None]
            try:
                event = events.get(timeout=max(0.0, min(wakes) - now) if wakes else None)
            except queue.Empty:
                event = ("tick",)
            now = self.monotonic()
            kind = event[0]
            if kind == "exited" and event[1] == cid:
                return event[2]
            if kind == "wait_error" and event[1] == cid:
                raise LaunchError(f"lost the Docker engine while waiting: {event[2]}")
            if kind == "signal":
                name = signal.Signals(event[1]).name
                if attempt.signal or attempt.timed_out:
                    self.console.warn(f"{name} again: killing the container")
                    self._kill(cid, "SIGKILL")
                    kill_at = None
                else:
                    attempt.signal = name
                    self.console.warn(f"{name}: stopping the container (grace {spec.grace_s:g} s)")
                    self._kill(cid, spec.stop_signal)
                    kill_at = now + spec.grace_s
            elif kind == "tick":
                if not (attempt.timed_out or attempt.signal) and now >= deadline:
                    attempt.timed_out = True
                    self.console.warn(f"timeout of {spec.timeout_s:g} s reached: stopping the container")
                    self._kill(cid, spec.stop_signal)
                    kill_at = now + spec.grace_s
                if kill_at is not None and now >= kill_at:
                    self._kill(cid, "SIGKILL")
                    kill_at = None
                if next_tick is not None and now >= next_tick:
                    next_tick = now + self.sample_every_s
                    _send_sample(sample, run_id, self.clock(), stats, gpu)

    def _finish(self, cid: str, status: dict, attempt: Attempt, fallback_s: float) -> None:
        code = int(status.get("StatusCode", -1))
        state: dict = {}
        try:
            state = self.engine.inspect_container(cid).get("State", {})
        except Exception as exc:
            log.debug("inspect after exit failed: %s", exc)
        t0, t1 = parse_engine_time(state.get("StartedAt")), parse_engine_time(state.get("FinishedAt"))
        attempt.duration_s = round(t1 - t0, 3) if t0 and t1 and t1 >= t0 else round(fallback_s, 3)
        attempt.container_exit_code = code
        attempt.oom_killed = bool(state.get("OOMKilled"))
        if attempt.signal:
            attempt.exit_code = EXIT_SIGINT if attempt.signal == "SIGINT" else EXIT_SIGTERM
        elif attempt.timed_out:
            attempt.exit_code = EXIT_TIMEOUT
        elif attempt.oom_killed:
            attempt.exit_code = EXIT_OOM
        else:
            attempt.exit_code = code
            attempt.killed_externally = code in (EXIT_SIGINT, EXIT_OOM, EXIT_SIGTERM)

    def _wait(self, cid: str, events: Any) -> None:
        while True:
            try:
                events.put(("exited", cid, self.engine.wait(cid, timeout=WAIT_CHUNK_S)))
                return
            except (EngineTimeout, Unreachable):
                try:  # a long wait ends as a read timeout: go on if the engine still answers
                    self.engine.inspect_container(cid)
                except Exception as exc:
                    events.put(("wait_error", cid, exc))
                    return
            except Exception as exc:
                events.put(("wait_error", cid, exc))
                return

    def _kill(self, cid: str, sig: str) -> None:
        try:
            self.engine.kill(cid, signal=sig)
        except Exception as exc:  # already gone: the waiter reports the exit
            log.debug("kill %s %s: %s", cid[:12], sig, exc)

    def _remove(self, cid: str) -> None:
        for attempt in range(3):
            try:
                self.engine.remove_container(cid, force=True)
                return
            except NotFound:
                return
            except Exception as exc:  # "removal already in progress", a busy engine
                log.debug("remove %s failed (try %d): %s", cid[:12], attempt + 1, exc)
                time.sleep(0.2 * (attempt + 1))
        self.console.warn(f"could not remove container {cid[:12]}; the next run removes it")


def _send_sample(sample: Callable[[dict], Any], run_id: str, now: float, stats: StatsSampler,
                 gpu: Any) -> None:
    payload = {"run_id": run_id, "at": iso_utc_ts(now), "cpu_pct": stats.usage.latest_cpu_pct,
               "mem_bytes": stats.usage.latest_mem_bytes,
               "gpu_util_pct": getattr(gpu, "latest_util_pct", None)}
    try:
        sample(payload)
    except Exception as exc:  # reporting never affects the job
        log.warning("live sample not sent: %s", exc)


def _signal_seen(events: Any) -> Callable[[], bool]:
    """For the output drain: True once SIGINT/SIGTERM arrived. The event is put back, so the
    session still sees it (no retry after an interrupt) and the exit code stays the job's."""
    def seen() -> bool:
        pending = []
        try:
            while True:
                pending.append(events.get_nowait())
        except queue.Empty:
            pass
        for event in pending:
            events.put(event)
        return any(event[0] == "signal" for event in pending)
    return seen


def _nvml_sampler(selection: Any) -> Any:
    from provisioner.runner.gpu import NvmlSampler  # only for runs that ask for GPUs
    return NvmlSampler(selection=selection)


def iso_utc_ts(ts: float) -> str:
    return iso_utc(datetime.fromtimestamp(ts, timezone.utc))

