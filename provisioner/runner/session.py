"""A whole `provisioner run`: orphan removal, the image, attempts with retry, and after each attempt
the usage record (history store, reporter, --summary-json) and the printed summary.

Seams for the parts written elsewhere: `sink_factories` make one log sink per attempt from its run
id (`write(ts, line)`, `close(timeout_s) -> dropped lines`); `reporter` gets `report(record)` after
each attempt and, when it has one, `sample(payload)` every 15 s while the job runs.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from provisioner.records import iso_utc
from provisioner.runner import EXIT_SIGINT, EXIT_SIGTERM, LaunchError, LazyLogger, new_run_id
from provisioner.runner.console import Console
from provisioner.runner.container import Attempt, ContainerRunner, SignalWatch
from provisioner.runner.engine import EngineError, as_engine
from provisioner.runner.images import ImageInfo, default_ecr_client, ensure_image
from provisioner.runner.owners import Owner, reap_orphans, run_labels
from provisioner.runner.instance_price import Pricing
from provisioner.runner.retry import RetryPolicy
from provisioner.runner.spec import ContainerSpec
from provisioner.runner.summary import JobInfo, build_record, summary_line, summary_lines
from provisioner.units import format_duration

log = LazyLogger(__name__)

SINK_CLOSE_S = 10.0  # the most a log sink may take to flush after the job


@dataclass
class Services:
    """What a session talks to, injected (tests pass fakes; the CLI passes the real ones)."""

    client: Any                                         # an engine (engine.py) or docker.DockerClient
    console: Console
    store_factory: Callable[[], Any] | None = None      # -> object with add(record)
    reporter: Any = None                                # report(record) [, sample(payload)]
    sink_factories: list[Callable[[str], Any]] = field(default_factory=list)
    gpu_factory: Callable[[Any], Any] | None = None
    ecr_client_factory: Callable[[str], Any] = default_ecr_client
    owner: Owner | None = None
    sample_every_s: float = 15.0                        # live samples to the reporter
    on_record: Callable[[dict], Any] | None = None      # after storing, e.g. alerts for standalone runs
    spool: Callable[[dict], Any] | None = None          # keeps a record the store refused -> where


@dataclass
class Outcome:
    exit_code: int
    records: list[dict] = field(default_factory=list)


def _signal_exit(signum: int) -> int:
    return EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM


class RunSession:
    def __init__(self, services: Services):
        self.s = services
        self.console = services.console
        self.owner = services.owner or Owner.current()
        self.engine = as_engine(services.client)
        self.runner = ContainerRunner(self.engine, services.console,
                                      gpu_factory=services.gpu_factory,
                                      sample_every_s=services.sample_every_s)
        self._store: Any = None

    def run(self, spec: ContainerSpec, job: JobInfo, policy: RetryPolicy, pricing: Pricing,
            summary_json: str | None = None) -> Outcome:
        if summary_json:
            self._remove_stale_summary(summary_json)
        events: queue.SimpleQueue = queue.SimpleQueue()
        with SignalWatch(events):
            self._reap()
            image = self._image(spec.image, events)
            if isinstance(image, int):
                return Outcome(image)
            outcome = Outcome(0)
            attempt_no = 1
            while True:
                record, attempt = self._attempt(spec, job, image, pricing, events, attempt_no,
                                                policy.retries + 1)
                outcome.records.append(record)
                outcome.exit_code = record["exit_code"]
                if not policy.should_retry(attempt, attempt_no):
                    break
                delay = policy.delay(attempt_no)
                self.console.info(f"Retrying in {delay:g} s (attempt {attempt_no + 1} of "
                                  f"{policy.retries + 1})")
                signum = self._pause(events, delay)
                if signum:
                    outcome.exit_code = _signal_exit(signum)
                    break
                attempt_no += 1
        if summary_json:
            try:
                self._write_summary(summary_json, outcome.records[-1])
            except OSError as exc:  # a warning: the job's exit code stands
                self.console.warn(f"--summary-json {summary_json} not written: "
                                  f"{exc.strerror or exc}")
        return outcome

    def _remove_stale_summary(self, path: str) -> None:
        """Never leave a stale summary for the Groovy step to read."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.console.warn(f"--summary-json {path}: old file not removed: {exc.strerror or exc}")

    # -- steps -----------------------------------------------------------------------------------
    def _reap(self) -> None:
        try:
            for name in reap_orphans(self.engine, self.owner):
                self.console.warn(f"removed container {name} left behind by a killed provisioner run")
        except EngineError as exc:
            raise LaunchError(f"Docker engine not reachable: {exc}") from None

    def _pull_progress(self, ref: str) -> Any:
        from provisioner.runner.pull_progress import PullProgress
        err = self.console.err
        tty = bool(getattr(err, "isatty", lambda: False)())
        return PullProgress(ref, lambda text: self.console._write(err, text), tty=tty)

    def _image(self, ref: str, events: queue.SimpleQueue) -> ImageInfo | int:
        """The image, pulled on a thread so that a signal can end the wait; an exit code when a
        signal came first."""
        def pull() -> None:
            try:
                events.put(("image", ensure_image(self.engine, ref, self.s.ecr_client_factory,
                                                  progress=self._pull_progress(ref))))
            except Exception as exc:
                events.put(("image_error", exc))
        threading.Thread(target=pull, name="provisioner-pull", daemon=True).start()
        while True:
            event = events.get()
            if event[0] == "image":
                return event[1]
            if event[0] == "image_error":
                exc = event[1]
                if isinstance(exc, LaunchError):
                    raise exc
                raise LaunchError(f"cannot get image {ref}: {exc}")
            if event[0] == "signal":
                self.console.warn(f"{signal.Signals(event[1]).name} before the job started")
                return _signal_exit(event[1])

    def _header(self, spec: ContainerSpec, image: ImageInfo, run_id: str, attempt_no: int,
                attempts: int) -> None:
        pairs = [("Date", iso_utc(datetime.now(timezone.utc))),
                 ("Container timeout", f"{format_duration(spec.timeout_s)} ({spec.timeout_s:g} s)"),
                 ("Container name", spec.container_name(run_id))]
        if spec.name:
            pairs.append(("Run ID", run_id))
        pairs.append(("Image", f"{image.ref} ({image.digest or image.id})"))
        if attempt_no == 1:
            detail = f" ({image.pull_detail})" if getattr(image, "pull_detail", "") else ""
            pairs.append(("Image pull", f"pulled in {image.pull_s:.1f} s{detail}" if image.pulled
                          else "found locally, not pulled"))
        pairs += [("Extra docker parameters", shlex.join(spec.extra.tokens) or "none"),
                  ("Command", shlex.join(spec.command) or "(the image's default)"),
                  ("Docker command", spec.docker_run_line(run_id))]
        if attempts > 1:
            pairs.append(("Attempt", f"{attempt_no} of {attempts}"))
        self.console.header(pairs)

    def _attempt(self, spec: ContainerSpec, job: JobInfo, image: ImageInfo, pricing: Pricing,
                 events: queue.SimpleQueue, attempt_no: int, attempts: int) -> tuple[dict, Attempt]:
        run_id = new_run_id()
        self._header(spec, image, run_id, attempt_no, attempts)
        sinks = self._make_sinks(run_id)
        labels = run_labels(self.owner, run_id, job.job, job.build)
        try:
            try:
                attempt = self.runner.run(spec, image, labels, events, run_id=run_id, sinks=sinks,
                                          reporter=self.s.reporter, remove_in_background=True)
            finally:
                dropped = self._close_sinks(sinks)
            record = build_record(attempt, job, spec, image, pricing, attempt_no=attempt_no,
                                  log_lines_dropped=dropped if sinks else None)
            self._store_record(record)
            for line in summary_lines(record, spec.timeout_s):
                self.console.info(line)
        finally:
            self.runner.wait_removed()  # removed meanwhile: every path ends with the container gone
        return record, attempt

    def _make_sinks(self, run_id: str) -> list:
        sinks = []
        for factory in self.s.sink_factories:
            try:
                sinks.append(factory(run_id))
            except Exception as exc:
                self.console.warn(f"log sink not started: {exc}")
        return sinks

    def _close_sinks(self, sinks: list) -> int:
        dropped = 0
        for sink in sinks:
            try:
                dropped += int(sink.close(SINK_CLOSE_S) or 0)
            except Exception as exc:
                self.console.warn(f"log sink {type(sink).__name__} did not close cleanly: {exc}")
        return dropped

    def _store_record(self, record: dict) -> None:
        """History store and reporter; a failure is a warning and never changes the exit code."""
        if self.s.store_factory is not None:
            try:
                if self._store is None:
                    self._store = self.s.store_factory()
                self._store.add(record)
            except Exception as exc:
                self._spool(record, exc)
        if self.s.reporter is not None:
            try:
                self.s.reporter.report(record)
            except Exception as exc:
                self.console.warn(f"usage record not reported to the daemon: {exc}")
        if self.s.on_record is not None:
            try:
                self.s.on_record(record)
            except Exception as exc:
                self.console.warn(f"after-run hook failed: {exc}")

    def _spool(self, record: dict, exc: Exception) -> None:
        """The record of a run is never lost to a locked store or a full disk: spooled, merged
        by the next command; where even that fails, the record itself is printed."""
        from provisioner.history.spool import describe, record_text
        if self._store is not None:
            try:  # a store left in a failed state is opened afresh for the next attempt
                self._store.close()
            except Exception:
                pass
            self._store = None
        if self.s.spool is None:
            self.console.warn(f"usage record not written to the history store: {exc}")
            return
        try:
            where = self.s.spool(record)
        except Exception as spool_exc:
            self.console.warn(f"usage record not written to the history store ({exc}) nor "
                              f"spooled ({spool_exc}); keep it with `provisioner history import`: "
                              f"{record_text(record)}")
            return
        self.console.warn(f"usage record not written to the history store ({exc}): {describe(where)}")

    @staticmethod
    def _pause(events: queue.SimpleQueue, seconds: float) -> int | None:
        """Sleep between attempts; the signal number if one arrives meanwhile."""
        timer = threading.Timer(seconds, lambda: events.put(("resume",)))
        timer.daemon = True
        timer.start()
        try:
            while True:
                event = events.get()
                if event[0] == "resume":
                    return None
                if event[0] == "signal":
                    return event[1]
        finally:
            timer.cancel()

    @staticmethod
    def _write_summary(path: str, record: dict) -> None:
        body = dict(record, summary_line=summary_line(record))
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
