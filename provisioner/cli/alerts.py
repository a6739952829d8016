"""`provisioner alerts test|check`: try the configured sinks; alert on the history's recent runs.

`check` is what a cron job or systemd timer runs (e.g. every 5 minutes with --since 1h): it raises
the alerts of every run in the window and every budget, skipping what was already announced (by the
daemon, by `run` or by an earlier check). Exit codes: 0 fine; 1 some delivery failed; 2 bad flags or
configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from provisioner.cli.context import Context
from provisioner.errors import UsageError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("alerts", parents=[common], help="test alert sinks; alert on recent runs and budgets")
    acts = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    test = acts.add_parser("test", parents=[common], help="send a test message to the configured sinks")
    test.add_argument("--sink", action="append", metavar="NAME", help="only this sink (repeatable)")
    test.set_defaults(func=run_test)
    check = acts.add_parser("check", parents=[common],
                            help="alert on the runs since --since and on budgets (already announced ones are skipped)")
    check.add_argument("--since", default="1d", metavar="WHEN",
                       help="runs started since: an ISO time, a date or a duration back from now (default 1d)")
    check.add_argument("--json", action="store_true", help="print each outcome as a JSON line")
    check.set_defaults(func=run_check)


def _settings(ctx: Context):
    settings = ctx.config.alerts.settings
    if not settings.sinks:
        raise UsageError(f"no alert sinks configured (config {ctx.config.path or 'none'}: alerts.sinks)")
    return settings


def run_test(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.alerts.sinks import SinkError, build_sink
    settings = _settings(ctx)
    names = args.sink or [s.name for s in settings.sinks]
    unknown = [n for n in names if n not in {s.name for s in settings.sinks}]
    if unknown:
        raise UsageError(f"unknown sink {', '.join(unknown)} (configured: {', '.join(s.name for s in settings.sinks)})")
    failed = 0
    for config in settings.sinks:
        if config.name not in names:
            continue
        try:
            build_sink(config).send("[provisioner] test alert", "A test message from `provisioner alerts test`.")
            print(f"{config.name} ({config.type}): sent")
        except SinkError as exc:
            failed += 1
            print(f"{config.name} ({config.type}): FAILED: {exc}", file=sys.stderr)
    return 1 if failed else 0


def run_check(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.alerts.dispatch import Alerter
    from provisioner.alerts.state import open_alert_state
    from provisioner.report.period import parse_since

    settings = _settings(ctx)
    since = parse_since(args.since)
    with ctx.open_history(create=False) as store, open_alert_state(ctx.history_location) as state:
        outcomes = Alerter(settings, state).check(store, since)
    counts = Counter(o.status for o in outcomes)
    for o in outcomes:
        if args.json:
            print(json.dumps({"kind": o.alert.kind, "key": o.alert.key, "status": o.status,
                              "delivered": o.delivered, "errors": o.errors}))
        for error in o.errors:
            print(f"provisioner: alert {o.alert.key}: {error}", file=sys.stderr)
    if not args.json:
        print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to announce")
    return 1 if counts.get("failed") else 0
