"""The pure side of the EC2 adapter: launch requests against golden files, rounds, tags, tokens,
error kinds and Service Quota names. Regenerate the golden files with PROVISIONER_UPDATE_GOLDEN=1."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from provisioner.catalog.model import ON_DEMAND, SPOT
from provisioner.clouds.base import CloudError, LaunchSpec
from provisioner.clouds import ec2_params as P
from tests.factories import offer

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PROVISIONER_UPDATE_GOLDEN") == "1"

AMI = {"x86_64": "ami-0aaaaaaaaaaaaaaa1", "arm64": "ami-0bbbbbbbbbbbbbbb2", "gpu_x86_64": "ami-0ccccccccccccccc3"}
ROOTS = {AMI["x86_64"]: "/dev/xvda", AMI["arm64"]: "/dev/xvda", AMI["gpu_x86_64"]: "/dev/sda1"}
SETTINGS = P.Ec2Settings.from_config({
    "subnets": {"us-east-1": ["subnet-0a1", "subnet-0b2"]},   # us-east-1a and us-east-1b
    "security_groups": ["sg-0agents"], "instance_profile": "provisioner-instance",
    "images": {"us-east-1": AMI}, "extra_tags": {"cost-center": "ds-team", "provisioner:team": "default"}},
    regions=["us-east-1"])
USER_DATA = "#!/bin/bash\nexec /opt/provisioner/bootstrap --mode agent\n"


def tags(node: str = "ec2-train-42") -> dict[str, str]:
    return {"provisioner:owner": "daemon-prod", "provisioner:node": node, "provisioner:queue-id": "4711",
            "provisioner:job": "ml/train", "provisioner:build": "42", "provisioner:run-id": "r-0001",
            "provisioner:team": "vision", "provisioner:expires-at": "2026-01-01T06:00:00Z"}


def spec(*candidates, **kw) -> LaunchSpec:
    kw.setdefault("user_data", USER_DATA)
    kw.setdefault("tags", tags())
    kw.setdefault("client_token", "q4711-a1")
    return LaunchSpec(candidates=tuple(candidates), **kw)


def requests_for(s: LaunchSpec, settings: P.Ec2Settings = SETTINGS) -> dict:
    """Every request the adapter would send for this spec, round by round (no failures assumed)."""
    rounds = P.launch_rounds(P.with_ondemand_twins(s))
    template = P.template_request(settings, "us-east-1", s.tags["provisioner:owner"])
    fleets = [P.launch_params(s, settings, root_devices=ROOTS, offers=r,
                              token=P.client_token(s.client_token, r[0].region, r[0].market, i == 0))
              for i, r in enumerate(rounds)]
    return {"create_launch_template": template, "create_fleet_rounds": fleets}


CASES = {
    "spot_3_types_2_azs": lambda: spec(
        offer("m5.large", market=SPOT, price=0.035, ondemand=0.096),
        offer("c5.xlarge", market=SPOT, vcpu=4, price=0.06, ondemand=0.17),
        offer("r5.large", market=SPOT, mem=16, price=0.04, ondemand=0.126),
        offer("m5.large", market=ON_DEMAND, price=0.096), disk_gib=50),
    "on_demand_arm64": lambda: spec(
        offer("m7g.large", arch="arm64", price=0.0816), offer("c7g.xlarge", arch="arm64", vcpu=4, price=0.145),
        client_token="q4712-a1"),
    "gpu_spot_only": lambda: spec(
        offer("g5.xlarge", market=SPOT, vcpu=4, mem=16, gpus=1, gpu_model="A10G", price=0.45, ondemand=1.006),
        offer("g4dn.xlarge", market=SPOT, vcpu=4, mem=16, gpus=1, gpu_model="T4", price=0.22, ondemand=0.526),
        disk_gib=200, spot_only=True, client_token="q4713-a1"),
}


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_requests_match_golden_files(case):
    got = json.loads(json.dumps(requests_for(CASES[case]())))
    path = GOLDEN / f"ec2_{case}.json"
    if UPDATE or not path.exists():
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
        if not UPDATE:
            pytest.fail(f"{path.name} did not exist and was written: review it and commit it")
    assert got == json.loads(path.read_text()), "regenerate with PROVISIONER_UPDATE_GOLDEN=1 if intended"


def test_spot_golden_covers_three_types_in_two_subnets_with_the_required_options():
    fleet, fallback = requests_for(CASES["spot_3_types_2_azs"]())["create_fleet_rounds"]
    overrides = fleet["LaunchTemplateConfigs"][0]["Overrides"]
    assert {o["InstanceType"] for o in overrides} == {"m5.large", "c5.xlarge", "r5.large"}
    assert {o["SubnetId"] for o in overrides} == {"subnet-0a1", "subnet-0b2"}
    assert [o["Priority"] for o in overrides] == [0, 0, 1, 1, 2, 2]          # the candidates' rank
    assert fleet["Type"] == "instant" and fleet["ClientToken"] == "q4711-a1"
    assert fleet["SpotOptions"]["AllocationStrategy"] == "price-capacity-optimized"
    assert fleet["TargetCapacitySpecification"] == {"TotalTargetCapacity": 1, "SpotTargetCapacity": 1,
                                                    "DefaultTargetCapacityType": "spot"}
    assert overrides[0]["BlockDeviceMappings"] == [{"DeviceName": "/dev/xvda", "Ebs": {
        "VolumeSize": 50, "VolumeType": "gp3", "DeleteOnTermination": True, "Encrypted": True}}]
    assert {t["ResourceType"] for t in fleet["TagSpecifications"]} == {"instance", "volume"}
    spec_ud = fleet["LaunchTemplateConfigs"][0]["LaunchTemplateSpecification"]["LaunchTemplateSpecificationUserData"]
    assert base64.b64decode(spec_ud).decode() == USER_DATA
    # The fallback: the on-demand candidate first (it was ranked), then the spot ones' twins.
    assert fallback["OnDemandOptions"] == {"AllocationStrategy": "lowest-price"}
    assert [o["InstanceType"] for o in fallback["LaunchTemplateConfigs"][0]["Overrides"]][::2] == \
        ["m5.large", "c5.xlarge", "r5.large"]
    assert fallback["ClientToken"] != fleet["ClientToken"]


def test_base_template_holds_imdsv2_shutdown_terminate_profile_and_groups():
    data = requests_for(CASES["spot_3_types_2_azs"]())["create_launch_template"]["LaunchTemplateData"]
    assert data["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 1,
                                       "HttpEndpoint": "enabled"}
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert data["IamInstanceProfile"] == {"Name": "provisioner-instance"}
    assert data["SecurityGroupIds"] == ["sg-0agents"]


def test_template_name_depends_on_content_and_owner_only():
    a = P.template_request(SETTINGS, "us-east-1", "daemon-prod")
    assert a == P.template_request(SETTINGS, "us-east-1", "daemon-prod")
    assert a["LaunchTemplateName"] != P.template_request(SETTINGS, "us-east-1", "other")["LaunchTemplateName"]
    arn = P.Ec2Settings(**{**SETTINGS.__dict__, "instance_profile": "arn:aws:iam::1:instance-profile/p"})
    changed = P.template_request(arn, "us-east-1", "daemon-prod")
    assert changed["LaunchTemplateData"]["IamInstanceProfile"] == {"Arn": "arn:aws:iam::1:instance-profile/p"}
    assert changed["LaunchTemplateName"] != a["LaunchTemplateName"]


def test_gpu_launch_uses_the_gpu_image_its_root_device_and_no_fallback():
    rounds = requests_for(CASES["gpu_spot_only"]())["create_fleet_rounds"]
    assert len(rounds) == 1
    override = rounds[0]["LaunchTemplateConfigs"][0]["Overrides"][0]
    assert override["ImageId"] == AMI["gpu_x86_64"]
    assert override["BlockDeviceMappings"][0]["DeviceName"] == "/dev/sda1"
    assert override["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 200


def test_root_volume_never_smaller_than_the_image_snapshot():
    s = CASES["on_demand_arm64"]()
    fleet = P.launch_params(s, SETTINGS, root_devices=ROOTS, min_disk_gib={AMI["arm64"]: 64})
    assert fleet["LaunchTemplateConfigs"][0]["Overrides"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 64


# ---- rounds, twins, tokens ------------------------------------------------------------------------

def test_rounds_follow_the_ranking_and_skip_blocked_offers():
    a, b = offer("m5.large", market=SPOT), offer("c5.large", market=SPOT)
    c = offer("m5.large", region="us-west-2", market=SPOT)
    od = offer("m5.large")
    offers = P.with_ondemand_twins(spec(a, c, b, od))
    rounds = P.launch_rounds(offers)
    assert [(r[0].region, r[0].market) for r in rounds] == [
        ("us-east-1", SPOT), ("us-west-2", SPOT), ("us-east-1", ON_DEMAND), ("us-west-2", ON_DEMAND)]
    assert [o.instance_type for o in rounds[2]] == ["m5.large", "c5.large"]   # the ranked one, then a twin
    blocked = frozenset({a.key, b.key})
    assert [(r[0].region, r[0].market) for r in P.launch_rounds(offers, blocked)][0] == ("us-west-2", SPOT)


def test_twins_carry_the_ondemand_price_and_spot_only_has_none():
    s = offer("m5.large", market=SPOT, price=0.03, ondemand=0.096)
    twins = P.with_ondemand_twins(spec(s))
    assert twins[1].market == ON_DEMAND and twins[1].price == 0.096 and twins[1].interruption_rate is None
    assert P.with_ondemand_twins(spec(s, offer("c5.large"), spot_only=True)) == [s]


def test_client_tokens_are_stable_short_and_distinct_per_round():
    assert P.client_token("q1-a1", "us-east-1", SPOT, first=True) == "q1-a1"
    later = P.client_token("q1-a1", "us-east-1", ON_DEMAND, first=False)
    assert later == P.client_token("q1-a1", "us-east-1", ON_DEMAND, first=False) != "q1-a1"
    assert len(P.client_token("x" * 100, "us-east-1", SPOT, first=True)) <= 64


# ---- tags and user data ---------------------------------------------------------------------------

def test_tags_merge_extra_under_spec_and_name_the_node():
    got = {t["Key"]: t["Value"] for t in P.launch_tags(spec(offer()), SETTINGS)}
    assert got["cost-center"] == "ds-team" and got["provisioner:team"] == "vision"   # the spec wins
    assert got["Name"] == "ec2-train-42"


@pytest.mark.parametrize("bad,needle", [
    ({"provisioner:node": "n"}, "provisioner:owner"),
    ({**tags(), "aws:cloudformation": "x"}, "reserved"),
    ({**tags(), "job-long": "x" * 300}, "over 256"),
    ({**tags(), **{f"k{i}": "v" for i in range(50)}}, "EC2 allows 50"),
], ids=["no-owner", "aws-prefix", "long-value", "too-many"])
def test_bad_tags_are_config_errors(bad, needle):
    with pytest.raises(CloudError, match=needle) as err:
        P.launch_tags(spec(offer(), tags=bad), SETTINGS)
    assert err.value.kind == "config"


def test_user_data_limit_and_fingerprint_never_show_content():
    with pytest.raises(CloudError, match="16384") as err:
        P.encoded_user_data("x" * (16 * 1024 + 1))
    assert err.value.kind == "config"
    secretish = "TOKEN=hunter2\n"
    fingerprint = P.user_data_fingerprint(secretish)
    assert "hunter2" not in fingerprint and fingerprint.startswith("14 bytes sha256:")


# ---- settings -------------------------------------------------------------------------------------

def test_settings_accept_a_list_or_a_region_map():
    flat = P.Ec2Settings.from_config({"subnets": ["subnet-1"], "security_groups": ["sg-1"]})
    assert flat.subnets_in("eu-west-1") == ("subnet-1",)
    per_region = P.Ec2Settings.from_config({"subnets": {"us-west-2": ["subnet-2"]}})
    assert per_region.subnets_in("us-west-2") == ("subnet-2",) and per_region.subnets_in("us-east-1") == ()


def test_unknown_image_slot_is_a_config_error():
    with pytest.raises(CloudError, match="gpu_amd64") as err:
        P.Ec2Settings.from_config({"images": {"us-east-1": {"gpu_amd64": "ami-1"}}})
    assert err.value.kind == "config"


def test_config_problems_name_the_missing_key():
    empty = P.Ec2Settings()
    problems = P.config_problems(empty, offer("g5.xlarge", gpus=1))
    assert "ec2.subnets" in problems[0] and "ec2.security_groups" in problems[1]
    assert "ec2.images.us-east-1.gpu_x86_64" in problems[2]


# ---- errors and quotas ----------------------------------------------------------------------------

@pytest.mark.parametrize("code,kind", [
    ("InsufficientInstanceCapacity", "capacity"), ("UnfulfillableCapacity", "capacity"),
    ("SpotMaxPriceTooLow", "capacity"), ("InsufficientCapacity", "capacity"),
    ("VcpuLimitExceeded", "quota"), ("MaxSpotInstanceCountExceeded", "quota"),
    ("RequestLimitExceeded", "throttle"), ("Throttling", "throttle"),
    ("AuthFailure", "auth"), ("UnauthorizedOperation", "auth"),
    ("InvalidInstanceID.NotFound", "not-found"), ("InvalidAMIID.NotFound", "config"),
    ("InvalidParameterValue", "config"), ("SomethingNew", "other")])
def test_error_kinds(code, kind):
    assert P.error_kind(code) == kind


@pytest.mark.parametrize("instance_type,group", [
    ("m5.large", "standard"), ("t3.micro", "standard"), ("z1d.large", "standard"), ("i4i.large", "standard"),
    ("d3.xlarge", "standard"), ("g5.xlarge", "g"), ("vt1.3xlarge", "g"), ("p4d.24xlarge", "p"),
    ("inf2.xlarge", "inf"), ("trn1.2xlarge", "trn"), ("dl1.24xlarge", "dl"), ("hpc6a.48xlarge", "hpc"),
    ("x2idn.16xlarge", "x"), ("f1.2xlarge", "f"), ("u-6tb1.metal", "u")])
def test_quota_groups(instance_type, group):
    assert P.quota_group(instance_type) == group


def test_quota_message_names_the_quota_and_its_code():
    msg = P.quota_message([offer("m5.large"), offer("c5.large")], "VcpuLimitExceeded")
    assert "'Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances (L-1216C47A)'" in msg
    assert "m5.large, c5.large" in msg and "us-east-1" in msg
    spot = P.quota_message([offer("g5.xlarge", market=SPOT, gpus=1)], "MaxSpotInstanceCountExceeded")
    assert "All G and VT Spot Instance Requests (L-3819A6DF)" in spot and "spot instance count" in spot


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_requests_are_valid_for_the_ec2_api_model(case):
    """botocore's own validator over EC2's service model: names, types and nesting are real."""
    import botocore.session
    from botocore.validate import ParamValidator
    model = botocore.session.get_session().get_service_model("ec2")
    requests = requests_for(CASES[case]())
    checks = [("CreateLaunchTemplate", requests["create_launch_template"])]
    checks += [("CreateFleet", fleet) for fleet in requests["create_fleet_rounds"]]
    for operation, params in checks:
        report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()


# ---- batches ---------------------------------------------------------------------------------------

BATCH_CANDIDATES = (offer("m5.large", market=SPOT, price=0.035, ondemand=0.096),)


def queued(queue_id: int | str, *, node: str | None = None, **kw) -> LaunchSpec:
    """A spec for one queue item; equal keyword arguments give equal batch keys."""
    t = {**tags(node or f"prov-daemon-prod-q{queue_id}"), "provisioner:queue-id": str(queue_id)}
    return spec(*kw.pop("candidates", BATCH_CANDIDATES), tags=t, client_token=f"q{queue_id}-a1", **kw)


@pytest.mark.parametrize("nodes,encoded", [
    (["prov-a-q12345", "prov-a-q12399"], "prov-a-q123|45,99"),
    (["prov-a-q123", "prov-a-q124-2"], "prov-a-q12|3,4-2"),
    (["prov-a-q1", "prov-a-q1-2"], "prov-a-q1|,-2"),          # one name is the other's prefix
    (["x1", "y2"], "|x1,y2"),                                # nothing in common
    (["prov-a-q7"], "prov-a-q7|"),
], ids=["digits", "attempt-suffix", "prefix-name", "no-prefix", "one"])
def test_batch_nodes_encode_compactly_and_decode_back(nodes, encoded):
    assert P.encode_nodes(nodes) == encoded
    assert P.decode_nodes(encoded) == nodes


@pytest.mark.parametrize("nodes", [[], ["a|b"], ["a,b", "c"]], ids=["empty", "bar", "comma"])
def test_batch_nodes_refuse_what_they_cannot_carry(nodes):
    with pytest.raises(ValueError):
        P.encode_nodes(nodes)


def test_batch_nodes_decode_refuses_a_foreign_value():
    with pytest.raises(ValueError, match="not a batch-nodes value"):
        P.decode_nodes("prov-a-q1,prov-a-q2")


def test_a_subset_of_a_batch_never_encodes_longer():
    import random
    rng = random.Random(3)
    nodes = sorted(f"prov-daemon-prod-q{rng.randrange(10**5)}" + rng.choice(["", "-2"]) for _ in range(20))
    for _ in range(200):
        subset = sorted(rng.sample(nodes, rng.randint(1, len(nodes))))
        assert len(P.encode_nodes(subset)) <= len(P.encode_nodes(nodes))


def test_batches_group_by_key_and_order_by_node():
    other = dict(user_data=USER_DATA + "# another image\n")
    specs = [queued(30), queued(12, **other), queued(10), queued(11, **other), queued(20)]
    assert P.batch_groups(specs, SETTINGS) == [[2, 4, 0], [3, 1]]


def test_batches_are_capped_at_fifty():
    specs = [queued(1000 + i) for i in range(120)]
    groups = P.batch_groups(specs, SETTINGS)
    assert [len(g) for g in groups] == [50, 50, 20]
    assert [i for g in groups for i in g] == list(range(120))


def test_batches_split_where_the_nodes_tag_would_pass_256_characters():
    specs = [queued(i, node=f"prov-team-{i:02d}-" + "x" * 30) for i in range(12)]
    groups = P.batch_groups(specs, SETTINGS)
    encoded = [P.encode_nodes([specs[i].tags["provisioner:node"] for i in g]) for g in groups]
    assert len(groups) > 1 and all(len(e) <= P.TAG_VALUE_MAX for e in encoded)
    names = [s.tags["provisioner:node"] for s in specs]
    for group, following in zip(groups, groups[1:]):        # greedy: each split was needed
        assert len(P.encode_nodes([names[i] for i in group] + [names[following[0]]])) > P.TAG_VALUE_MAX
    assert [i for g in groups for i in g] == list(range(12))


@pytest.mark.parametrize("odd", [
    lambda: spec(*BATCH_CANDIDATES, tags={k: v for k, v in tags().items() if k != "provisioner:node"}),
    lambda: queued(5, node="prov-a,b"),
    lambda: queued(5, node="n" * 300),
    lambda: spec(*BATCH_CANDIDATES, tags=tags("prov-daemon-prod-q5"), secret_env={"SECRET": "x"}),
], ids=["no-node", "comma", "too-long", "secret-env"])
def test_specs_that_cannot_share_stand_alone(odd):
    specs = [queued(1), odd(), queued(2)]
    assert P.batch_groups(specs, SETTINGS) == [[0, 2], [1]]


def test_batch_tokens_are_stable_short_and_order_free():
    a = P.batch_token(["q1-a1", "q2-a1"], "us-east-1", SPOT)
    assert a == P.batch_token(["q2-a1", "q1-a1"], "us-east-1", SPOT) and len(a) <= P.CLIENT_TOKEN_MAX
    others = {P.batch_token(["q1-a1", "q2-a1"], "us-east-1", ON_DEMAND),
              P.batch_token(["q1-a1", "q2-a1"], "us-west-2", SPOT), P.batch_token(["q1-a1"], "us-east-1", SPOT)}
    assert a not in others and len(others) == 3


def test_batch_request_carries_shared_and_batch_tags_only():
    specs = [queued(11), queued(12), queued(10)]
    params = P.batch_params(specs, SETTINGS, token="batch-abc", root_devices=ROOTS,
                            offers=P.launch_rounds(P.with_ondemand_twins(specs[0]))[0])
    assert params["ClientToken"] == "batch-abc"
    assert params["TargetCapacitySpecification"] == {"TotalTargetCapacity": 3, "SpotTargetCapacity": 3,
                                                     "DefaultTargetCapacityType": SPOT}
    for tag_spec in params["TagSpecifications"]:
        got = {t["Key"]: t["Value"] for t in tag_spec["Tags"]}
        assert got == {**P.shared_tags(specs[0]), "cost-center": "ds-team", "provisioner:batch": "batch-abc",
                       "provisioner:batch-nodes": "prov-daemon-prod-q1|1,2,0"}
    assert not {"provisioner:node", "provisioner:queue-id", "provisioner:job", "Name"} & set(got)
    import botocore.session
    from botocore.validate import ParamValidator
    shape = botocore.session.get_session().get_service_model("ec2").operation_model("CreateFleet").input_shape
    assert not ParamValidator().validate(params, shape).has_errors()


def test_instance_tags_are_the_own_tags_and_a_name_unless_one_is_configured():
    s = queued(7)
    assert P.instance_tags(s, SETTINGS) == {"provisioner:node": "prov-daemon-prod-q7", "provisioner:queue-id": "7",
                                            "provisioner:job": "ml/train", "Name": "prov-daemon-prod-q7"}
    named = P.Ec2Settings(**{**SETTINGS.__dict__, "extra_tags": {"Name": "agents"}})
    assert "Name" not in P.instance_tags(s, named)
    assert P.node_tags("n1", {"Name": "agents"}) == {"provisioner:node": "n1"}
    assert P.node_tags("n1", {}) == {"provisioner:node": "n1", "Name": "n1"}


def member(iid: str, batch: str, nodes: str, node: str | None = None) -> tuple[str, dict[str, str]]:
    t = {"provisioner:batch": batch, "provisioner:batch-nodes": nodes}
    return iid, ({**t, "provisioner:node": node} if node else t)


def test_recovery_assigns_free_nodes_to_untagged_instances_in_id_order():
    members = [member("i-3", "b1", "q|1,2,3"), member("i-1", "b1", "q|1,2,3"), member("i-2", "b1", "q|1,2,3", "q2"),
               member("i-9", "b2", "r|7,8"), member("i-8", "b2", "r|7,8"), ("i-5", {"provisioner:node": "z"})]
    assert P.recovered_nodes(members) == {"i-1": "q1", "i-3": "q3", "i-8": "r7", "i-9": "r8"}


def test_recovery_leaves_extras_and_foreign_values_alone():
    extras = [member(f"i-{n}", "b1", "q|1,2") for n in (4, 3, 5)]          # a fleet that gave 3 for 2
    assert P.recovered_nodes(extras) == {"i-3": "q1", "i-4": "q2"}
    assert P.recovered_nodes([member("i-1", "b9", "no bar here")]) == {}
    done = [member("i-1", "b1", "q|1,2", "q1"), member("i-2", "b1", "q|1,2", "q2")]
    assert P.recovered_nodes(done) == {}
