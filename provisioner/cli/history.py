"""`provisioner history import|export|show|migrate`: the usage records behind every plan.

`export --s3 s3://BUCKET/PREFIX` writes one JSON object per record to S3 for a warehouse
(provisioner.export, docs/warehouse.md); `migrate --to URL` copies the store into another one,
typically a team PostgreSQL store (provisioner.history.postgres).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from provisioner import records
from provisioner.cli.context import Context
from provisioner.errors import UsageError
from provisioner.units import format_duration

GIB = 1024 ** 3


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("history", parents=[common], help="import, export and show usage records")
    hs = p.add_subparsers(dest="history_command", required=True, metavar="ACTION")
    imp = hs.add_parser("import", parents=[common], help="add usage records from a JSONL file")
    imp.add_argument("file", metavar="FILE.jsonl", help="one usage record per line ('-' for stdin)")
    imp.set_defaults(func=run_import)
    exp = hs.add_parser("export", parents=[common],
                        help="write every usage record as JSONL to stdout, or one object per record to S3")
    exp.add_argument("--job", help="only this job")
    exp.add_argument("--since", metavar="WHEN", help="only runs that started at or after this time: an ISO "
                     "time, a date (2026-01-05) or a duration back from now (7d)")
    exp.add_argument("--s3", metavar="s3://BUCKET/PREFIX",
                     help="write PREFIX/dt=YYYY-MM-DD/<run_id>.json objects instead of stdout (idempotent)")
    exp.add_argument("--workers", type=_workers, default=16, metavar="N", help="S3 uploads in flight (default 16)")
    exp.set_defaults(func=run_export)
    mig = hs.add_parser("migrate", parents=[common],
                        help="copy every usage record into another store, e.g. a team postgresql:// store")
    mig.add_argument("--to", required=True, metavar="URL_OR_PATH",
                     help="the target store: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB or a SQLite path")
    mig.set_defaults(func=run_migrate)
    show = hs.add_parser("show", parents=[common], help="a job's runs and what they used")
    show.add_argument("job", metavar="JOB")
    show.add_argument("--json", action="store_true", help="print the records as a JSON list")
    show.set_defaults(func=run_show)


def _workers(text: str) -> int:
    raw = text.strip()
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw[:4]) <= 256 or len(raw) > 3:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 256, got {text[:40]!r}")
    return int(raw)


def read_jsonl(lines, result) -> list[dict]:
    """Valid records from JSONL lines; bad lines go to `result.rejected` with their numbers."""
    good = []
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            result.rejected.append((number, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
            continue
        if not line.strip(" \t\r\n"):  # JSON's whitespace only: "\x1c" is not a blank line
            continue
        try:
            good.append(records.normalise(records.loads(line)))
        except json.JSONDecodeError as exc:
            result.rejected.append((number, f"not JSON ({exc.msg} at column {exc.colno})"))
        except records.RecordError as exc:
            result.rejected.append((number, str(exc)))
        except ValueError as exc:  # NaN, nesting too deep, a number too long to convert
            result.rejected.append((number, f"not strict JSON ({str(exc)[:80]})"))
    return good


def run_import(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.history import ImportResult

    result = ImportResult()
    try:
        fh = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    with fh:
        good = read_jsonl(fh, result)
    with ctx.open_history() as store:
        result.added, result.present = store.add_many(good)  # one transaction: all or none
    for number, reason in result.rejected:
        print(f"{args.file}:{number}: rejected: {reason}", file=sys.stderr)
    print(f"imported {result.added}, already present {result.present}, rejected {len(result.rejected)}"
          f" into {ctx.history_location}")
    return 1 if result.rejected else 0


def run_export(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.report.period import parse_since

    since = parse_since(args.since)
    from provisioner.remote.runs import import_pending
    import_pending(ctx, lambda text: print(text, file=sys.stderr))    # remote runs whose launcher died
    if args.s3:
        return _export_s3(args, ctx, since)
    with ctx.open_history(create=False) as store:
        out = sys.stdout
        for record in store.records(since=since, job=args.job):
            out.write(records.dumps(record) + "\n")
    return 0


def _export_s3(args: argparse.Namespace, ctx: Context, since: str | None) -> int:
    from provisioner.export import export_records, parse_s3_url

    parse_s3_url(args.s3)  # a bad URL is a usage error before the store is opened
    with ctx.open_history(create=False) as store:
        result = export_records(store.records(since=since, job=args.job), args.s3, workers=args.workers)
    print(f"exported {result.written} records ({result.bytes} bytes) to {args.s3.rstrip('/')}/dt=*/")
    return 0


def run_migrate(args: argparse.Namespace, ctx: Context) -> int:
    """Copy the store into `--to`: one transaction on the target, keys already there are skipped."""
    from provisioner.history import open_store
    from provisioner.history.postgres import redact

    source_at, target_at = ctx.history_location, args.to
    if not target_at.startswith(("postgresql://", "postgres://")):
        target_at = str(Path(target_at).expanduser().resolve())
        if not source_at.startswith(("postgresql://", "postgres://")) and \
                Path(source_at).expanduser().resolve() == Path(target_at):
            raise UsageError(f"--to {args.to} is the same store as the source")
    elif target_at == source_at:
        raise UsageError(f"--to {redact(args.to)} is the same store as the source")
    with ctx.open_history(create=False) as source, open_store(target_at) as target:
        added, present = target.add_many(source.records())
        total = target.count()
    print(f"copied {added}, already present {present} from {redact(source_at)} into {redact(target_at)} "
          f"({total} records there now)")
    return 0


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    from provisioner.remote.runs import import_pending
    import_pending(ctx, lambda text: print(text, file=sys.stderr))    # remote runs whose launcher died
    with ctx.open_history(create=False) as store:
        runs = store.runs(args.job)
        if not runs:
            known = store.jobs()
            hint = f" (known jobs: {', '.join(known[:10])}{'…' if len(known) > 10 else ''})" if known else \
                " (the history is empty)"
            raise UsageError(f"no runs of job {args.job!r} in {ctx.history_location}{hint}")
    if args.json:
        print(records.dumps(runs))
        return 0
    print(f"{'start':<21} {'build':<7} {'type':<14} {'market':<9} {'exit':>4} {'duration':>9} "
          f"{'cpu avg/max %':>14} {'mem max':>9} {'cost $':>8}")
    for r in runs:
        cpu = (f"{r.get('cpu_avg_pct') or 0:.0f}/{r.get('cpu_max_pct') or 0:.0f}"
               if r.get("cpu_avg_pct") is not None else "-")
        mem = f"{r['mem_max_bytes'] / GIB:.2f}G" if r.get("mem_max_bytes") else "-"
        cost = f"{r['cost_usd']:.4f}" if r.get("cost_usd") is not None else "-"
        flag = " OOM" if r.get("oom_killed") else " TIMEOUT" if r.get("timed_out") else \
            " INTERRUPTED" if r.get("interrupted") else ""
        print(f"{r['start'][:19]:<21} {str(r.get('build') or ''):<7} {r.get('instance_type') or 'local':<14} "
              f"{r.get('market') or '-':<9} {r['exit_code']:>4} {format_duration(r['duration_s']):>9} "
              f"{cpu:>14} {mem:>9} {cost:>8}{flag}")
    counted = records.count_once(runs)             # a build's cost once: its build record
    ok = [r for r in counted if records.succeeded(r)]
    total = sum(r.get("cost_usd") or 0 for r in counted)
    line = f"{len(runs)} runs, {len(ok)} successful, total cost ${total:.2f}"
    if ok:
        line += f", median duration {format_duration(statistics.median(r['duration_s'] for r in ok))}"
    print(line)
    return 0
