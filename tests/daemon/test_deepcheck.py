"""`provisioner daemon --check` checks that what the configuration names exists (issue 14 item 5):
the docker cloud's instance image with java and the bootstrap (real engine), and on EC2 the AMIs,
subnets, security groups and instance profile (moto). One line per problem naming the key, exit 2."""

from __future__ import annotations

import boto3
import pytest

from provisioner.clouds.ec2_params import Ec2Settings
from provisioner.daemon import deepcheck
from tests.images import busybox_image, runtime_stub_image

JENKINS = "jenkins:\n  url: http://127.0.0.1:8080/\n  user: bot\n"


@pytest.mark.docker
def test_docker_image_missing_or_without_java_and_bootstrap_is_exit_2_naming_the_key(cli, tmp_path, docker_client):
    config = tmp_path / "c.yaml"
    config.write_text(JENKINS + "docker:\n  instance_image: provisioner-test/none-such:1\n")
    done = cli("daemon", "--check", str(config))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{config}:5: docker.instance_image: the image provisioner-test/none-such:1 is not on this Docker engine" \
        in done.stderr
    bare = busybox_image(docker_client)
    config.write_text(JENKINS + f"docker:\n  instance_image: {bare}\n")
    done = cli("daemon", "--check", str(config))
    assert done.returncode == 2
    problems = [ln for ln in done.stderr.splitlines() if "docker.instance_image" in ln]
    assert len(problems) == 2, done.stderr                         # one line each
    assert "has no java" in problems[0] and "has no provisioner-agent" in problems[1]
    config.write_text(JENKINS + f"docker:\n  instance_image: {runtime_stub_image(docker_client)}\n")
    done = cli("daemon", "--check", str(config))
    assert done.returncode == 0 and done.stdout.strip().endswith(": valid"), done.stderr
    assert not docker_client.containers.list(all=True, filters={"ancestor": runtime_stub_image(docker_client)})


@pytest.fixture
def world(moto_env):
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_env)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="agents", Description="a", VpcId=vpc)["GroupId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_env)
    iam.create_instance_profile(InstanceProfileName="provisioner-agent")
    return {"subnet": subnet, "group": group, "image": image, "profile": "provisioner-agent", "url": moto_env}


def ec2_config(subnet: str, group: str, image: str, profile: str) -> str:
    return (f"cloud: ec2\n{JENKINS}ec2:\n  subnets: [{subnet}]\n  security_groups: [{group}]\n"
            f"  instance_profile: {profile}\n  images: {{us-east-1: {{x86_64: {image}}}}}\n")


@pytest.mark.moto
def test_ec2_ids_that_exist_pass_and_each_missing_one_is_a_line(cli, tmp_path, world):
    config = tmp_path / "c.yaml"
    config.write_text(ec2_config(world["subnet"], world["group"], world["image"],
                                 f"arn:aws:iam::123456789012:instance-profile/{world['profile']}"))
    done = cli("daemon", "--check", str(config))
    assert done.returncode == 0, done.stderr
    config.write_text(ec2_config("subnet-0000000000000dead", "sg-0000000000000dead", "ami-0000000000000dead",
                                 "no-such-profile"))
    done = cli("daemon", "--check", str(config))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "does not exist" in ln]
    assert len(lines) == 4, done.stderr
    for key, line, what in (("ec2.subnets", 6, "subnet subnet-0000000000000dead"),
                            ("ec2.security_groups", 7, "security group sg-0000000000000dead"),
                            ("ec2.instance_profile", 8, "instance profile no-such-profile"),
                            ("ec2.images.us-east-1.x86_64", 9, "image ami-0000000000000dead")):
        assert any(f"c.yaml:{line}: {key}: {what}" in ln for ln in lines), (key, done.stderr)


@pytest.mark.moto
def test_ec2_problems_direct(world):
    settings = Ec2Settings.from_config({"subnets": [world["subnet"], "subnet-0000000000000beef"]}, ["us-east-1"])
    problems = deepcheck.ec2_problems(settings, lambda s, r: boto3.client(s, region_name=r, endpoint_url=world["url"]))
    assert [k for k, _ in problems] == ["ec2.subnets"] and "subnet-0000000000000beef" in problems[0][1]
