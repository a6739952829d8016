"""`provisioner report` through the installed console script: formats, filters and bad input."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import xml.etree.ElementTree as ET

import pytest

from provisioner.catalog import load_catalog
from provisioner.history import open_store

from tests.factories import run


@pytest.fixture
def hist(cli, tmp_path) -> str:
    path = str(tmp_path / "h.sqlite3")
    records = [run("build", n, cost_usd=0.5 + n / 10, requested_mem_gib=64, mem_gib=9, requested_vcpu=8,
                   cpu_max=150) | {"start": f"2026-01-{1 + n:02d}T10:00:00Z"} for n in range(6)]
    records += [run("test", n, cost_usd=0.1, market="spot", price_usd_per_hour=0.1, ondemand_usd_per_hour=0.4)
                | {"start": f"2026-01-{1 + n:02d}T11:00:00Z"} for n in range(3)]
    records.append(run("test", 9, exit_code=137, oom_killed=True) | {"start": "2026-01-09T00:00:00Z"})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert cli("history", "import", str(tmp_path / "in.jsonl"), "--history", path).returncode == 0
    return path


def test_table_report_with_advice(cli, hist):
    out = cli("report", "--history", hist)
    assert out.returncode == 0, out.stderr
    assert "10 runs of 2 jobs from 2026-01-01T10:00:00Z to 2026-01-09T00:00:00Z" in out.stdout
    assert "job build asked for 64 GiB and peaked at 9 GiB over 6 runs: use mem=10" in out.stdout
    assert "job build asked for 8 vCPUs" in out.stdout and "use vcpu=2" in out.stdout
    assert "0 failed, 0 timed out, 1 OOM-killed, 0 interrupted" in out.stdout


def test_json_csv_since_job_top_and_plot(cli, hist, tmp_path):
    data = json.loads(cli("report", "--history", hist, "--json", "--since", "2026-01-03").stdout)
    assert data["totals"]["runs"] == 6 and data["spot"]["savings_usd"] == pytest.approx(0.3)
    one = json.loads(cli("report", "--history", hist, "--format", "json", "--job", "test", "--top", "1").stdout)
    assert [j["job"] for j in one["jobs"]] == ["test"] and len(one["builds"]) == 1
    rows = list(csv.DictReader(io.StringIO(cli("report", "--history", hist, "--format", "csv").stdout)))
    assert {r["section"] for r in rows} >= {"totals", "jobs", "builds", "weekly", "spot", "incidents", "rightsizing"}
    svg = tmp_path / "cost.svg"
    plotted = cli("report", "--history", hist, "--plot", str(svg), "--format", "json")
    assert plotted.returncode == 0 and "plot: 2 series" in plotted.stderr
    ids = {g.get("id") for g in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}g")}
    assert {"series-build", "series-test"} <= ids


@pytest.mark.parametrize("args, code, message", [
    (["--job", "nope"], 2, "no runs of job 'nope'"),
    (["--since", "2030-01-01"], 1, "no runs since 2030-01-01T00:00:00Z"),
    (["--since", "last tuesday"], 2, "bad --since"),
    (["--top", "0"], 2, "must be at least 1"),
    (["--plot", "x.pdf"], 2, "name the file FILE.svg or FILE.png"),
], ids=["unknown-job", "empty-period", "bad-since", "bad-top", "plot-not-svg-or-png"])
def test_bad_input_is_a_clear_message(cli, hist, args, code, message):
    out = cli("report", "--history", hist, *args)
    assert out.returncode == code and message in out.stderr and "Traceback" not in out.stderr


def test_bad_stores_are_clear_messages(cli, tmp_path):
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"garbage" * 1000)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    empty = tmp_path / "empty.sqlite3"
    open_store(str(empty)).close()  # an empty store
    for path, message in ((corrupt, "not a usable history store"),
                          (foreign, "not a provisioner history store"),
                          (tmp_path / "missing.sqlite3", "no history store at"),
                          (empty, "is empty: nothing to report")):
        out = cli("report", "--history", str(path))
        assert out.returncode == 1, (path, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "missing.sqlite3").exists()


def test_rightsizing_against_the_type_paid_for_with_the_catalog(cli, tmp_path):
    """No run recorded a request or an on-demand price: the catalog sizes and prices the type."""
    path = str(tmp_path / "h.sqlite3")
    records = [run("team/costly", n, instance_type="r5.8xlarge", market="spot", price_usd_per_hour=0.6,
                   mem_gib=9, cpu_max=110, duration=1800) | {"start": f"2026-02-{1 + n:02d}T10:00:00Z"}
               for n in range(10)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert cli("history", "import", str(tmp_path / "in.jsonl"), "--history", path).returncode == 0

    catalog = load_catalog()  # what the command reads too (same environment)
    paid = catalog.find("r5.8xlarge", "us-east-1", "on-demand")
    fits = [o for o in catalog.offers if o.region == "us-east-1" and o.market == "spot" and o.arch == "x86_64"
            and not o.gpu_count and o.current_generation and not o.burstable and o.memory_gib >= 11]
    best = min(fits, key=lambda o: o.price)

    out = cli("report", "--history", path)
    assert out.returncode == 0, out.stderr
    assert (f"job team/costly ran on r5.8xlarge (32 vCPU, 256 GiB) and peaked at 1.1 vCPU and 9 GiB over "
            f"10 runs: mem=10 would fit {best.instance_type} ({best.vcpu} vCPU, {best.memory_gib:g} GiB, "
            f"${best.price:.4f}/h spot), saving ${(0.6 - best.price) / 2:.4f}/run") in out.stdout
    assert "on-demand prices of 10 runs from the catalog" in out.stdout
    data = json.loads(cli("report", "--history", path, "--json").stdout)
    (row,) = data["rightsizing"]
    assert (row["basis"], row["suggested_type"], row["paid_usd_per_hour"]) == ("paid", best.instance_type, 0.6)
    assert data["spot"]["ondemand_cost_usd"] == pytest.approx(paid.price * 5)
    assert data["spot"]["savings_usd"] == pytest.approx((paid.price - 0.6) * 5)
