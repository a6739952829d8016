"""Monitoring that ships: the Prometheus alert rules (promtool check + their unit tests), the names
they use against what the daemon exports, and each Grafana panel's unit against its metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from provisioner.daemon.metrics import AgentInfo, DaemonMetrics, Snapshot

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "provisioner-rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules-test.yml"
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
METRIC = re.compile(r"\b(provisioner_[a-zA-Z0-9_]+)\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: scripts/test installs Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


@pytest.mark.parametrize("args", [["check", "rules", RULES.name], ["test", "rules", RULES_TEST.name]],
                         ids=["check", "test"])
def test_promtool(args):
    done = subprocess.run([promtool(), *args], cwd=RULES.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def exported() -> set[str]:
    """Every sample name the daemon's registry can export (counters with _total, histograms' parts)."""
    metrics = DaemonMetrics()   # gauges of the loop's snapshot exist once a tick has published one
    metrics.publish(Snapshot(1.0, {"ec2": 1}, (AgentInfo("n", "busy", "c5.large", "spot", 0.04, 2, 4),),
                             5.0, {"budget": 1}, {"ml": 0.5}, {"ml": 5.0}, {("us-east-1", "standard", "spot"): 2},
                             {("us-east-1", "standard", "spot"): (32.0, "quota")}, 64.0))
    names = set()
    for family in metrics.registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_every_rule_uses_metrics_the_daemon_exports_and_is_tested():
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    names = exported()
    for rule in rules:
        used = METRIC.findall(rule["expr"])
        assert all(m in names for m in used), f"{rule['alert']}: {set(used) - names} not exported"
    tested = {t["alertname"] for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
              for t in case["alert_rule_test"]}
    assert tested == {r["alert"] for r in rules}


def unit_of(expr: str) -> str:
    """The unit a query's result has, from its metric's name suffix and the function applied."""
    metric = METRIC.findall(expr)[0]
    if metric.endswith("_seconds_bucket") or metric.endswith("_timestamp_seconds"):
        return "s"                                   # histogram_quantile of seconds, or time() - ts
    if metric.endswith("_usd_per_hour") or metric.endswith("_usd"):
        return "currencyUSD"
    if metric.endswith("_ratio"):
        return "percentunit"
    if metric.endswith("_total"):
        return "reqps" if re.search(r"\brate\(", expr) else "short"   # per second, or a count
    return "short"                                   # a gauge of things


def test_every_panel_unit_matches_its_metrics():
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] == "row":
            continue
        default = panel["fieldConfig"]["defaults"].get("unit")
        by_ref = {o["matcher"]["options"]: p["value"] for o in panel["fieldConfig"].get("overrides", [])
                  if o["matcher"]["id"] == "byFrameRefID" for p in o["properties"] if p["id"] == "unit"}
        for target in panel["targets"]:
            shown = by_ref.get(target["refId"], default)
            assert shown == unit_of(target["expr"]), f"{panel['title']} {target['refId']}: unit {shown}"
