"""`provisioner run --remote`: plan -> launch -> wait until ready -> run the job there (job mode)
-> stream its output back -> summary with the remote record -> instance terminated on every exit
path (Ctrl-C included: the signal handlers post events, and one `finally` terminates).

Exit code: the job's own (docs/contracts.md); 3 when no offer fits (NoOfferError, raised by the
planner); 125 when no instance could be launched or made ready; 124 when the remote job outlived
its timeout; 130 / 143 / 129 when interrupted by SIGINT / SIGTERM / SIGHUP (the terminal closed:
the job is stopped, the record written and the instance terminated).

`--detach` returns once the job printed its first line (or started, for a silent job): the run goes
on by itself, its state with it (tags / container labels), and `provisioner ps`, `logs`, `stop`
and `attach` (provisioner/remote/runs.py) find it from any machine with the same credentials. A
run ends by its own end or its expiry, never because its launcher went away.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from provisioner.agent import markers
from provisioner.remote import parts
from provisioner.clouds import registry
from provisioner.clouds.base import Cloud, CloudError, Instance, LaunchSpec
from provisioner.errors import ProvisionerError
from provisioner.runner import EXIT_LAUNCH, EXIT_SIGINT, EXIT_SIGTERM, EXIT_TIMEOUT
from provisioner.runner.console import Console
from provisioner.runner.container import SignalWatch

MAX_LAUNCHES = 3          # instances tried when one never becomes ready
STOP_GRACE_S = 20.0       # after Ctrl-C: time for the remote job to stop cleanly before terminate
SLOT_POLL_S = 1.0         # --max-concurrent: how often to look for a free slot (one describe)
DRAIN_S = 3.0             # after the instance ended: time for its last log lines to arrive
SILENT_START_S = 1.0      # --detach: a job that printed nothing this long after its start counts as started
JOB_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")   # the runner stamps the job's lines
JOB_START = "Docker command:"      # the instance's runner's last header line, just before the job starts
SIGNAL_EXITS = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM, signal.SIGHUP: 129}


class RemoteFailure(ProvisionerError):
    """No instance could run the job (launch failed, never ready, bootstrap failed). Exit 125."""

    exit_code = EXIT_LAUNCH


@dataclass
class Outcome:
    kind: str                                  # done | not-ready | slot-lost | detached
    exit_code: int = 0
    record: dict | None = None
    ready_s: float | None = None
    ended_at: float | None = None
    tail: list[str] = field(default_factory=list)
    key: tuple[str, str, str] | None = None    # the offer of an instance that never became ready
    exit_seen: bool = False


def owner_id() -> str:
    from provisioner.remote.runs import owner_id as runs_owner_id   # one definition, where runs are listed
    return runs_owner_id()


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"aarch64": "arm64", "arm64": "arm64"}.get(machine, "x86_64")


def boot_progress(instance_id: str, elapsed_s: float) -> str:
    """The booting line (rewritten in place on a TTY; off a TTY the "Waiting for ..." line stands alone)."""
    return f"Booting instance {instance_id}: {elapsed_s:.0f} s elapsed"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def run_remote(args: argparse.Namespace, ctx: Any) -> int:
    """The `--remote` branch of `provisioner run`."""
    events: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
    console = Console(sys.stdout, sys.stderr)
    with SignalWatch(events, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
        return RemoteRun(args, ctx, console, events).run()


class RemoteRun:
    def __init__(self, args: argparse.Namespace, ctx: Any, console: Console, events: "queue.SimpleQueue[tuple]"):
        self.args, self.ctx, self.console, self.events = args, ctx, console, events
        self.cloud_name = args.cloud or ctx.config.cloud
        self.boot_timeout_s = float(ctx.config.daemon.boot_timeout_s)
        self.signal: int | None = None
        self.terminated_at: float | None = None
        self._tty = _isatty(console.err)

    # ---- the whole run -----------------------------------------------------------------------

    def run(self) -> int:
        from provisioner.remote.transfer import plan_transfer
        self.transfer = plan_transfer(self.args, self.cloud_name, self.ctx.config)  # exit 2
        self.last_kind = "failed"
        try:
            return self._run()
        finally:
            if self.transfer is not None and self.last_kind != "detached":   # detached: said in _attempt
                self.transfer.receive(self.last_kind, self.console)

    def _run(self) -> int:
        from provisioner.runner.options import build_spec
        from provisioner.runner.summary import JobInfo
        spec = build_spec(self.args, self.ctx, os.environ)          # env files: 125 when unreadable
        if self.transfer is not None and self.transfer.sync_dir and not spec.workdir:
            spec = replace(spec, workdir=self.transfer.mount)      # the synced folder is where it starts
        job = JobInfo.from_env(self.args.job, self.args.build, os.environ, self.ctx.config.teams)
        result = parts.plan(self.args, self.ctx, job.job, choose=self._arch_choice(spec.image),
                            cloud_name=self.cloud_name)
        from provisioner.catalog.notice import due
        for warning in due(result.warnings):
            self.console.warn(warning)
        from provisioner.planner import reason_lines
        for line in reason_lines(result):                # what `provisioner plan` prints first
            self.console.info(line)
        # the remote `provisioner run` gets the intent's timeout (--timeout > label timeout= > config)
        spec = replace(spec, timeout_s=result.intent.timeout_s)
        try:
            cloud = registry.make_cloud(self.ctx.config, name=self.cloud_name, purpose="run")
        except CloudError as exc:
            raise RemoteFailure(str(exc)) from None
        if self.transfer is not None:
            from provisioner.sync import SyncError
            try:
                self.transfer.send(self.console)
            except (SyncError, OSError) as exc:
                raise RemoteFailure(f"--sync: {exc}") from None
            except Exception as exc:          # boto: no credentials, no bucket, access denied
                raise RemoteFailure(f"--sync: cannot upload to {self.transfer.sync_url}: "
                                    f"{type(exc).__name__}: {exc}") from None
        blocked: set[tuple[str, str, str]] = set()
        launches = 0
        while launches < MAX_LAUNCHES:
            candidates = [c for c in result.plan.candidates if c.offer.key not in blocked]
            if not candidates:
                raise RemoteFailure("every candidate offer failed to become ready: "
                                    + ", ".join("/".join(k) for k in sorted(blocked)))
            if self._wait_for_slot(cloud, job.job) is not None or self._signalled_meanwhile():
                return self._signal_exit()
            launches += 1
            outcome = self._attempt(cloud, candidates, spec, job, result)
            self.last_kind = outcome.kind
            if outcome.kind == "slot-lost":
                launches -= 1
                continue
            if outcome.kind == "not-ready":
                blocked.add(outcome.key or candidates[0].offer.key)
                continue
            return outcome.exit_code
        raise RemoteFailure(f"no instance became ready within {self.boot_timeout_s:g} s "
                            f"({launches} tried; daemon.boot_timeout_s sets the limit)")

    def _arch_choice(self, image: str) -> Any:
        """The image-platform rule, asked by the intent's resolver with the declared requirements."""
        def choose(req: Any) -> Any:
            choice = parts.arch_choice(req, self.args, self.cloud_name, host_arch(), image)
            if choice is not None and choice.warning:
                self.console.warn(choice.warning)
            return choice
        return choose

    def _signalled_meanwhile(self) -> bool:
        """A signal that came while planning: launch nothing. (Only signals are queued so far;
        follower events of an abandoned instance carry its tag and are ignored anyway.)"""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return self.signal is not None
            if event[0] == "signal":
                self.signal = event[1]

    def _signal_exit(self) -> int:
        return SIGNAL_EXITS.get(self.signal, EXIT_SIGTERM)

    # ---- one instance ------------------------------------------------------------------------

    def _attempt(self, cloud: Cloud, candidates: list, spec: Any, job: Any, result: Any) -> Outcome:
        best = candidates[0]
        self.console.info(parts.starting_line(best))
        run_id = str(uuid.uuid4())
        timeout_total = parts.job_budget_s(self.args, spec)
        from provisioner.init_scripts import InitScripts
        init = InitScripts.from_config(self.ctx.config, self.cloud_name).for_label(self.args.label)
        bspec = parts.bootstrap_spec(self.args, spec, job, run_id,
                                     lifetime_s=self.boot_timeout_s + timeout_total + 300, init_script=init,
                                     transfer=self.transfer)
        bundle = parts.secret_bundle(spec, os.environ)
        from provisioner.remote import runs as remote_runs
        output_tags = self.transfer.launched(run_id) if self.transfer is not None else {}
        launch = LaunchSpec(candidates=tuple(c.offer for c in candidates),
                            user_data=parts.user_data(best.offer, bspec, self.cloud_name),
                            tags={**parts.tags(owner_id(), job, run_id, bspec.expires_at),
                                  "provisioner:price": f"{best.offer.price:g}",
                                  "provisioner:log-group": bspec.log_group,
                                  **({remote_runs.USAGE_S3_TAG: self.args.usage_s3}
                                     if getattr(self.args, "usage_s3", None) else {}),
                                  **output_tags},
                            client_token=run_id, disk_gib=int(result.plan.disk_gib),
                            spot_only=result.intent.spot_only,
                            secret_env=parts.secret_env(self.cloud_name, bundle))
        instance: Instance | None = None
        started = time.monotonic()
        remote_runs.note_launched(run_id, self.cloud_name)
        try:
            try:
                instance = cloud.launch(launch)
            except CloudError as exc:
                raise RemoteFailure(f"launch failed: {exc}") from None
            try:
                cloud.put_run_secrets(instance, bspec.secret_parameter, bundle)   # EC2: SSM
            except CloudError as exc:
                raise RemoteFailure(str(exc)) from None
            if self.args.max_concurrent and not self._still_within_cap(cloud, instance, job.job):
                self.console.info(f"Another launch took the last slot of job {job.job}: waiting again")
                return Outcome("slot-lost")
            self.console.info(f"Waiting for instance {instance.id} to be ready")
            outcome = self._follow(cloud, instance, timeout_total, bspec.log_group)
            if outcome.kind == "not-ready":
                outcome.key = (instance.instance_type, instance.region, instance.market)
                return outcome
            ended = outcome.ended_at or time.monotonic()
            if outcome.kind == "detached":
                self.console.info(f"Detached: run {run_id} goes on by itself on instance {instance.id}")
                self.console.info(f"  follow it: provisioner logs -f {run_id}   stop it: provisioner stop {run_id}")
                if self.transfer is not None:
                    self.transfer.receive("detached", self.console)
                print(run_id, flush=True)
                instance = None                 # it ends by its own end or its expiry
                return outcome
        finally:
            if instance is not None:
                gone_from = time.monotonic()
                cloud.terminate([instance.id])
                self.terminated_at = time.time()
                self.console.info(f"Instance {instance.id} terminated "
                                  f"({time.monotonic() - gone_from:.2f} s)")
            cloud.forget_run_secrets(bspec.secret_parameter, instance.region if instance else best.offer.region)
        record = parts.final_record(outcome, instance, best, job, spec, result, self.args,
                                    instance_s=ended - started, cloud=self.cloud_name,
                                    terminated_at=self.terminated_at)
        from provisioner.runner.options import after_record
        after = after_record(self.ctx, getattr(self.args, "usage_s3", None), True, self.console.warn)
        parts.store_and_summarise(record, self.ctx, self.console, self.args.summary_json, after)
        remote_runs.mark_seen(run_id)
        return outcome

    def _follow(self, cloud: Cloud, instance: Instance, timeout_total: float, log_group: str | None) -> Outcome:
        tag = object()                          # events of an earlier, abandoned instance are ignored
        follower = parts.follower(cloud, instance, self.events, tag, log_group or parts.DEFAULT_LOG_GROUP)
        launched = time.monotonic()
        boot_deadline = launched + self.boot_timeout_s
        job_deadline: float | None = None
        stop_deadline: float | None = None
        out = Outcome("done")
        container_code: int | None = None
        timed_out = False
        eofs = 0
        detach = bool(getattr(self.args, "detach", False))
        job_started: float | None = None
        while True:
            now = time.monotonic()
            if out.ready_s is None and self._tty:      # booting: one line rewritten each second on a TTY
                self.console._write(self.console.err, f"\r{boot_progress(instance.id, now - launched)}")
                next_tick = now + 1.0
            else:
                next_tick = None
            silent = job_started + SILENT_START_S if detach and job_started is not None else None
            if silent is not None and now >= silent:
                out.kind = "detached"
                break
            wakes = [t for t in (boot_deadline if out.ready_s is None else None, job_deadline, stop_deadline,
                                 silent, next_tick) if t is not None]
            try:
                event = self.events.get(timeout=max(0.0, min(wakes) - now) if wakes else 1.0)
            except queue.Empty:
                event = ("tick",)
            now = time.monotonic()
            kind = event[0]
            if kind in ("line", "eof", "exited") and event[-1] is not tag:
                continue
            if kind == "line":
                shown = self._line(event[1], event[2], out, launched, timeout_total)
                if detach and shown and out.ready_s is not None:
                    if JOB_LINE.match(event[2]):
                        out.kind = "detached"       # the job's first line: it runs; leave it
                        break
                    if job_started is None and event[2].startswith(JOB_START):
                        job_started = now           # a silent job counts as started soon after this
                if out.ready_s is not None and job_deadline is None:
                    job_deadline = now + timeout_total
                if out.exit_seen and not cloud.signals_jobs:
                    out.ended_at = now           # EC2: the instance is shutting itself down
                    break
            elif kind == "eof":
                eofs += 1
            elif kind == "exited":
                container_code = event[1]
                out.ended_at = now
                break
            elif kind == "signal":
                name = signal.Signals(event[1]).name
                if self.signal is not None or out.ready_s is None or not cloud.signals_jobs:
                    self.console.warn(f"{name}: terminating instance {instance.id}")
                    self.signal = self.signal or event[1]
                    out.ended_at = now
                    break
                self.signal = event[1]
                self.console.warn(f"{name}: stopping the remote job (grace {STOP_GRACE_S:g} s)")
                parts.signal_instance(cloud, instance, "SIGTERM" if event[1] == signal.SIGHUP else name)
                stop_deadline = now + STOP_GRACE_S
            if out.ready_s is None and now >= boot_deadline and self.signal is None:
                self.console.warn(f"instance {instance.id} was not ready after {self.boot_timeout_s:g} s: "
                                  "terminating it and trying the next candidate")
                getattr(follower, "stop", lambda: None)()
                return Outcome("not-ready", tail=out.tail)
            if job_deadline is not None and now >= job_deadline and not timed_out and self.signal is None:
                self.console.warn(f"the remote job outlived its timeout ({timeout_total:g} s with grace "
                                  "and retries): terminating the instance")
                timed_out = True
                out.ended_at = now
                break
            if stop_deadline is not None and now >= stop_deadline:
                self.console.warn(f"the remote job did not stop within {STOP_GRACE_S:g} s: terminating")
                out.ended_at = now
                break
        if out.kind == "detached":
            getattr(follower, "stop", lambda: None)()
            out.exit_code = 0
            return out
        self._drain(follower, out, launched, timeout_total, eofs, tag)
        if self.signal is not None:
            out.exit_code = self._signal_exit()
        elif timed_out:
            out.exit_code = EXIT_TIMEOUT
        elif out.ready_s is None:
            detail = "\n  ".join(out.tail[-10:]) or "(no output)"
            raise RemoteFailure(f"instance {instance.id} ended before it was ready "
                                f"(exit {container_code}); its last output:\n  {detail}")
        elif out.exit_code is None or out.exit_code == -1:
            out.exit_code = container_code if container_code is not None else EXIT_LAUNCH
        return out

    def _line(self, is_stderr: bool, text: str, out: Outcome, launched: float, timeout_total: float) -> bool:
        """Handle one output line; True when it was shown (not a marker)."""
        found = markers.parse(text)
        if found is None:
            out.tail = (out.tail + [text])[-20:]
            # As the instance wrote it (its runner already put timestamps on the job's lines), through
            # the console's writer, which survives a reader that went away (`| head`).
            self.console._write(self.console.err if is_stderr else self.console.out, text + "\n")
            return True
        kind, value = found
        if kind == "ready" and out.ready_s is None:
            out.ready_s = time.monotonic() - launched
            if self._tty:
                self.console._write(self.console.err, "\n")
            out.exit_code = -1
            self.console.info(f"Instance ready after {out.ready_s:.2f} s")
        elif kind == "record":
            out.record = value
        elif kind == "exit":
            out.exit_code = value
            out.exit_seen = True
        elif kind == "event":
            self.console.warn(f"instance reports {value.get('event')}: {parts.event_text(value)}")
        return False

    def _drain(self, follower: Any, out: Outcome, launched: float, timeout_total: float, eofs: int,
               tag: object) -> None:
        """The last lines (record and exit markers) may arrive just after the exit event."""
        deadline = time.monotonic() + DRAIN_S
        expected = getattr(follower, "streams", 2)
        while eofs < expected and time.monotonic() < deadline and self.signal is None:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event[0] in ("line", "eof", "exited") and event[-1] is not tag:
                continue
            if event[0] == "line":
                self._line(event[1], event[2], out, launched, timeout_total)
            elif event[0] == "eof":
                eofs += 1
        stop = getattr(follower, "stop", None)
        if stop:
            stop()

    # ---- capacity and leftovers --------------------------------------------------------------

    def _running_of(self, cloud: Cloud, job: str) -> list[Instance]:
        return sorted((i for i in cloud.describe(owner_id()) if i.tag("job") == job
                       and i.state in ("pending", "running")), key=lambda i: (i.launched_at, i.id))

    def _wait_for_slot(self, cloud: Cloud, job: str) -> int | None:
        """Block while the job has --max-concurrent instances running; a signal number if one came."""
        cap = self.args.max_concurrent
        announced = False
        while cap:
            running = self._running_of(cloud, job)
            if len(running) < cap:
                return None
            if not announced:
                self.console.info(f"Waiting: {len(running)} instance(s) of job {job} running "
                                  f"(--max-concurrent {cap})")
                announced = True
            try:
                event = self.events.get(timeout=SLOT_POLL_S)
            except queue.Empty:
                continue
            if event[0] == "signal":
                self.signal = event[1]
                return event[1]
        return None

    def _still_within_cap(self, cloud: Cloud, instance: Instance, job: str) -> bool:
        """Two launchers may both have seen a free slot: the later instance gives way."""
        ids = [i.id for i in self._running_of(cloud, job)]
        return instance.id not in ids or ids.index(instance.id) < self.args.max_concurrent
