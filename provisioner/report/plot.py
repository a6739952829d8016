"""`report --plot FILE.svg|FILE.png`: cost over time, one line per job, drawn by matplotlib (Agg,
no display); the format follows the file's extension.

The series are computed by pure functions (`cost_series`, `with_gaps`) and only drawn here. A day
(or week) without runs is a gap in its job's line, not a straight line to the next run. Each job's
line is an SVG group with id `series-<job>`, so a test (or a person) can find the lines in the file.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, timedelta

from provisioner.errors import UsageError
from provisioner.report.aggregate import run_cost, week_of

OTHER = "(other jobs)"
DAILY_MAX_DAYS = 120  # beyond this, daily points are too dense to read: plot weekly sums


def cost_series(records: list[dict], top: int) -> tuple[str, dict[str, list[tuple[str, float]]]]:
    """(bucket, {job: [(bucket start date, cost)]}) for the `top` jobs by cost; the rest are summed
    as one OTHER series. Buckets are days, or weeks when the records span more than 120 days."""
    if not records:
        return "day", {}
    span = (date.fromisoformat(records[-1]["start"][:10]) - date.fromisoformat(records[0]["start"][:10])).days
    bucket = "week" if span > DAILY_MAX_DAYS else "day"
    total: dict[str, float] = defaultdict(float)
    for r in records:
        total[r["job"]] += run_cost(r) or 0.0
    ranked = sorted(total, key=lambda j: (-total[j], j))
    keep = set(ranked[:top])
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        key = week_of(r["start"]) if bucket == "week" else r["start"][:10]
        job = r["job"] if r["job"] in keep else OTHER
        sums[job][key] += run_cost(r) or 0.0
    order = [j for j in ranked if j in keep] + ([OTHER] if OTHER in sums else [])
    return bucket, {job: sorted(sums[job].items()) for job in order}


FORMATS = ("svg", "png")


def with_gaps(points: list[tuple[str, float]], bucket: str) -> list[tuple[str, float | None]]:
    """The points with None for every day (or week) between them that has no runs: drawn as a gap."""
    if not points:
        return []
    step = timedelta(days=7 if bucket == "week" else 1)
    have = dict(points)
    day, last = date.fromisoformat(points[0][0]), date.fromisoformat(points[-1][0])
    out: list[tuple[str, float | None]] = []
    while day <= last:
        out.append((day.isoformat(), have.get(day.isoformat())))
        day += step
    return out


def write_plot(records: list[dict], path: str, top: int = 10, title: str = "Cost per job") -> int:
    """Draw the plot at `path` (SVG or PNG, by its extension); returns the number of series drawn."""
    fmt = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if fmt not in FORMATS:
        raise UsageError(f"--plot {path}: name the file FILE.svg or FILE.png (the extension sets the format)")
    import matplotlib
    matplotlib.use("Agg")  # no display on CI machines and servers
    from matplotlib import pyplot as plt
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    bucket, series = cost_series(records, top)
    # Reproducible files: no creation date, a fixed salt for the ids matplotlib generates.
    matplotlib.rcParams["svg.hashsalt"] = "provisioner"
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    try:
        for job, points in series.items():
            full = with_gaps(points, bucket)
            xs = [date.fromisoformat(d) for d, _ in full]
            ys = [math.nan if c is None else c for _, c in full]     # NaN breaks the line
            (line,) = ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=job)
            line.set_gid(f"series-{job}")
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.set_ylabel(f"USD per {bucket}")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
        try:
            if fmt == "svg":
                fig.savefig(path, format="svg", metadata={"Date": None})
            else:
                fig.savefig(path, format="png", dpi=120, metadata={"Software": None})
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
    return len(series)
