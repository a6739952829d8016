"""`provisioner stop RUN`: stop a remote run's job cleanly (SIGTERM, grace, kill), keep the usage
record the instance writes, and end the instance."""

from __future__ import annotations

import argparse
import sys
import time

from provisioner.cli.context import Context
from provisioner.cli.ps import add_cloud_option, guarded

STOP_WAIT_S = 40.0     # the remote job's grace to stop (remote.STOP_GRACE_S) and the record's way back


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("stop", parents=[common], help="stop a remote run (its usage record is kept)")
    p.add_argument("run_id", metavar="RUN", help="the run id (a unique prefix will do)")
    add_cloud_option(p)
    p.set_defaults(func=run_stop)


@guarded
def run_stop(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.cli.logs import resolve
    backend, run = resolve(args, ctx)
    return stop(ctx, backend, run)


def stop(ctx: Context, backend, run, wait_s: float = STOP_WAIT_S) -> int:
    from provisioner.remote import runs as remote_runs
    from provisioner.runner.summary import summary_line
    err = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    if run.state == remote_runs.ENDED:
        err(f"run {run.run_id} has already ended")
    else:
        err(f"Stopping run {run.run_id} on instance {run.instance_id} (SIGTERM, then up to {wait_s:g} s)")
        backend.signal(run)
        if backend.stop_terminates:
            backend.terminate(run)            # EC2: the instance's shutdown stops the job; its record is logged
        deadline = time.monotonic() + wait_s
        while backend.alive(run) and time.monotonic() < deadline:
            time.sleep(0.5)
        if backend.alive(run):
            err(f"the job did not stop within {wait_s:g} s: killing it")
        backend.terminate(run)
    record = remote_runs.record_of(backend.lines(run, follow=False))
    if record is None:
        err(f"instance {run.instance_id} wrote no usage record: recording the stop from here")
        now = time.time()
        record = {"job": run.job, "run_id": run.run_id, "start": remote_runs._iso(run.started),
                  "duration_s": round(run.elapsed_s(now), 3), "exit_code": 143, "interrupted": True,
                  "price_usd_per_hour": run.price, "cost_usd": run.cost_usd(now)}
    elif record.get("exit_code") in (129, 130, 143):
        record["interrupted"] = True
    full = remote_runs.imported_record(record, run)
    if run.run_id not in remote_runs.seen():
        try:
            with ctx.open_history() as store:
                store.add(full)
            remote_runs.mark_seen(run.run_id)
        except Exception as exc:
            err(f"usage record not written to the history store: {exc}")
    err(f"Summary: {summary_line(full)}")
    return 0
