"""`provisioner logs RUN [-f] [--since]`: a remote run's output from its start; the last lines are
its usage summary (from the record the instance wrote). With -f, a run started with --output has its
outputs brought back once it ended (provisioner/remote/output.py)."""

from __future__ import annotations

import argparse
import sys
import time

from provisioner.cli.context import Context
from provisioner.cli.ps import add_cloud_option, guarded, listed


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("logs", parents=[common], help="print a remote run's output (-f: until it ends)")
    add_arguments(p)
    p.set_defaults(func=run_logs)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="RUN", help="the run id `run --detach` printed (a unique prefix will do)")
    add_cloud_option(p)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    p.add_argument("--since", type=_since, metavar="DURATION",
                   help="only output of the last DURATION (e.g. 10m, 2h, 30s)")


def _since(text: str) -> float:
    from provisioner.errors import UsageError
    from provisioner.units import parse_duration_s
    try:
        return time.time() - parse_duration_s(text)
    except (UsageError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"--since: {exc}") from None


def resolve(args: argparse.Namespace, ctx: Context) -> tuple:
    from provisioner.remote import runs as remote_runs
    backend, _ = listed(args, ctx)
    return backend, remote_runs.find(backend, args.run_id)


def print_lines(backend, run, follow: bool, since: float | None = None) -> dict | None:
    """Print the run's output; the record marker becomes the summary line. Returns the record."""
    from provisioner.agent import markers
    from provisioner.runner.summary import summary_line
    record = None
    for line in backend.lines(run, follow, since):
        found = markers.parse(line)
        if found is None:
            print(line, flush=True)
        elif found[0] == "record":
            record = found[1]
            print(f"Summary: {summary_line(record)}", flush=True)
        elif found[0] == "exit":
            print(f"Exit code: {found[1]}", flush=True)
    return record


@guarded
def run_logs(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.remote import runs as remote_runs
    from provisioner.remote.run import owner_id
    backend, run = resolve(args, ctx)
    record = print_lines(backend, run, args.follow, args.since)
    if record is not None and args.follow and run.owner == owner_id():
        ended = [r for r in backend.list(None) if r.run_id == run.run_id]
        remote_runs.import_unseen(ctx, backend, ended, owner_id(), lambda text: print(text, file=sys.stderr))
    return bring_back(backend, run) if args.follow else 0


def bring_back(backend, run) -> int:
    """The run ended while followed: its outputs (if it has any) into its --output folder."""
    from provisioner.remote import output as remote_output
    return remote_output.bring_back(backend, run, None, lambda text: print(text, file=sys.stderr, flush=True))
