"""The EC2 warm pool against the fleet's limits (moto server, Jenkins emulator, daemon ticked by hand):
a parked spare whose AMI is no longer the one its architecture launches is retired and rebuilt; spares
count against `max_agents` (stopped or not) and against vCPU caps while they run (AWS counts running
instances only); the pool refills only within the caps."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from provisioner import aws
from provisioner.config import parse_config
from tests.clouds.conftest import REGION, ec2_moto_url, ec2_settings, moto_images, moto_world  # noqa: F401
from tests.daemon.conftest import ADMIN
from tests.daemon.test_ec2_batch_launch import buildable, ec2_cloud
from tests.daemon.test_pool_ec2 import CANON, LABEL, instances

pytestmark = pytest.mark.moto
BIG = "ec2 && vcpu=4"                        # c5.xlarge, 4 vCPUs, 0.17 USD/h (the small catalog)


def config(emu_url: str, owner: str, spares: int = 2, **caps):
    extra = "".join(f"  {k}: {v}\n" for k, v in caps.items())
    return parse_config(
        f"jenkins:\n  url: {emu_url}\n  user: {ADMIN[0]}\n"
        f"daemon:\n  owner_id: {owner}\n  interval_s: 0.3\n  listen: 127.0.0.1:0\n  boot_timeout_s: 300\n"
        f"  orphan_grace_s: 60\n  lease_ttl_s: 10\n{extra}"
        f"labels:\n  '{LABEL}':\n    pool: {{min_spare: {spares}, max_spare: {spares}}}\n", "pool-fleet.yaml")


def live(owner: str) -> dict[str, dict]:
    return {k: v for k, v in instances(owner).items() if v["State"]["Name"] not in ("shutting-down", "terminated")}


def events(caplog, name: str) -> list[dict]:
    out = []
    for r in caplog.records:
        try:
            body = json.loads(r.getMessage())
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("event") == name:
            out.append(body)
    return out


def parked_pool(emu, cloud, start_daemon, owner: str, **caps):
    d = start_daemon(config(emu.url, owner, **caps), cloud, ADMIN[1], owner=owner, run=False)
    d.daemon.pools.warm_s = 0.0
    assert d.daemon.tick().ok                      # two spares launched
    assert d.daemon.tick().ok                      # and parked
    assert {i["State"]["Name"] for i in live(owner).values()} == {"stopped"}
    return d


def test_a_parked_spare_of_an_old_ami_is_retired_and_rebuilt_from_the_new_one(
        emu, moto_env, ec2_moto_url, ec2_settings, moto_images, start_daemon, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    owner = "poolami"
    d = parked_pool(emu, ec2_cloud(ec2_moto_url, ec2_settings), start_daemon, owner)
    old = live(owner)
    assert {i["ImageId"] for i in old.values()} == {moto_images["x86_64"]}
    ec2 = aws.client("ec2", region=REGION)
    new_ami = ec2.register_image(Name="provisioner-agent-rebaked", Architecture="x86_64", RootDeviceName="/dev/xvda",
                                 BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
                                 VirtualizationType="hvm")["ImageId"]
    d.close()
    # the config now names the rebaked image for x86_64 (arm64 and the GPU slot unchanged); a restart
    changed = replace(ec2_settings, images={REGION: {**moto_images, "x86_64": new_ami}})
    d2 = start_daemon(config(emu.url, owner), ec2_cloud(ec2_moto_url, changed), ADMIN[1], owner=owner, run=False)
    d2.daemon.pools.warm_s = 0.0
    assert d2.daemon.tick().ok
    now = live(owner)
    assert not set(old) & set(now), "both spares of the old AMI were terminated"
    assert len(now) == 2 and {i["ImageId"] for i in now.values()} == {new_ami}
    assert all(i["tags"]["provisioner:pool"] == CANON for i in now.values())
    retired = events(caplog, "pool.spare-retired")
    assert {e["node"] for e in retired if e["reason"] == "image"} == set(old)
    assert {(e["image"], e["current"]) for e in retired if e["reason"] == "image"} == {(moto_images["x86_64"], new_ami)}
    reg = d2.daemon.metrics.registry
    assert reg.get_sample_value("provisioner_pool_spares_retired_total", {"reason": "image"}) == 2
    assert d2.daemon.tick().ok and d2.daemon.tick().ok   # the new ones park and stay: not retired again
    assert set(live(owner)) == set(now)
    assert {i["State"]["Name"] for i in live(owner).values()} == {"stopped"}


def test_stopped_spares_count_against_max_agents_so_only_what_fits_launches(
        emu, moto_env, ec2_moto_url, ec2_settings, start_daemon):  # noqa: F811
    owner = "poolcount"
    d = parked_pool(emu, ec2_cloud(ec2_moto_url, ec2_settings), start_daemon, owner, max_agents=3)
    emu.create_job("big", label=BIG, script=["sleep 1"], concurrent=True)
    emu.schedule("big", params={"N": "1"}, quiet_period=0)
    emu.schedule("big", params={"N": "2"}, quiet_period=0)
    buildable(emu, 2)
    report = d.daemon.tick()
    assert report.ok and report.actions["Provision"] == 1 and report.actions["Hold"] == 1, report
    assert len(live(owner)) == 3                   # two spares + one build: the cap
    reg = d.daemon.metrics.registry
    assert reg.get_sample_value("provisioner_queue_held_items", {"reason": "cap:global"}) == 1
    # a build of the spares' plan takes a spare: the same machine, not one more
    emu.create_job("train", label=LABEL, script=["sleep 1"])
    emu.schedule("train", quiet_period=0)
    buildable(emu, 3)                              # (no agent connects on moto: the two big ones wait)
    report = d.daemon.tick()
    assert report.ok and report.actions["Provision"] == 1, report
    assert len(live(owner)) == 3, "the spare served the build; the refill waits for room under the cap"


def test_running_spares_count_against_vcpu_caps_and_stopped_ones_do_not(
        emu, moto_env, ec2_moto_url, ec2_settings, start_daemon):  # noqa: F811
    owner = "poolvcpu"
    cloud = ec2_cloud(ec2_moto_url, ec2_settings)
    d = start_daemon(config(emu.url, owner, max_vcpus=6), cloud, ADMIN[1], owner=owner, run=False)
    d.daemon.pools.warm_s = 3600.0                 # the spares stay on their first boot (running)
    assert d.daemon.tick().ok
    assert len(live(owner)) == 2                   # 2 x c5.large = 4 of 6 vCPUs
    emu.create_job("big", label=BIG, script=["sleep 1"])
    emu.schedule("big", quiet_period=0)
    buildable(emu, 1)
    report = d.daemon.tick()
    assert report.ok and not report.actions.get("Provision") and report.actions["Hold"] == 1, report
    reg = d.daemon.metrics.registry
    assert reg.get_sample_value("provisioner_queue_held_items", {"reason": "cap:vcpu"}) == 1
    d.daemon.pools.warm_s = 0.0                    # parked: AWS no longer counts them
    assert d.daemon.tick().ok
    assert {i["State"]["Name"] for i in live(owner).values()} == {"stopped"}
    report = d.daemon.tick()
    assert report.ok and report.actions["Provision"] == 1, report
    assert sorted(i["InstanceType"] for i in live(owner).values()) == ["c5.large", "c5.large", "c5.xlarge"]


def test_the_pool_refills_only_within_the_caps(
        emu, moto_env, ec2_moto_url, ec2_settings, start_daemon, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    owner = "poolroom"
    d = start_daemon(config(emu.url, owner, spares=3, max_agents=2), ec2_cloud(ec2_moto_url, ec2_settings),
                     ADMIN[1], owner=owner, run=False)
    assert d.daemon.tick().ok and d.daemon.tick().ok
    assert len(live(owner)) == 2, "a pool of 3 under max_agents 2 holds 2"
    assert [e["reason"] for e in events(caplog, "pool.refill-held")] == ["cap:global"]   # logged once
