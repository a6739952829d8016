"""The warm pool's pure decisions (provisioner/pool.py) and its config keys."""

from __future__ import annotations

import pytest

from provisioner import pool
from provisioner.config import ConfigError, parse_config
from provisioner.errors import InputError
from provisioner.pool import PoolSpec, Spare

A = ("c5.large", "us-east-1", "on-demand")
B = ("m5.xlarge", "us-east-1", "on-demand")
NOW = 1_700_000_000.0          # 2023-11-14 22:13:20 UTC
IMG = "sha256:new"


def spare(name: str, state: str = "ready", offer=A, image: str = IMG, launched: float = NOW - 60,
          ready: float | None = NOW - 50, labels=("ec2", "vcpu=2")) -> Spare:
    return Spare(name, offer, image, state, launched, ready if state == "ready" else None, frozenset(labels))


def sat(label, node_labels) -> bool:       # a stand-in for Jenkins' test: every atom present
    return all(a.strip() in node_labels for a in (label or "").split("&&"))


# ---- settings ---------------------------------------------------------------------------------

def test_pool_entry_defaults_and_values() -> None:
    assert pool.parse_pool("ec2", {"min_spare": 2}) == PoolSpec("ec2", 2, 2, None, None)
    spec = pool.parse_pool("ec2", {"min_spare": 1, "max_spare": 3, "hours": "08:00-18:30", "max_idle": "2h"})
    assert spec == PoolSpec("ec2", 1, 3, (480, 1110), 7200.0)
    assert pool.parse_reuse({}) == pool.ReuseSpec(300.0, 10)
    assert pool.parse_reuse({"idle": "10m", "max_builds": 3}) == pool.ReuseSpec(600.0, 3)


@pytest.mark.parametrize("entry, message", [
    ({"min_spare": -1}, "pool.min_spare: must be a whole number from 0 to 50"),
    ({"min_spare": 3, "max_spare": 2}, "pool.max_spare: must be at least min_spare (3)"),
    ({"min_spare": True}, "pool.min_spare"),
    ({"hours": "8-8"}, "pool.hours: bad hours '8-8': the window is empty"),
    ({"hours": "25-3"}, "pool.hours: bad hours '25-3'"),
    ({"max_idle": "soon"}, "pool.max_idle: bad duration"),
    ({"size": 2}, "pool: unknown key 'size'"),
    ("two", "pool: must be a mapping"),
], ids=["negative", "max-below-min", "bool", "empty-hours", "bad-hour", "bad-duration", "unknown", "not-map"])
def test_pool_entry_errors_name_the_key(entry, message) -> None:
    with pytest.raises(InputError) as exc:
        pool.parse_pool("ec2", entry)
    assert message in exc.value.message


def test_config_accepts_pool_and_reuse_and_names_a_bad_key() -> None:
    c = parse_config("labels:\n  'ec2 && vcpu=2':\n    pool: {min_spare: 2, max_spare: 4, hours: '7-19'}\n"
                     "    reuse: {idle: 5m, max_builds: 10}\n", "c.yaml")
    specs = pool.pools_from_config(c.labels)
    assert list(specs) == ["ec2&&vcpu=2"] and specs["ec2&&vcpu=2"].max_spare == 4
    with pytest.raises(ConfigError, match=r"pool\.max_spare: must be at least min_spare"):
        parse_config("labels:\n  ec2: {pool: {min_spare: 2, max_spare: 1}}\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"reuse\.max_builds"):
        parse_config("labels:\n  ec2: {reuse: {max_builds: 0}}\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"unknown key 'warm'"):
        parse_config("labels:\n  ec2: {warm: 1}\n", "c.yaml")


# ---- how many -----------------------------------------------------------------------------------

def test_hours_window_in_utc_also_across_midnight() -> None:
    day = 1_700_006_400.0                                     # 2023-11-15 00:00 UTC
    assert pool.in_hours((480, 1080), day + 9 * 3600)
    assert not pool.in_hours((480, 1080), day + 18 * 3600)
    assert pool.in_hours((1320, 360), day + 23 * 3600) and pool.in_hours((1320, 360), day + 3600)
    assert not pool.in_hours((1320, 360), day + 12 * 3600)
    assert pool.in_hours(None, day)


def test_target_follows_recent_builds_between_min_and_max_and_is_zero_outside_hours() -> None:
    spec = PoolSpec("ec2", 1, 3, None, None)
    assert [pool.target(spec, NOW, n) for n in (0, 1, 2, 3, 9)] == [1, 1, 2, 3, 3]
    closed = PoolSpec("ec2", 2, 2, (0, 60), None)             # 00:00-01:00 only; NOW is 22:13
    assert pool.target(closed, NOW, 5) == 0


def test_likely_offer_is_the_plan_most_recent_builds_had() -> None:
    assert pool.likely_offer({"a": A, "b": B, "c": B}, {"a": 5, "b": 1, "c": 1}) == A
    assert pool.likely_offer({"a": A, "b": B}, {}) == A            # a tie: the stable order
    assert pool.likely_offer({"a": None}, {"a": 3}) is None


# ---- which retire ---------------------------------------------------------------------------------

def test_retire_old_image_other_offer_boot_timeout_and_idle() -> None:
    spec = PoolSpec("ec2", 4, 4, None, 3600)
    spares = [spare("old-image", image="sha256:old"), spare("other", offer=B),
              spare("stuck", state="starting", launched=NOW - 700), spare("idle", ready=NOW - 4000),
              spare("fine")]
    out = pool.retirements(spares, spec, now=NOW, want=4, image=IMG, offer=A, boot_timeout_s=600)
    assert out == [("old-image", "image"), ("other", "offer"), ("stuck", "boot-timeout"), ("idle", "max-idle")]
    assert pool.to_launch(spares, [n for n, _ in out], 4) == 3


def test_an_ec2_spare_retires_when_its_ami_is_not_the_one_of_its_architecture_now() -> None:
    spec = PoolSpec("ec2", 3, 3, None, None)
    arm = ("c7g.large", "us-east-1", "on-demand")
    spares = [spare("x86-old", image="ami-old"), spare("x86-new", image="ami-x86"),
              spare("arm", offer=arm, image="ami-arm"), spare("unknown", image="")]
    current = {A: "ami-x86", arm: "ami-arm"}
    out = pool.retirements(spares, spec, now=NOW, want=3, image=lambda s: current.get(s.offer), offer=None,
                           boot_timeout_s=600)
    assert out == [("x86-old", "image")]                          # unknown on either side: kept
    assert pool.retirements(spares, spec, now=NOW, want=4, image=lambda s: None, offer=None,
                            boot_timeout_s=600) == []              # the AMI cannot be told: none retires


def test_shrink_retires_starting_ones_first_then_the_oldest() -> None:
    spec = PoolSpec("ec2", 0, 3, None, None)
    spares = [spare("r-old", launched=NOW - 300), spare("r-new", launched=NOW - 100),
              spare("s", state="starting", launched=NOW - 5)]
    assert pool.retirements(spares, spec, now=NOW, want=1, image=IMG, offer=A, boot_timeout_s=600) == \
        [("s", "shrink"), ("r-old", "shrink")]
    assert pool.retirements(spares, spec, now=NOW, want=0, image=None, offer=None, boot_timeout_s=600) == \
        [("s", "shrink"), ("r-old", "shrink"), ("r-new", "shrink")]
    assert pool.to_launch(spares, [], 5) == 2


# ---- which spare a build takes ------------------------------------------------------------------

def test_claim_takes_a_ready_spare_of_the_builds_plan_whose_labels_fit() -> None:
    spares = [spare("late", ready=NOW - 10), spare("early", ready=NOW - 90),
              spare("booting", state="starting"), spare("big", offer=B)]
    assert pool.claim("ec2 && vcpu=2", A, spares, sat).node == "early"
    assert pool.claim("ec2 && vcpu=2", A, spares, sat, taken={"early"}).node == "late"
    assert pool.claim("ec2 && vcpu=2", A, spares, sat, taken={"early", "late"}) is None   # booting: no
    assert pool.claim("ec2 && mem=8", A, spares, sat) is None          # labels do not fit
    assert pool.claim("ec2 && vcpu=2", ("t3.micro", "us-east-1", "on-demand"), spares, sat) is None
    assert pool.claim("ec2", None, spares, sat) is None                  # no plan: no spare


def test_a_stopped_spare_is_claimed_after_ready_ones() -> None:
    spares = [spare("stopped", state="stopped"), spare("ready")]
    assert pool.claim("ec2", A, spares, sat).node == "ready"
    assert pool.claim("ec2", A, spares[:1], sat).node == "stopped"


# ---- metrics and dashboard ----------------------------------------------------------------------

def test_pool_metrics_are_exported_capped_and_on_the_dashboard() -> None:
    import json
    import re
    from pathlib import Path
    from types import SimpleNamespace

    from provisioner.daemon.metrics import DaemonMetrics
    from provisioner.daemon.pool_metrics import PoolMetrics
    metrics = DaemonMetrics()
    pm = PoolMetrics(metrics.registry)
    long_label = "ec2&&" + "x" * 400
    pm.keeper = SimpleNamespace(states={("ec2&&vcpu=2", "ready"): 2, ("ec2&&vcpu=2", "stopped"): 0,
                                        (long_label, "starting"): 1})
    pm.hits.labels("ec2&&vcpu=2").inc()
    pm.misses.labels("ec2&&vcpu=2").inc(3)
    pm.retired.labels("image").inc()
    r = metrics.registry
    assert r.get_sample_value("provisioner_pool_spares", {"label": "ec2&&vcpu=2", "state": "ready"}) == 2
    assert r.get_sample_value("provisioner_pool_hits_total", {"label": "ec2&&vcpu=2"}) == 1
    assert r.get_sample_value("provisioner_pool_misses_total", {"label": "ec2&&vcpu=2"}) == 3
    assert r.get_sample_value("provisioner_pool_spares_retired_total", {"reason": "image"}) == 1
    spares = [s for f in r.collect() if f.name == "provisioner_pool_spares" for s in f.samples]
    assert all(len(s.labels["label"]) <= 120 for s in spares) and len(spares) == 3   # a long label is cut
    names = {f.name + ("_total" if f.type == "counter" else "") for f in r.collect() if "pool" in f.name}
    dashboard = (Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json").read_text()
    used = {m for p in json.loads(dashboard)["panels"] for t in p.get("targets", [])
            for m in re.findall(r"provisioner_pool_[a-z_]+", t["expr"])}
    assert used == names


# ---- agent reuse ----------------------------------------------------------------------------------

def test_next_build_is_the_oldest_fitting_item_only_when_it_is_the_same_job() -> None:
    spec = pool.ReuseSpec(300, 3)
    labels = frozenset({"ec2", "vcpu=2"})
    waiting = [((1, 1), "other", "ec2 && mem=8"), ((2, 2), "train", "ec2 && vcpu=2"), ((3, 3), "train", "ec2")]
    assert pool.next_build("train", labels, 1, spec, waiting, sat) == (2, 2)
    assert pool.next_build("train", labels, 1, spec, waiting, sat, taken={(2, 2)}) == (3, 3)
    assert pool.next_build("train", labels, 3, spec, waiting, sat) is None           # max_builds
    first_other = [((0, 0), "other", "ec2"), *waiting]        # Jenkins would hand the node to "other"
    assert pool.next_build("train", labels, 1, spec, first_other, sat) is None


def test_recycle_kills_the_build_users_processes_or_all_but_init_and_itself() -> None:
    from provisioner.agent.recycle import leftovers
    procs = [(1, 0, 0), (7, 1, 0), (8, 7, 0), (20, 1, 1000), (21, 20, 1000), (30, 8, 0)]
    assert leftovers(procs, keep={7, 8}, agent_uid=None) == [20, 21, 30]
    assert leftovers(procs, keep={7, 8}, agent_uid=1000) == [20, 21]


def test_a_reused_agent_gets_a_new_token_per_build_and_the_last_one_stops_working() -> None:
    from provisioner.daemon.state import Tokens
    tokens = Tokens(b"secret")
    first = tokens.for_node("prov-t-q1")
    assert tokens.node_of(first) == "prov-t-q1"
    second = tokens.for_node("prov-t-q1", 2)
    assert second != first and tokens.node_of(second) == "prov-t-q1"
    assert tokens.node_of(first) is None
    assert tokens.node_of(second.replace("~2.", "~3.")) is None                      # forged build number
