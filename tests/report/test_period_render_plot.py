"""--since parsing, the table/JSON/CSV renderings and the SVG plot."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import pytest

from provisioner.errors import UsageError
from provisioner.report.aggregate import ReportOptions, build_report
from provisioner.report.period import parse_since
from provisioner.report.plot import OTHER, cost_series, with_gaps, write_plot
from provisioner.report.render import CSV_COLUMNS, render
from tests.factories import run

NOW = datetime(2026, 1, 10, 12, 30, 15, 999, tzinfo=timezone.utc)
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("text, expected", [
    (None, None), ("7d", "2026-01-03T12:30:15Z"), ("12h", "2026-01-10T00:30:15Z"),
    ("2026-01-05", "2026-01-05T00:00:00Z"), ("2026-01-05T01:02:03Z", "2026-01-05T01:02:03Z"),
], ids=["none", "7d", "12h", "date", "iso"])
def test_parse_since(text, expected):
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "-7d", "2026-13-01", "2026-01-05T01:02:03"])
def test_parse_since_rejects_with_a_usage_error(text):
    with pytest.raises(UsageError, match="bad --since"):
        parse_since(text, NOW)


def sample_records() -> list[dict]:
    return [run("build", 1, cost_usd=0.5, market="spot", price_usd_per_hour=0.1, ondemand_usd_per_hour=0.3,
                requested_mem_gib=16),
            run("build", 2, cost_usd=0.7, requested_mem_gib=16),
            run("build", 3, cost_usd=0.6, exit_code=124, timed_out=True, requested_mem_gib=16),
            run("build", 4, cost_usd=0.6, requested_mem_gib=16),
            run("test, \"quoted\"", 5, cost_usd=0.2, exit_code=137, oom_killed=True)]


def test_table_has_every_section_and_the_advice():
    text = render(build_report(sample_records()), "table", "note")
    for heading in ("Most expensive jobs", "Most expensive builds", "Most memory", "Cost per job per week",
                    "Spot savings against on-demand", "Incidents", "Requested against used (note)"):
        assert heading in text
    assert "1 failed" not in text and "1 timed out, 1 OOM-killed" in text
    assert "- job build asked for 16 GiB and peaked at 2 GiB over 3 runs: use mem=3" in text


def test_json_and_csv_carry_the_same_numbers():
    report = build_report(sample_records(), ReportOptions(top=5))
    assert json.loads(render(report, "json")) == report
    rows = list(csv.reader(io.StringIO(render(report, "csv"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    by = {(r[0], r[1], r[2], r[3], r[4]): r[5] for r in rows[1:]}
    assert float(by[("jobs", "build", "", "", "cost_usd")]) == 2.4
    assert by[("jobs", 'test, "quoted"', "", "", "oom_kills")] == "1"
    assert float(by[("spot", "", "", "", "savings_usd")]) == pytest.approx(0.2)
    assert by[("rightsizing", "build", "", "", "suggested_mem_gib")] == "3"


def test_cost_series_buckets_and_groups_the_rest():
    records = [run(f"j{i}", i, cost_usd=float(i + 1)) for i in range(4)]
    bucket, series = cost_series(records, top=2)
    assert bucket == "day" and list(series) == ["j3", "j2", OTHER]
    assert series[OTHER] == [("2026-01-01", 3.0)]
    long = [run("a", 1, cost_usd=1) | {"start": "2025-01-01T00:00:00Z"}, run("a", 2, cost_usd=2)]
    assert cost_series(long, top=5)[0] == "week"


def test_plot_draws_one_series_per_job(tmp_path):
    records = [run(job, n, cost_usd=0.1 * n) | {"start": f"2026-01-{1 + n:02d}T10:00:00Z"}
               for job in ("build", "test", "deploy <prod>") for n in range(6)]
    path = tmp_path / "cost.svg"
    assert write_plot(records, str(path), top=10) == 3
    root = ET.parse(path).getroot()
    series = {g.get("id"): g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("series-")}
    assert set(series) == {"series-build", "series-test", "series-deploy <prod>"}
    for g in series.values():  # each is a drawn line, with a marker per day
        assert g.find(f"{SVG}path") is not None
    assert "deploy &lt;prod&gt;" in path.read_text() or "deploy <prod>" not in path.read_text()


def test_plot_format_follows_the_extension(tmp_path):
    records = [run("a", n, cost_usd=1.0 + n) | {"start": f"2026-01-{1 + n:02d}T10:00:00Z"} for n in range(3)]
    assert write_plot(records, str(tmp_path / "x.png")) == 1
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for bad in ("x.pdf", "x"):
        with pytest.raises(UsageError, match="FILE.svg or FILE.png"):
            write_plot(records, str(tmp_path / bad))


def test_days_without_runs_are_gaps_not_lines(tmp_path):
    records = [run("a", 1, cost_usd=1.0) | {"start": "2026-01-01T10:00:00Z"},
               run("a", 2, cost_usd=2.0) | {"start": "2026-01-02T10:00:00Z"},
               run("a", 3, cost_usd=3.0) | {"start": "2026-01-06T10:00:00Z"}]
    bucket, series = cost_series(records, top=5)
    assert with_gaps(series["a"], bucket) == [("2026-01-01", 1.0), ("2026-01-02", 2.0), ("2026-01-03", None),
                                              ("2026-01-04", None), ("2026-01-05", None), ("2026-01-06", 3.0)]
    path = tmp_path / "gaps.svg"
    write_plot(records, str(path))
    group = next(g for g in ET.parse(path).getroot().iter(f"{SVG}g") if g.get("id") == "series-a")
    line = group.find(f"{SVG}path").get("d")
    assert line.count("M ") == 2            # two pieces: Jan 1-2, then Jan 6 alone
