"""The EC2 adapter against a real moto server: what a launch sends and what lands, describe by
owner tag, batched terminate, config errors before any call, and the API calls per launch.

moto's CreateFleet launches the first override only and drops block devices, metadata options,
volume tags and the shutdown behaviour from what it launches; those are checked in the request moto
accepted (and in the base template moto stored), the rest on the instance itself."""

from __future__ import annotations

import base64

import pytest

from provisioner.catalog.model import ON_DEMAND, SPOT
from provisioner.clouds import ec2 as ec2_module
from provisioner.clouds.base import CloudError, LaunchSpec
from tests.clouds.conftest import REGION
from tests.factories import offer

USER_DATA = "#!/bin/bash\necho agent bootstrap\n"


def spot_candidates():
    return (offer("m5.large", market=SPOT, price=0.035, ondemand=0.096),
            offer("c5.xlarge", market=SPOT, vcpu=4, price=0.06, ondemand=0.17),
            offer("r5.large", market=SPOT, mem=16, price=0.04, ondemand=0.126))


def make_spec(owner: str, *candidates, token: str = "tok-1", **kw) -> LaunchSpec:
    tags = {"provisioner:owner": owner, "provisioner:node": f"{owner}-node", "provisioner:queue-id": "17",
            "provisioner:job": "ml/train", "provisioner:build": "3", "provisioner:run-id": "run-1",
            "provisioner:expires-at": "2030-01-01T00:00:00Z"}
    return LaunchSpec(candidates=candidates or spot_candidates(), user_data=USER_DATA, tags=tags,
                      client_token=f"{owner}-{token}", **kw)


def test_spot_launch_lands_type_tags_user_data_and_subnet(harness, owner, moto_world):
    h = harness()
    inst = h.cloud.launch(make_spec(owner, disk_gib=40))
    assert inst.instance_type in {"m5.large", "c5.xlarge", "r5.large"}
    assert inst.market == SPOT and inst.region == REGION and inst.state == "running"
    assert inst.az in moto_world["azs"] and inst.address
    assert inst.tag("owner") == owner and inst.tags["cost-center"] == "ds-team"
    described = h.raw.describe_instances(InstanceIds=[inst.id])["Reservations"][0]["Instances"][0]
    assert described["SubnetId"] in moto_world["subnets"]
    assert described["ImageId"] == moto_world["images"]["x86_64"]
    user_data = h.raw.describe_instance_attribute(InstanceId=inst.id, Attribute="userData")["UserData"]
    assert base64.b64decode(user_data["Value"]).decode() == USER_DATA
    # What moto accepted but does not apply to the instance: checked in the request itself.
    fleet = h.client.sent("create_fleet")[0]
    override = fleet["LaunchTemplateConfigs"][0]["Overrides"][0]
    assert override["BlockDeviceMappings"] == [{"DeviceName": "/dev/xvda", "Ebs": {
        "VolumeSize": 40, "VolumeType": "gp3", "DeleteOnTermination": True, "Encrypted": True}}]
    volume_tags = {t["Key"]: t["Value"] for s in fleet["TagSpecifications"] if s["ResourceType"] == "volume"
                   for t in s["Tags"]}
    assert volume_tags["provisioner:owner"] == owner and volume_tags["provisioner:run-id"] == "run-1"


def test_base_template_stored_with_imdsv2_terminate_profile_and_groups(harness, owner, moto_world):
    h = harness()
    h.cloud.launch(make_spec(owner))
    name = h.client.sent("create_launch_template")[0]["LaunchTemplateName"]
    data = h.raw.describe_launch_template_versions(LaunchTemplateName=name)["LaunchTemplateVersions"][0][
        "LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert data["IamInstanceProfile"] == {"Name": "provisioner-instance"}
    assert data["SecurityGroupIds"] == [moto_world["security_group"]]


def test_steady_launch_is_one_create_fleet_and_one_describe(harness, owner):
    h = harness()
    h.cloud.launch(make_spec(owner, token="a"))
    assert h.cloud.last_launch_calls == {"create_launch_template": 1, "describe_images": 1,
                                         "create_fleet": 1, "describe_instances": 1}
    h.cloud.launch(make_spec(owner, token="b"))
    assert h.cloud.last_launch_calls == {"create_fleet": 1, "describe_instances": 1}


def test_a_restarted_adapter_reuses_the_existing_template(harness, owner):
    harness().cloud.launch(make_spec(owner, token="a"))
    again = harness()
    again.cloud.launch(make_spec(owner, token="b"))          # AlreadyExists on the template: fine
    assert again.cloud.errors["InvalidLaunchTemplateName.AlreadyExistsException"] == 1


def test_on_demand_and_gpu_launches(harness, owner):
    h = harness()
    od = h.cloud.launch(make_spec(owner, offer("m5.large"), offer("c5.large"), token="od"))
    assert od.market == ON_DEMAND and od.instance_type == "m5.large"
    gpu = h.cloud.launch(make_spec(owner, offer("g5.xlarge", market=SPOT, gpus=1, ondemand=1.0),
                                   token="gpu", disk_gib=100))
    assert gpu.instance_type == "g5.xlarge"
    override = h.client.sent("create_fleet")[-1]["LaunchTemplateConfigs"][0]["Overrides"][0]
    assert override["BlockDeviceMappings"][0]["DeviceName"] == "/dev/sda1"   # the GPU image's root


def test_describe_by_owner_and_terminate(harness, owner):
    h = harness()
    mine = [h.cloud.launch(make_spec(owner, token=str(i))) for i in range(2)]
    other = h.cloud.launch(make_spec(owner + "-other", token="x"))
    assert sorted(i.id for i in h.cloud.describe(owner)) == sorted(i.id for i in mine)
    fresh = harness()                                        # knows nothing: finds regions by trying
    fresh.cloud.terminate([mine[0].id])
    assert [i.id for i in fresh.cloud.describe(owner)] == [mine[1].id]
    fresh.cloud.terminate([mine[0].id, mine[1].id, "i-0123456789abcdef0"])   # gone / unknown: fine
    assert fresh.cloud.describe(owner) == []
    assert [i.id for i in h.cloud.describe(owner + "-other")] == [other.id]


def test_describe_pages_and_terminate_batches(harness, owner, monkeypatch):
    monkeypatch.setattr(ec2_module, "DESCRIBE_PAGE", 5)
    monkeypatch.setattr(ec2_module, "TERMINATE_BATCH", 3)
    h = harness()
    ids = [h.cloud.launch(make_spec(owner, offer("t3.micro"), token=str(i))).id for i in range(7)]
    h.cloud.calls.clear()
    assert sorted(i.id for i in h.cloud.describe(owner)) == sorted(ids)
    assert h.cloud.calls["describe_instances"] == 2
    h.cloud.terminate(ids)
    assert h.cloud.calls["terminate_instances"] == 3
    assert h.cloud.describe(owner) == []


@pytest.mark.parametrize("change,needle", [
    ({"subnets": {}}, "no subnet configured for us-east-1 (ec2.subnets)"),
    ({"images": {}}, "no image for us-east-1 x86_64 (ec2.images.us-east-1.x86_64)"),
], ids=["no-subnet", "no-image"])
def test_missing_config_fails_before_any_api_call(harness, owner, ec2_settings, change, needle):
    from provisioner.clouds.ec2_params import Ec2Settings
    settings = Ec2Settings(**{**ec2_settings.__dict__, **change})
    h = harness(settings=settings)
    with pytest.raises(CloudError) as err:
        h.cloud.launch(make_spec(owner))
    assert err.value.kind == "config" and needle in str(err.value)
    assert sum(h.cloud.calls.values()) == 0


def test_candidates_without_an_image_are_skipped_not_fatal(harness, owner):
    h = harness()
    inst = h.cloud.launch(make_spec(owner, offer("m7g.large", arch="arm64"),
                                    offer("inf2.xlarge", gpus=1), offer("m5.large")))
    assert inst.instance_type == "m7g.large"                     # no gpu image: inf2 is skipped


def test_an_image_that_does_not_exist_is_a_config_error(harness, owner, ec2_settings):
    from provisioner.clouds.ec2_params import Ec2Settings
    settings = Ec2Settings(**{**ec2_settings.__dict__,
                              "images": {REGION: {"x86_64": "ami-00000000000000000"}}})
    with pytest.raises(CloudError, match="ami-00000000000000000 configured for us-east-1 does not exist") as err:
        harness(settings=settings).cloud.launch(make_spec(owner))
    assert err.value.kind == "config"


def test_an_image_of_the_wrong_architecture_is_a_config_error(harness, owner, ec2_settings, moto_world):
    from provisioner.clouds.ec2_params import Ec2Settings
    settings = Ec2Settings(**{**ec2_settings.__dict__,
                              "images": {REGION: {"x86_64": moto_world["images"]["arm64"]}}})
    with pytest.raises(CloudError, match="x86_64 is arm64") as err:
        harness(settings=settings).cloud.launch(make_spec(owner))
    assert err.value.kind == "config"


def test_an_instance_that_stopped_is_reported_once_by_ended(harness, owner, moto_world):
    """The daemon's boot-failure check on EC2: stopped or terminated instances, once each, with
    their AMI and node (daemon/bootfail.py decides whether it was a boot failure)."""
    h = harness()
    inst = h.cloud.launch(make_spec(owner))
    assert h.cloud.ended(owner) == []
    h.raw.stop_instances(InstanceIds=[inst.id])
    [e] = h.cloud.ended(owner)
    assert (e.instance, e.node, e.code) == (inst.id, f"{owner}-node", "instance-stopped")
    assert e.image == moto_world["images"]["x86_64"] == h.cloud.image_identity(spot_candidates()[0])
    assert e.offer[0] == inst.instance_type
    assert h.cloud.ended(owner) == []                    # once
