"""Batched launches on the EC2 adapter against the moto server: one CreateFleet per batch and round,
per-instance tags written afterwards, partial capacity, errors per batch, and crash recovery in
`describe` (faults injected per operation, as in test_ec2_faults.py)."""

from __future__ import annotations

import pytest

from provisioner.catalog.model import ON_DEMAND, SPOT
from provisioner.clouds import ec2_params as P
from provisioner.clouds.base import BATCH_NODES_TAG, BATCH_TAG, CloudError, Instance, LaunchSpec
from tests.clouds.conftest import aws_error, fleet_errors, only_for
from tests.clouds.test_ec2_moto import USER_DATA, spot_candidates
from tests.factories import offer

QUEUE_IDS = (105, 101, 103, 102, 104)       # arrival order differs from node order on purpose


def node(owner: str, queue_id: int) -> str:
    return f"prov-{owner}-q{queue_id}"


def batch_spec(owner: str, queue_id: int, *candidates, user_data: str = USER_DATA) -> LaunchSpec:
    tags = {"provisioner:owner": owner, "provisioner:node": node(owner, queue_id),
            "provisioner:queue-id": str(queue_id), "provisioner:job": f"ml/job-{queue_id % 2}",
            "provisioner:team": "vision", "provisioner:expires-at": "2030-01-01T00:00:00Z"}
    return LaunchSpec(candidates=candidates or spot_candidates(), user_data=user_data, tags=tags,
                      client_token=f"{owner}-q{queue_id}-a1")


def raw_tags(h, ids: list[str]) -> dict[str, dict[str, str]]:
    """{instance id: tags} as EC2 holds them (not as the adapter returned them)."""
    reservations = h.raw.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            for r in reservations for i in r["Instances"]}


def fleet_tags(request: dict) -> dict[str, str]:
    spec = next(s for s in request["TagSpecifications"] if s["ResourceType"] == "instance")
    return {t["Key"]: t["Value"] for t in spec["Tags"]}


def instances(results: list) -> list[Instance]:
    assert all(isinstance(r, Instance) for r in results), results
    return results


def test_one_key_is_one_fleet_and_every_instance_gets_its_own_tags(harness, owner):
    h = harness()
    specs = [batch_spec(owner, q) for q in QUEUE_IDS]
    got = instances(h.cloud.launch_many(specs))
    [fleet] = h.client.sent("create_fleet")
    assert fleet["TargetCapacitySpecification"] == {"TotalTargetCapacity": 5, "SpotTargetCapacity": 5,
                                                    "DefaultTargetCapacityType": SPOT}
    shared = fleet_tags(fleet)
    assert not {"provisioner:node", "provisioner:queue-id", "provisioner:job", "Name"} & set(shared)
    assert shared[BATCH_TAG] == fleet["ClientToken"]
    assert P.decode_nodes(shared[BATCH_NODES_TAG]) == sorted(node(owner, q) for q in QUEUE_IDS)
    assert len({i.id for i in got}) == 5
    # Sorted ids go to the specs in node order; EC2 holds each instance's own tags.
    by_node = sorted(zip(specs, got), key=lambda pair: pair[0].tags["provisioner:node"])
    assert [i.id for _, i in by_node] == sorted(i.id for i in got)
    held = raw_tags(h, [i.id for i in got])
    for spec, inst in zip(specs, got):
        tags = held[inst.id]
        assert tags["provisioner:node"] == tags["Name"] == spec.tags["provisioner:node"] == inst.tag("node")
        assert tags["provisioner:queue-id"] == spec.tags["provisioner:queue-id"] == inst.tag("queue-id")
        assert tags["provisioner:job"] == spec.tags["provisioner:job"] == inst.tag("job")
        assert tags["provisioner:team"] == "vision" and tags["cost-center"] == "ds-team"
        assert tags[BATCH_TAG] == fleet["ClientToken"] and inst.state == "running"
    assert h.cloud.last_launch_calls == {"create_launch_template": 1, "describe_images": 1,
                                         "create_fleet": 1, "describe_instances": 1, "create_tags": 5}
    assert sorted(i.id for i in h.cloud.describe(owner)) == sorted(i.id for i in got)


def test_the_per_instance_tags_land_on_the_root_volume_too(harness, owner):
    h = harness()
    got = instances(h.cloud.launch_many([batch_spec(owner, q) for q in (7, 8)]))
    tagged = h.client.sent("create_tags")
    assert [t["Resources"][0] for t in tagged] == sorted(i.id for i in got)
    volumes = [t["Resources"][1] for t in tagged]
    assert all(v.startswith("vol-") for v in volumes)
    held = {v["VolumeId"]: {t["Key"]: t["Value"] for t in v.get("Tags", [])}
            for v in h.raw.describe_volumes(VolumeIds=volumes)["Volumes"]}
    assert sorted(t["provisioner:node"] for t in held.values()) == [node(owner, 7), node(owner, 8)]


def test_two_keys_are_two_fleets(harness, owner):
    h = harness()
    ondemand = (offer("m5.large"), offer("c5.large"))
    specs = [batch_spec(owner, 1), batch_spec(owner, 2, *ondemand), batch_spec(owner, 3),
             batch_spec(owner, 4, *ondemand), batch_spec(owner, 5, *ondemand)]
    got = instances(h.cloud.launch_many(specs))
    fleets = h.client.sent("create_fleet")
    assert sorted((f["TargetCapacitySpecification"]["DefaultTargetCapacityType"],    # sent side by side
                   f["TargetCapacitySpecification"]["TotalTargetCapacity"]) for f in fleets) == [(ON_DEMAND, 3), (SPOT, 2)]
    assert [i.market for i in got] == [SPOT, ON_DEMAND, SPOT, ON_DEMAND, ON_DEMAND]
    assert h.cloud.last_launch_calls["create_fleet"] == 2


def test_a_group_of_one_sends_todays_request(harness, owner):
    h = harness()
    alone = batch_spec(owner, 1)
    [inst] = instances(h.cloud.launch_many([alone]))
    h.cloud.launch(LaunchSpec(**{**alone.__dict__, "client_token": f"{owner}-other"}))
    batched, single = h.client.sent("create_fleet")
    assert batched["ClientToken"] == alone.client_token
    assert {k: v for k, v in batched.items() if k != "ClientToken"} == \
        {k: v for k, v in single.items() if k != "ClientToken"}
    assert BATCH_TAG not in fleet_tags(batched) and fleet_tags(batched)["Name"] == node(owner, 1)
    assert h.client.sent("create_tags") == [] and inst.tag("node") == node(owner, 1)


def test_partial_spot_capacity_is_finished_on_demand(harness, owner):
    h = harness()

    def two_of_five(request):                # EC2 launched 2 and names the pools it could not fill
        shrunk = {**request, "TargetCapacitySpecification": {
            **request["TargetCapacitySpecification"], "TotalTargetCapacity": 2, "SpotTargetCapacity": 2}}
        response = h.raw.create_fleet(**shrunk)
        response["Errors"] = [{"ErrorCode": "InsufficientInstanceCapacity", "Lifecycle": SPOT,
                               "LaunchTemplateAndOverrides": {"Overrides": {"InstanceType": t}}}
                              for t in ("c5.xlarge", "r5.large")]
        return response
    h.faults["create_fleet"] = [two_of_five]
    specs = [batch_spec(owner, q) for q in QUEUE_IDS]
    got = instances(h.cloud.launch_many(specs))
    spot, ondemand = h.client.sent("create_fleet")
    assert ondemand["TargetCapacitySpecification"]["TotalTargetCapacity"] == 3
    assert ondemand["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == ON_DEMAND
    nodes = sorted(node(owner, q) for q in QUEUE_IDS)
    assert P.decode_nodes(fleet_tags(ondemand)[BATCH_NODES_TAG]) == nodes[2:]
    assert fleet_tags(ondemand)[BATCH_TAG] != fleet_tags(spot)[BATCH_TAG]
    market = {i.tag("node"): i.market for i in got}
    assert market == {n: SPOT if n in nodes[:2] else ON_DEMAND for n in nodes}
    assert len({i.id for i in got}) == 5 == len(h.cloud.describe(owner))
    assert h.cloud.blocked.current() == {("c5.xlarge", "us-east-1", SPOT), ("r5.large", "us-east-1", SPOT)}


def test_a_batch_that_no_round_can_fill_gives_every_spec_the_combined_error(harness, owner):
    h = harness({"create_fleet": [fleet_errors("InsufficientInstanceCapacity"), fleet_errors("VcpuLimitExceeded")]})
    got = h.cloud.launch_many([batch_spec(owner, q) for q in (1, 2, 3)])
    assert all(isinstance(e, CloudError) and e.kind == "quota" and len(e.offers) == 6 for e in got)
    assert len(h.client.sent("create_fleet")) == 2 and h.cloud.describe(owner) == []


def test_more_instances_than_asked_are_terminated(harness, owner):
    h = harness()

    def one_extra(request):
        capacity = request["TargetCapacitySpecification"]
        return h.raw.create_fleet(**{**request, "TargetCapacitySpecification": {
            **capacity, "TotalTargetCapacity": 4, "SpotTargetCapacity": 4}})
    h.faults["create_fleet"] = [one_extra]
    got = instances(h.cloud.launch_many([batch_spec(owner, q) for q in (1, 2, 3)]))
    [terminated] = h.client.sent("terminate_instances")
    assert len(terminated["InstanceIds"]) == 1 and terminated["InstanceIds"][0] > max(i.id for i in got)
    assert sorted(i.id for i in h.cloud.describe(owner)) == sorted(i.id for i in got)


def test_extras_that_cannot_be_terminated_do_not_cost_the_assigned_instances(harness, owner):
    h = harness({"terminate_instances": [aws_error("UnauthorizedOperation", "no", "TerminateInstances")]})
    h.faults["create_fleet"] = [lambda request: h.raw.create_fleet(**{**request, "TargetCapacitySpecification": {
        **request["TargetCapacitySpecification"], "TotalTargetCapacity": 3, "SpotTargetCapacity": 3}})]
    got = instances(h.cloud.launch_many([batch_spec(owner, q) for q in (1, 2)]))
    assert [i.tag("node") for i in got] == [node(owner, 1), node(owner, 2)]
    extra = {i.id for i in h.cloud.describe(owner)} - {i.id for i in got}
    assert len(extra) == 1 and h.cloud.calls["create_tags"] == 2   # the extra gets no node, then or later


def test_a_non_capacity_error_fails_its_batch_only(harness, owner):
    bad = only_for(SPOT, aws_error("InvalidParameterValue", "bad override"))
    h = harness({"create_fleet": [bad, bad]})     # the two batches go out side by side, in either order
    ondemand = (offer("m5.large"),)
    specs = [batch_spec(owner, 1), batch_spec(owner, 2, *ondemand), batch_spec(owner, 3),
             batch_spec(owner, 4, *ondemand)]
    got = h.cloud.launch_many(specs)
    for failed in (got[0], got[2]):
        assert isinstance(failed, CloudError) and failed.code == "InvalidParameterValue" and failed.kind == "config"
    assert [i.tag("node") for i in instances([got[1], got[3]])] == [node(owner, 2), node(owner, 4)]
    assert len(h.client.sent("create_fleet")) == 2                 # no fallback round for a config error
    assert h.cloud.blocked.current() == frozenset()


def test_crash_before_tagging_is_finished_by_describe(harness, owner):
    refused = aws_error("UnauthorizedOperation", "not allowed", "CreateTags")
    h = harness({"create_tags": [lambda _: None, refused, refused, lambda _: None, refused]})
    got = instances(h.cloud.launch_many([batch_spec(owner, q) for q in QUEUE_IDS]))
    assigned = {i.id: i.tag("node") for i in got}                  # the assignment it returned
    assert sum("provisioner:node" in t for t in raw_tags(h, list(assigned)).values()) == 2
    fresh = harness()                                              # another process: tags alone
    recovered = {i.id: i.tag("node") for i in fresh.cloud.describe(owner)}
    assert recovered == assigned and fresh.cloud.calls["create_tags"] == 3
    assert {i: (t["provisioner:node"], t["Name"]) for i, t in raw_tags(h, list(assigned)).items()} == \
        {i: (n, n) for i, n in assigned.items()}
    fresh.cloud.calls.clear()
    assert {i.id: i.tag("node") for i in fresh.cloud.describe(owner)} == assigned
    assert dict(fresh.cloud.calls) == {"describe_instances": 1}   # nothing left to write


def test_recovery_keeps_the_place_of_a_member_terminated_untagged(harness, owner):
    h = harness({"create_tags": [aws_error("UnauthorizedOperation", "no", "CreateTags")] * 5})
    got = instances(h.cloud.launch_many([batch_spec(owner, q) for q in QUEUE_IDS]))
    assigned = {i.id: i.tag("node") for i in got}
    gone = sorted(assigned)[1]                                     # the second node's instance
    h.raw.terminate_instances(InstanceIds=[gone])
    fresh = harness()
    recovered = {i.id: i.tag("node") for i in fresh.cloud.describe(owner)}
    assert recovered == {i: n for i, n in assigned.items() if i != gone}
    assert fresh.cloud.calls["create_tags"] == 4


def test_unbatchable_specs_launch_alone(harness, owner):
    h = harness()
    odd = batch_spec(owner, 9)
    odd = LaunchSpec(**{**odd.__dict__, "tags": {**odd.tags, "provisioner:node": "a,b"}})
    got = instances(h.cloud.launch_many([batch_spec(owner, 1), odd, batch_spec(owner, 2)]))
    assert sorted(f["TargetCapacitySpecification"]["TotalTargetCapacity"] for f in h.client.sent("create_fleet")) == [1, 2]
    assert got[1].tag("node") == "a,b" and BATCH_TAG not in got[1].tags


@pytest.mark.parametrize("code,kind", [("InvalidParameterValue", "config"), ("AuthFailure", "auth")],
                         ids=["config", "auth"])
def test_a_failed_batch_launches_nothing(harness, owner, code, kind):
    h = harness({"create_fleet": [aws_error(code)]})
    got = h.cloud.launch_many([batch_spec(owner, q) for q in (1, 2)])
    assert [(e.code, e.kind) for e in got] == [(code, kind)] * 2
    assert h.cloud.describe(owner) == [] and h.client.sent("create_tags") == []
