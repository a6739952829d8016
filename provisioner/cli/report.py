"""`provisioner report`: which jobs cost most, use most memory, ask for more than they use.

Exit codes: 0 a report; 1 the period holds no runs (or the store cannot be read); 2 a bad flag or an
unknown job.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from provisioner.cli.context import Context
from provisioner.errors import ProvisionerError, UsageError
from provisioner.history.postgres import redact
from provisioner.records import count_once


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report", parents=[common], help="cost, memory, spot savings, incidents and right-sizing",
        description="Most expensive jobs and builds, most memory, cost per job per week, spot savings, "
                    "timeouts / OOM kills / interruptions, and requested against used resources.")
    p.add_argument("--since", metavar="WHEN",
                   help="only runs started since: an ISO time, a date (2026-01-05) or a duration back "
                        "from now (7d, 30d, 12h); default: all")
    p.add_argument("--job", action="append", metavar="JOB", help="only this job (repeatable)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="table (default), json (one object) or csv (long format: section,job,build,"
                        "week,metric,value)")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    p.add_argument("--plot", metavar="FILE.svg|FILE.png",
                   help="also draw cost over time, one line per job (SVG or PNG, by the extension)")
    p.add_argument("--top", type=_positive_int, default=10, metavar="N",
                   help="rows in each ranked section and lines in the plot (default 10)")
    p.set_defaults(func=run_report)


def load_records(store, since: str | None, jobs: list[str] | None, location: str) -> list[dict]:
    """The period's records for the asked jobs; clear errors for unknown jobs and empty periods."""
    if jobs:
        known = set(store.jobs())
        unknown = [j for j in jobs if j not in known]
        if unknown:
            names = sorted(known)
            hint = f"known jobs: {', '.join(names[:10])}{'…' if len(names) > 10 else ''}" if names \
                else "the history is empty"
            raise UsageError(f"no runs of job {', '.join(map(repr, unknown))} in {location} ({hint})")
    if jobs and len(jobs) == 1:
        records = list(store.records(since=since, job=jobs[0]))
    else:
        wanted = set(jobs or ())
        records = [r for r in store.records(since=since) if not wanted or r["job"] in wanted]
    records = count_once(records)                   # a build's cost once, not once per inner run
    if not records:
        total = store.count()
        what = f" of {', '.join(jobs)}" if jobs else ""
        if not total:
            raise ProvisionerError(f"the history at {location} is empty: nothing to report "
                                   "(add runs with `provisioner run` or `provisioner history import`)")
        raise ProvisionerError(f"no runs{what} since {since} in {location} ({total} runs are older); "
                               "widen --since")
    return records


def _catalog(defaults: Any):
    """The catalog that sizes and prices the types runs paid for; None (with a warning) if unreadable."""
    from provisioner.catalog import load_catalog
    try:
        return load_catalog(score_source=defaults.score_source,
                            max_age_days=float(defaults.catalog_max_age_days))
    except (ProvisionerError, OSError, ValueError) as exc:
        print(f"report: no catalog ({exc}); right-sizing is against requests only", file=sys.stderr)
        return None


def run_report(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.report import ReportOptions, build_report, parse_since
    from provisioner.report.aggregate import gc_paused
    from provisioner.report.render import render

    since = parse_since(args.since)
    defaults = ctx.config.defaults
    options = ReportOptions(top=args.top, mem_headroom=float(defaults.mem_headroom),
                            min_runs=int(defaults.autotune_min_runs))
    with ctx.open_history(create=False) as store, gc_paused():  # one dict per record, no cycles
        records = load_records(store, since, args.job, redact(ctx.history_location))
    catalog = _catalog(defaults)
    report = build_report(records, options, catalog)
    if catalog is not None and (report["spot"]["ondemand_from_catalog"]
                                or any(r["paid_vcpu"] is not None for r in report["rightsizing"])):
        for warning in catalog.warnings:
            print(warning, file=sys.stderr)
    note = (f"as planned: memory = peak x (1 + {options.mem_headroom:.0%} headroom, or 3 standard "
            f"deviations of 5+ steady peaks, at least 10%) + 0.5 GiB, rounded up; advice needs "
            f"{options.min_runs} successful runs; types from the catalog, same region, market and "
            "architecture")
    text = render(report, args.format, note)
    if args.plot:
        from provisioner.report.plot import write_plot
        n = write_plot(records, args.plot, top=args.top)
        print(f"plot: {n} series in {args.plot}", file=sys.stderr)
    sys.stdout.write(text)
    return 0
