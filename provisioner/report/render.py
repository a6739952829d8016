"""Rendering of a report (the dict from `aggregate.build_report`) as a table, JSON or CSV.

CSV is long ("tidy") format, one value per row, so every section fits one header and a spreadsheet
or a warehouse can pivot it: section, job, build, week, metric, value.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Callable, Sequence

from provisioner.units import format_duration

GIB = 1024 ** 3
CSV_COLUMNS = ("section", "job", "build", "week", "metric", "value")


def render(report: dict, fmt: str, options_note: str = "") -> str:
    """The report as text in `fmt` (table, json or csv)."""
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "csv":
        return render_csv(report)
    return render_table(report, options_note)


# -- table -----------------------------------------------------------------------------------------

def _money(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}" if abs(x) >= 100 else f"{x:.4f}" if abs(x) < 1 else f"{x:.2f}"


def _gib(b: float | None) -> str:
    return "-" if b is None else f"{b / GIB:.2f}"


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:g}" if isinstance(x, float) else str(x)


Column = tuple[str, Callable[[dict], str], str]  # header, cell, '<' or '>'


def table(rows: Sequence[dict], columns: Sequence[Column]) -> list[str]:
    """Aligned text lines: a header, then one line per row."""
    cells = [[cell(r) for _, cell, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _, _) in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(f"{v:{a}{w}}" for v, w, (_, _, a) in zip(values, widths, columns)).rstrip()
    return [line([h for h, _, _ in columns])] + [line(c) for c in cells]


def render_table(report: dict, note: str = "") -> str:
    t = report["totals"]
    out = [f"{t['runs']} runs of {t['jobs']} jobs from {t['first_start']} to {t['last_start']}: "
           f"${_money(t['cost_usd'])} over {t['hours']:.1f} machine hours"
           + (f" ({t['runs_without_cost']} runs have no price and count as $0)" if t["runs_without_cost"] else "")]
    out += ["", "Most expensive jobs"] + table(report["jobs"], [
        ("job", lambda r: r["job"], "<"), ("team", lambda r: r["team"] or "-", "<"),
        ("runs", lambda r: str(r["runs"]), ">"), ("failed", lambda r: str(r["failed"]), ">"),
        ("cost $", lambda r: _money(r["cost_usd"]), ">"), ("$/run", lambda r: _money(r["cost_per_run_usd"]), ">"),
        ("hours", lambda r: f"{r['hours']:.1f}", ">"),
        ("median", lambda r: format_duration(r["median_duration_s"]) if r["median_duration_s"] else "-", ">"),
        ("mem peak GiB", lambda r: _gib(r["mem_peak_bytes"]), ">")])
    out += ["", "Most expensive builds"] + table(report["builds"], [
        ("job", lambda r: r["job"], "<"), ("build", lambda r: r["build"] or "-", "<"),
        ("runs", lambda r: str(r["runs"]), ">"), ("cost $", lambda r: _money(r["cost_usd"]), ">"),
        ("hours", lambda r: f"{r['hours']:.2f}", ">"), ("started", lambda r: r["start"][:16], "<"),
        ("types", lambda r: ",".join(r["instance_types"]) or "local", "<")])
    out += ["", "Most memory"] + (table(report["memory"], [
        ("job", lambda r: r["job"], "<"), ("peak GiB", lambda r: f"{r['mem_peak_gib']:.2f}", ">"),
        ("build", lambda r: r["build"] or "-", "<"), ("type", lambda r: r["instance_type"] or "local", "<")])
        if report["memory"] else ["(no memory samples)"])
    out += ["", "Cost per job per week (weeks start on Monday, UTC)"] + table(report["weekly"], [
        ("week", lambda r: r["week"], "<"), ("job", lambda r: r["job"], "<"),
        ("runs", lambda r: str(r["runs"]), ">"), ("cost $", lambda r: _money(r["cost_usd"]), ">")])
    out += ["", "Spot savings against on-demand"] + _spot_lines(report["spot"])
    out += ["", "Incidents"] + _incident_lines(report["incidents"])
    out += ["", "Requested against used" + (f" ({note})" if note else "")] + _rightsizing_lines(report["rightsizing"])
    return "\n".join(out) + "\n"


def _spot_lines(s: dict) -> list[str]:
    if not s["runs"]:
        return ["(no spot runs with both prices known)"]
    lines = [f"{s['runs']} spot runs ({s['interrupted']} interrupted): paid ${_money(s['spot_cost_usd'])}, "
             f"on demand ${_money(s['ondemand_cost_usd'])}, saved ${_money(s['savings_usd'])} "
             f"({_num(s['savings_pct'])}%)"
             + (f"; on-demand prices of {s['ondemand_from_catalog']} runs from the catalog"
                if s.get("ondemand_from_catalog") else "")]
    return lines + table(s["jobs"], [
        ("job", lambda r: r["job"], "<"), ("runs", lambda r: str(r["runs"]), ">"),
        ("paid $", lambda r: _money(r["spot_cost_usd"]), ">"),
        ("on-demand $", lambda r: _money(r["ondemand_cost_usd"]), ">"),
        ("saved $", lambda r: _money(r["savings_usd"]), ">"), ("saved %", lambda r: _num(r["savings_pct"]), ">")])


def _incident_lines(i: dict) -> list[str]:
    t = i["totals"]
    lines = [f"{t['failed']} failed, {t['timeout']} timed out, {t['oom']} OOM-killed, "
             f"{t['interrupted']} interrupted"]
    if i["recent"]:
        lines += ["newest:"] + table(i["recent"], [
            ("started", lambda r: r["start"][:19], "<"), ("job", lambda r: r["job"], "<"),
            ("build", lambda r: r["build"] or "-", "<"), ("what", lambda r: ",".join(r["kinds"]), "<"),
            ("exit", lambda r: str(r["exit_code"]), ">"), ("type", lambda r: r["instance_type"] or "local", "<"),
            ("market", lambda r: r["market"] or "-", "<")])
    return lines


def _rightsizing_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(no job records a request or a known instance type, or has enough runs for advice)"]
    lines = table(rows, [
        ("job", lambda r: r["job"], "<"), ("runs", lambda r: str(r["runs"]), ">"),
        ("against", lambda r: {"requested": "asked", "paid": r["instance_type"]}.get(r["basis"], "-"), "<"),
        ("mem", lambda r: _num(_basis(r, "mem")), ">"), ("peak", lambda r: _num(r["peak_mem_gib"]), ">"),
        ("use", lambda r: _num(r["suggested_mem_gib"]), ">"), ("vcpu", lambda r: _num(_basis(r, "vcpu")), ">"),
        ("peak %", lambda r: _num(r["peak_cpu_pct"]), ">"), ("use", lambda r: _num(r["suggested_vcpu"]), ">"),
        ("fits", lambda r: r["suggested_type"] or "-", "<"),
        ("saved $/run", lambda r: _money(r["saving_usd_per_run"]), ">")])
    advice = [a for r in rows for a in r["advice"]]
    return lines + ([""] + [f"- {a}" for a in advice] if advice else [])


def _basis(r: dict, what: str) -> float | None:
    """The size a job is measured against: what it asked for, else what its type has."""
    if r["basis"] == "requested":
        return r["requested_mem_gib"] if what == "mem" else r["requested_vcpu"]
    return r["paid_mem_gib"] if what == "mem" else r["paid_vcpu"]


# -- csv -------------------------------------------------------------------------------------------

def csv_rows(report: dict) -> list[tuple]:
    """(section, job, build, week, metric, value) for every number (and advice line) in the report."""
    rows: list[tuple] = [("totals", "", "", "", k, v) for k, v in report["totals"].items()]
    for j in report["jobs"]:
        rows += [("jobs", j["job"], "", "", k, v) for k, v in j.items() if k != "job"]
    for b in report["builds"]:
        rows += [("builds", b["job"], b["build"] or "", "", k, v) for k, v in b.items()
                 if k in ("runs", "cost_usd", "hours", "start")]
    for m in report["memory"]:
        rows.append(("memory", m["job"], m["build"] or "", "", "mem_peak_bytes", m["mem_peak_bytes"]))
    for w in report["weekly"]:
        rows += [("weekly", w["job"], "", w["week"], k, w[k]) for k in ("runs", "cost_usd")]
    s = report["spot"]
    rows += [("spot", "", "", "", k, v) for k, v in s.items() if k != "jobs"]
    for j in s["jobs"]:
        rows += [("spot", j["job"], "", "", k, v) for k, v in j.items() if k != "job"]
    rows += [("incidents", "", "", "", k, v) for k, v in report["incidents"]["totals"].items()]
    for r in report["rightsizing"]:
        rows += [("rightsizing", r["job"], "", "", k, v) for k, v in r.items() if k not in ("job", "advice")]
        rows += [("rightsizing", r["job"], "", "", "advice", a) for a in r["advice"]]
    return rows


def render_csv(report: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(("" if v is None else v for v in row) for row in csv_rows(report))
    return buf.getvalue()
