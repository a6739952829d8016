"""The daemon on the `ec2` cloud (moto server) with the Jenkins emulator: a burst of items planned
alike is one CreateFleet, and every instance gets its own node, tags and secret bundle.

moto starts nothing, so no agent connects: what is checked is what an agent would find on boot (the
SSM parameter named after its instance id: the node's name and the node's own secret) and that a
further tick, or a restarted daemon, launches nothing twice."""

from __future__ import annotations

import json

import pytest

from provisioner import aws
from provisioner.clouds.ec2 import Ec2Cloud
from tests.clouds.conftest import (REGION, ec2_moto_url, ec2_settings, moto_client_factory,  # noqa: F401
                                   moto_images, moto_world)
from tests.daemon.conftest import ADMIN, daemon_config

pytestmark = pytest.mark.moto
LABEL = "ec2 && vcpu=2 && mem=4"


def ec2_cloud(url: str, settings) -> Ec2Cloud:
    return Ec2Cloud(moto_client_factory(url), settings)


def bundle_of(instance_id: str) -> dict:
    ssm = aws.client("ssm", region=REGION)
    return json.loads(ssm.get_parameter(Name=f"/provisioner/agents/{instance_id}",
                                        WithDecryption=True)["Parameter"]["Value"])


def buildable(emu, n: int) -> None:
    emu.wait_for(lambda: sum(1 for i in emu.queue_items() if i.get("buildable")) == n, timeout=10)


def test_a_burst_planned_alike_is_one_fleet_and_each_agent_gets_its_own_identity(
        emu, moto_env, ec2_moto_url, ec2_settings, start_daemon):  # noqa: F811
    cloud = ec2_cloud(ec2_moto_url, ec2_settings)
    owner = "batch"
    d = start_daemon(daemon_config(emu.url, owner_id=owner, max_agents=20), cloud, ADMIN[1], owner=owner, run=False)
    jobs = [f"train-{n}" for n in range(6)]         # six jobs, one plan: one request for all
    for job in jobs:
        emu.create_job(job, label=LABEL, script=["sleep 1"])
    assert len({emu.schedule(job, quiet_period=0) for job in jobs}) == 6
    buildable(emu, 6)

    report = d.daemon.tick()
    assert report.ok and report.actions["Provision"] == 6 and not report.failures, report
    assert cloud.calls["create_fleet"] == 1
    instances = cloud.describe(owner)
    nodes = {n["displayName"] for n in emu.nodes() if n["displayName"].startswith("prov-")}
    assert len(instances) == 6 and {i.tag("node") for i in instances} == nodes
    for inst in instances:
        node = inst.tag("node")
        bundle = bundle_of(inst.id)
        assert bundle["node_name"] == node and bundle["run_id"] == node
        assert bundle["agent_secret"] == emu.secret(node)          # this node's secret, not a neighbour's
        assert inst.tag("queue-id") == node.rsplit("q", 1)[1]
        assert inst.tags["Name"] == node and inst.tags["provisioner:batch"]
        item = emu.queue_item(int(inst.tag("queue-id")))
        assert item is not None and inst.tag("job") == item["task"]["name"]

    read = instances[0].id                           # as its agent does: read, then deleted
    aws.client("ssm", region=REGION).delete_parameter(Name=f"/provisioner/agents/{read}")
    again = d.daemon.tick()                          # a further tick: nothing new, nothing put again
    assert again.ok and not again.actions.get("Provision") and cloud.calls["create_fleet"] == 1
    with pytest.raises(Exception, match="ParameterNotFound"):
        bundle_of(read)

    restarted = ec2_cloud(ec2_moto_url, ec2_settings)
    d2 = start_daemon(daemon_config(emu.url, owner_id=owner, max_agents=20), restarted, ADMIN[1], owner=owner,
                      run=False)
    after = d2.daemon.tick()                         # rebuilt from tags and nodes: launches nothing twice
    assert after.ok and not after.actions.get("Provision") and restarted.calls.get("create_fleet", 0) == 0
    assert len(restarted.describe(owner)) == 6


def test_instances_left_untagged_by_a_dying_daemon_keep_their_identity_after_a_restart(
        emu, moto_env, ec2_moto_url, ec2_settings, start_daemon):  # noqa: F811
    """CreateTags never lands (as if the daemon died right after CreateFleet): the restarted daemon's
    describe finishes the assignment the same way, so tags, nodes and bundles agree; nothing relaunches."""
    from tests.clouds.conftest import Harness, aws_error
    owner = "batch-crash"
    denied = Harness(ec2_moto_url, ec2_settings,
                     {"create_tags": [aws_error("UnauthorizedOperation", operation="CreateTags")] * 4})
    d = start_daemon(daemon_config(emu.url, owner_id=owner), denied.cloud, ADMIN[1], owner=owner, run=False)
    jobs = [f"fit-{n}" for n in range(4)]
    for job in jobs:
        emu.create_job(job, label=LABEL, script=["sleep 1"])
        emu.schedule(job, quiet_period=0)
    buildable(emu, 4)
    assert d.daemon.tick().actions["Provision"] == 4
    raw = denied.raw.describe_instances(Filters=[{"Name": "tag:provisioner:owner", "Values": [owner]}])
    untagged = [i["InstanceId"] for r in raw["Reservations"] for i in r["Instances"]
                if not any(t["Key"] == "provisioner:node" for t in i.get("Tags", []))]
    assert len(untagged) == 4                         # the fleet ran; no instance carries its node yet

    restarted = ec2_cloud(ec2_moto_url, ec2_settings)
    d2 = start_daemon(daemon_config(emu.url, owner_id=owner), restarted, ADMIN[1], owner=owner, run=False)
    after = d2.daemon.tick()
    assert after.ok and not after.actions.get("Provision") and not after.actions.get("Terminate"), after
    assert restarted.calls["create_tags"] == 4 and restarted.calls.get("create_fleet", 0) == 0
    for inst in restarted.describe(owner):
        assert bundle_of(inst.id)["node_name"] == inst.tag("node")   # what the agent will join as


def test_a_restarted_daemon_puts_the_bundles_it_never_put_and_terminating_removes_them(
        emu, moto_env, ec2_moto_url, ec2_settings, start_daemon):  # noqa: F811
    owner = "batch-handover"
    d = start_daemon(daemon_config(emu.url, owner_id=owner), ec2_cloud(ec2_moto_url, ec2_settings), ADMIN[1],
                     owner=owner, run=False)
    jobs = [f"eval-{n}" for n in range(3)]
    queued = {}
    for job in jobs:
        emu.create_job(job, label=LABEL, script=["sleep 1"])
        queued[job] = emu.schedule(job, quiet_period=0)
    buildable(emu, 3)
    assert d.daemon.tick().actions["Provision"] == 3
    ssm = aws.client("ssm", region=REGION)
    first, *lost = sorted(ec2_cloud(ec2_moto_url, ec2_settings).describe(owner), key=lambda i: i.tag("node"))
    waiting = ssm.get_parameter(Name=f"/provisioner/agents/{first.id}", WithDecryption=True)["Parameter"]
    for inst in lost:                                # the daemon died before handing these over
        ssm.delete_parameter(Name=f"/provisioner/agents/{inst.id}")

    d2 = start_daemon(daemon_config(emu.url, owner_id=owner), ec2_cloud(ec2_moto_url, ec2_settings), ADMIN[1],
                      owner=owner, run=False)
    report = d2.daemon.tick()
    assert report.ok and not report.actions.get("Provision") and not report.failures, report
    for inst in lost:
        assert bundle_of(inst.id) == {"agent_secret": emu.secret(inst.tag("node")), "node_name": inst.tag("node"),
                                      "run_id": inst.tag("node"), "report_url": d2.url,
                                      "report_token": d2.daemon.executor.tokens.for_node(inst.tag("node"))}
    kept = ssm.get_parameter(Name=f"/provisioner/agents/{first.id}", WithDecryption=True)["Parameter"]
    assert (kept["Value"], kept["Version"]) == (waiting["Value"], waiting["Version"])   # left as it was

    emu.cancel(int(first.tag("queue-id")))           # its item is gone: instance ended, bundle removed
    ended = d2.daemon.tick()
    assert ended.actions.get("Terminate"), ended
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=f"/provisioner/agents/{first.id}")
    assert bundle_of(lost[0].id)["node_name"] == lost[0].tag("node")   # the others' are untouched
