"""`provisioner attach RUN`: `logs -f`, and Ctrl-C stops the run (asks first unless --yes). A run
started with --output has its outputs brought back once it ended (or was stopped from here)."""

from __future__ import annotations

import argparse
import sys

from provisioner.cli.context import Context
from provisioner.cli.ps import guarded


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from provisioner.cli.logs import add_arguments
    p = sub.add_parser("attach", parents=[common], help="follow a remote run; Ctrl-C stops it")
    add_arguments(p)
    p.add_argument("--yes", "-y", action="store_true", help="Ctrl-C stops the run without asking")
    p.set_defaults(func=run_attach, follow=True)


@guarded
def run_attach(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.cli.logs import bring_back, print_lines, resolve
    from provisioner.cli.stop import stop
    backend, run = resolve(args, ctx)
    try:
        print_lines(backend, run, True, args.since)
        return bring_back(backend, run)
    except KeyboardInterrupt:
        if not args.yes and not _confirm(f"\nStop run {run.run_id}? [y/N] "):
            print("detached; the run goes on", file=sys.stderr)
            return 0
    code = stop(ctx, backend, run)
    return bring_back(backend, run) or code


def _confirm(prompt: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        return False
