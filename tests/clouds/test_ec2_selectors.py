"""AMIs, subnets and security groups by tags or name pattern: validation, resolution (pure, with a
scripted describe), a launch on moto that lands on what the selectors match, and `daemon --check`
showing what they resolve to."""

from __future__ import annotations

import uuid

import pytest

from provisioner.clouds.base import CloudError
from provisioner.clouds.ec2_params import Ec2Settings
from provisioner.clouds.ec2_selectors import Selector, resolve
from provisioner.config import parse_config
from provisioner.errors import ConfigError
from tests.clouds.conftest import REGION, Harness
from tests.clouds.test_ec2_moto import make_spec, spot_candidates


def test_config_takes_ids_or_selectors_and_names_what_is_wrong():
    ok = parse_config("cloud: ec2\nec2:\n  subnets: {us-east-1: [subnet-1, {tags: {tier: agents}}]}\n"
                      "  security_groups: [{name: 'provisioner-*'}]\n"
                      "  images: {us-east-1: {x86_64: {name: 'agent-*', owners: [self]}, arm64: ami-1}}\n")
    settings = Ec2Settings.from_config(ok.ec2, ["us-east-1"])
    assert settings.subnets["us-east-1"] == ("subnet-1", Selector((("tier", "agents"),)))
    assert settings.images["us-east-1"]["x86_64"] == Selector((), "agent-*", ("self",))
    for text, message in {
            "ec2: {subnets: [{tag: {a: b}}]}": "unknown selector key 'tag'",
            "ec2: {subnets: [{owners: [self]}]}": "unknown selector key 'owners'",
            "ec2: {security_groups: {us-east-1: [{}]}}": "must be an id or a selector",
            "ec2: {images: {us-east-1: {x86_64: {owners: [self]}}}}": "a selector needs tags or name",
            "ec2: {images: {us-east-1: {x86_64: {name: ''}}}}": "name must be a non-empty pattern"}.items():
        with pytest.raises(ConfigError, match=message):
            parse_config(text)


def test_resolution_expands_selectors_per_region_and_picks_the_newest_image():
    answers = {("us-east-1", "describe_subnets"): {"Subnets": [{"SubnetId": "subnet-b"}, {"SubnetId": "subnet-a"}]},
               ("eu-west-1", "describe_subnets"): {"Subnets": [{"SubnetId": "subnet-eu"}]},
               ("us-east-1", "describe_images"): {"Images": [
                   {"ImageId": "ami-old", "Name": "agent-1", "CreationDate": "2026-01-01T00:00:00.000Z"},
                   {"ImageId": "ami-new", "Name": "agent-2", "CreationDate": "2026-06-01T00:00:00.000Z"}]}}
    asked = []

    def describe(region, op, request):
        asked.append((region, op, request))
        return answers.get((region, op), {})
    settings = Ec2Settings(regions=("us-east-1", "eu-west-1"),
                           subnets={"*": ("subnet-fixed", Selector((("tier", "agents"),)))},
                           security_groups={"*": ("sg-1",)},
                           images={"us-east-1": {"x86_64": Selector(name="agent-*")}})
    resolved, found = resolve(settings, describe)
    assert resolved.subnets_in("us-east-1") == ("subnet-fixed", "subnet-a", "subnet-b")
    assert resolved.subnets_in("eu-west-1") == ("subnet-fixed", "subnet-eu")
    assert resolved.security_groups_in("eu-west-1") == ("sg-1",)       # ids pass through, no call
    assert resolved.images["us-east-1"]["x86_64"] == "ami-new"
    assert ("us-east-1", "describe_subnets", {"Filters": [{"Name": "tag:tier", "Values": ["agents"]}]}) in asked
    image_request = next(r for _, op, r in asked if op == "describe_images")
    assert image_request["Owners"] == ["self"] and {"Name": "name", "Values": ["agent-*"]} in image_request["Filters"]
    assert [f.path for f in found] == ["ec2.subnets", "ec2.subnets", "ec2.images.us-east-1.x86_64"]
    with pytest.raises(CloudError, match=r"ec2.security_groups.us-east-1: nothing in us-east-1 matches name 'x-\*'"):
        resolve(Ec2Settings(security_groups={"us-east-1": (Selector(name="x-*"),)}), lambda *_: {})


@pytest.fixture
def tagged_world(moto_world, ec2_moto_url):
    """One default subnet tagged for agents, a security group and an image of this account, named
    and tagged uniquely for this test (moto's state is shared by the session)."""
    from tests.clouds.conftest import moto_client_factory
    ec2 = moto_client_factory(ec2_moto_url)("ec2", REGION)
    mark = uuid.uuid4().hex[:8]
    subnet = moto_world["subnets"][1]
    ec2.create_tags(Resources=[subnet], Tags=[{"Key": "tier", "Value": f"agents-{mark}"}])
    vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    group = ec2.create_security_group(GroupName=f"provisioner-agents-{mark}", Description="agents",
                                      VpcId=vpc)["GroupId"]
    source = ec2.run_instances(ImageId=moto_world["images"]["x86_64"], MinCount=1, MaxCount=1,
                               SubnetId=subnet)["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=source, Name=f"provisioner-agent-x86_64-{mark}")["ImageId"]
    ec2.terminate_instances(InstanceIds=[source])
    return {"mark": mark, "subnet": subnet, "group": group, "image": image}


@pytest.mark.moto
def test_a_launch_lands_on_what_the_selectors_match(ec2_moto_url, tagged_world):
    mark = tagged_world["mark"]
    settings = Ec2Settings.from_config({
        "subnets": [{"tags": {"tier": f"agents-{mark}"}}],
        "security_groups": [{"name": f"provisioner-agents-{mark}"}],
        "instance_profile": "provisioner-instance",
        "images": {REGION: {"x86_64": {"name": f"provisioner-agent-x86_64-{mark}"}}}}, regions=[REGION])
    h = Harness(ec2_moto_url, settings)
    inst = h.cloud.launch(make_spec("sel-" + mark, *spot_candidates()[:1]))
    described = h.raw.describe_instances(InstanceIds=[inst.id])["Reservations"][0]["Instances"][0]
    assert described["SubnetId"] == tagged_world["subnet"] and described["ImageId"] == tagged_world["image"]
    template = h.client.sent("create_launch_template")[0]["LaunchTemplateData"]
    assert template["SecurityGroupIds"] == [tagged_world["group"]]
    h.cloud.launch(make_spec("sel-" + mark, *spot_candidates()[:1], token="again"))
    assert len(h.client.sent("describe_subnets")) == 1                 # resolved once, then cached


@pytest.mark.moto
def test_daemon_check_shows_what_selectors_match_and_refuses_one_that_matches_nothing(cli, tmp_path, moto_env,
                                                                                       tagged_world):
    mark = tagged_world["mark"]
    config = tmp_path / "config.yaml"
    base = (f"cloud: ec2\njenkins: {{url: 'http://127.0.0.1:8080/'}}\n"
            f"ec2:\n  security_groups: [{{name: provisioner-agents-{mark}}}]\n"
            f"  images: {{us-east-1: {{x86_64: {{name: provisioner-agent-x86_64-{mark}}}}}}}\n")
    config.write_text(base + f"  subnets: [{{tags: {{tier: agents-{mark}}}}}]\n")
    done = cli("daemon", "--check", str(config))
    assert done.returncode == 0, done.stderr
    assert f"ec2.subnets: tags {{'tier': 'agents-{mark}'}} -> {tagged_world['subnet']}" in done.stdout
    assert (f"ec2.images.us-east-1.x86_64: name 'provisioner-agent-x86_64-{mark}' -> {tagged_world['image']} "
            f"(provisioner-agent-x86_64-{mark})") in done.stdout
    config.write_text(base + "  subnets: [{tags: {tier: nowhere}}]\n")
    done = cli("daemon", "--check", str(config))
    assert done.returncode == 2
    assert "ec2.subnets" in done.stderr and "nothing in us-east-1 matches tags {'tier': 'nowhere'}" in done.stderr
    assert "Traceback" not in done.stderr
