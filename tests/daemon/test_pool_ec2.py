"""The warm pool on the `ec2` cloud (moto server) with the Jenkins emulator, the daemon ticked by
hand: spares are on-demand instances without a node, their user-data runs on every boot; after
their first boot they are stopped; a build of their plan starts one (its node tags and its own
secret bundle then), the pool refills, and a build of another plan launches as usual.

moto boots nothing (no agent connects): what is checked is what EC2 holds, as an agent would find
it on its next boot."""

from __future__ import annotations

import base64

import pytest

from provisioner import aws
from provisioner.config import parse_config
from tests.clouds.conftest import REGION, ec2_moto_url, ec2_settings, moto_images, moto_world  # noqa: F401
from tests.daemon.conftest import ADMIN
from tests.daemon.test_ec2_batch_launch import buildable, bundle_of, ec2_cloud

pytestmark = pytest.mark.moto
LABEL = "ec2 && vcpu=2 && mem=4"
CANON = "ec2&&vcpu=2&&mem=4"


def config(emu_url: str, owner: str):
    return parse_config(
        f"jenkins:\n  url: {emu_url}\n  user: {ADMIN[0]}\n"
        f"daemon:\n  owner_id: {owner}\n  interval_s: 0.3\n  listen: 127.0.0.1:0\n  boot_timeout_s: 300\n"
        "  orphan_grace_s: 60\n  lease_ttl_s: 10\n"
        f"labels:\n  '{LABEL}':\n    pool: {{min_spare: 2, max_spare: 2}}\n", "pool-ec2.yaml")


def instances(owner: str) -> dict[str, dict]:
    ec2 = aws.client("ec2", region=REGION)
    pages = ec2.describe_instances(Filters=[{"Name": "tag:provisioner:owner", "Values": [owner]}])
    return {i["InstanceId"]: {**i, "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}}
            for r in pages["Reservations"] for i in r["Instances"]}


def test_spares_boot_once_park_and_start_for_builds_of_their_plan(
        emu, moto_env, ec2_moto_url, ec2_settings, start_daemon):  # noqa: F811
    cloud = ec2_cloud(ec2_moto_url, ec2_settings)
    owner = "poolec2"
    d = start_daemon(config(emu.url, owner), cloud, ADMIN[1], owner=owner, run=False)
    d.daemon.pools.warm_s = 0.0                    # moto "boots" at once: park on the next tick
    assert d.daemon.tick().ok
    spares = instances(owner)
    assert len(spares) == 2 and not [n for n in emu.nodes() if n["displayName"].startswith("prov-")]
    for iid, inst in spares.items():
        assert inst["tags"]["provisioner:pool"] == CANON and "provisioner:node" not in inst["tags"]
        assert "InstanceLifecycle" not in inst                                  # on demand, never spot
        data = aws.client("ec2", region=REGION).describe_instance_attribute(InstanceId=iid, Attribute="userData")
        text = base64.b64decode(data["UserData"]["Value"]).decode()
        assert "[scripts-user, always]" in text and "provisioner-agent secrets --for-instance" in text
    assert d.daemon.tick().ok                      # first boot done: parked
    assert {i["State"]["Name"] for i in instances(owner).values()} == {"stopped"}
    reg = d.daemon.metrics.registry
    assert d.daemon.tick().ok                      # (the gauge shows what a tick observed)
    assert reg.get_sample_value("provisioner_pool_spares", {"label": CANON, "state": "stopped"}) == 2
    assert len(instances(owner)) == 2, "a parked spare is neither an orphan nor replaced"
    fleets = cloud.calls["create_fleet"]

    emu.create_job("train", label=LABEL, script=["sleep 1"], concurrent=True)
    emu.schedule("train", params={"N": "1"}, quiet_period=0)
    emu.schedule("train", params={"N": "2"}, quiet_period=0)
    buildable(emu, 2)
    report = d.daemon.tick()
    assert report.ok and report.actions["Provision"] == 2 and not report.failures, report
    now = instances(owner)
    claimed = {iid: now[iid] for iid in spares}
    nodes = {n["displayName"] for n in emu.nodes() if n["displayName"].startswith("prov-")}
    assert {i["tags"].get("provisioner:node") for i in claimed.values()} == nodes and len(nodes) == 2
    for iid, inst in claimed.items():
        assert inst["State"]["Name"] in ("pending", "running") and "provisioner:pool" not in inst["tags"]
        assert bundle_of(iid)["agent_secret"] == emu.secret(inst["tags"]["provisioner:node"])
    # parked with shutdown -> stop, claimed with shutdown -> terminate (its build's end ends billing);
    # moto accepts ModifyInstanceAttribute for this attribute but does not keep it: the calls are counted
    assert cloud.calls["modify_instance_attribute"] == 4 and cloud.calls["stop_instances"] == 1
    assert cloud.calls["start_instances"] == 2
    refill = {iid: i for iid, i in now.items() if iid not in spares}
    assert len(refill) == 2 and all(i["tags"]["provisioner:pool"] == CANON for i in refill.values())
    assert reg.get_sample_value("provisioner_pool_hits_total", {"label": CANON}) == 2
    assert reg.get_sample_value("provisioner_pool_misses_total", {"label": CANON}) is None
    assert cloud.calls["create_fleet"] - fleets <= 2, "the two builds launched nothing: only the refill"

    emu.create_job("big", label="ec2 && vcpu=4", script=["sleep 1"])
    qid = emu.schedule("big", quiet_period=0)
    buildable(emu, 3)                              # (no agent connects on moto: the two still wait)
    assert d.daemon.tick().ok
    [big] = [i for i in instances(owner).values() if i["tags"].get("provisioner:node") == f"prov-{owner}-q{qid}"]
    assert big["InstanceId"] not in now and big["InstanceType"] == "c5.xlarge"
    assert d.daemon.tick().ok
    assert reg.get_sample_value("provisioner_pool_spares", {"label": CANON, "state": "stopped"}) == 2
