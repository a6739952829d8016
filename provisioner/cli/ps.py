"""`provisioner ps`: remote runs (running and recently finished), read from where they run."""

from __future__ import annotations

import argparse
import json
import sys
import time

from provisioner.cli.context import Context
from provisioner.errors import ProvisionerError


class CloudUnreachable(ProvisionerError):
    """The cloud holding the runs could not be asked (no credentials, engine down). Exit 1."""


def guarded(func):
    """Cloud and engine errors of `ps`/`logs`/`stop`/`attach` as one line, never a traceback."""
    def wrapper(args: argparse.Namespace, ctx: Context) -> int:
        try:
            return func(args, ctx)
        except (ProvisionerError, KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as exc:
            where = args.cloud or ctx.config.cloud
            raise CloudUnreachable(f"cannot read remote runs on the {where} cloud: {type(exc).__name__}: {exc}") from None
    return wrapper


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ps", parents=[common], help="list remote runs (running and recently finished)")
    add_cloud_option(p)
    p.add_argument("--all", action="store_true", help="other users' runs too (where the credentials allow)")
    p.add_argument("--json", action="store_true", help="one JSON array")
    p.set_defaults(func=run_ps)


def add_cloud_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cloud", choices=_clouds(), help="where the runs are (default: the config's cloud)")


def listed(args: argparse.Namespace, ctx: Context, all_users: bool = False) -> tuple:
    """(backend, runs): every run visible to these credentials, after importing the records of
    this machine's finished runs not seen before."""
    from provisioner.remote import runs as remote_runs
    from provisioner.remote.parts import launching_user
    from provisioner.remote.run import owner_id
    backend = remote_runs.runs_backend(ctx, args.cloud)
    runs = backend.list(None if all_users else launching_user())
    remote_runs.import_unseen(ctx, backend, runs, owner_id(), lambda text: print(text, file=sys.stderr))
    return backend, runs


@guarded
def run_ps(args: argparse.Namespace, ctx: Context) -> int:
    _, runs = listed(args, ctx, args.all)
    now = time.time()
    runs.sort(key=lambda r: (r.state == "ended", -r.started))
    if args.json:
        print(json.dumps([r.as_json(now) for r in runs], indent=2))
        return 0
    header = ("RUN", "JOB", "TYPE", "MARKET", "REGION", "STATE", "STARTED", "ELAPSED", "COST")
    rows = [header]
    for r in runs:
        cost = r.cost_usd(now)
        rows.append((r.run_id[:13], r.job, r.instance_type, r.market, r.region, r.state,
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "?",
                     _duration(r.elapsed_s(now)), "?" if cost is None else f"${cost:.4f}"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    if not runs:
        print("(no remote runs)", file=sys.stderr)
    return 0


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _clouds() -> tuple[str, ...]:
    """The clouds `--cloud` may name: the registered ones (clouds/registry.py)."""
    from provisioner.clouds import registry
    return registry.names()
