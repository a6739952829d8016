"""clouds/registry.py: `cloud:` names an entry, make_cloud builds its adapter; a cloud registered
from outside the package (the tests' process cloud) is validated and built the same way."""

from __future__ import annotations

import pytest

from provisioner.clouds import registry
from provisioner.clouds.base import BlockedOffers, CloudDefaults
from provisioner.config import parse_config
from provisioner.errors import ConfigError
from tests.daemon.fakes import ProcessCloud, register_process_cloud

register_process_cloud()


def test_the_config_names_the_cloud_and_the_registry_builds_its_adapter(tmp_path):
    docker = registry.make_cloud(parse_config("cloud: docker\ndocker: {host_cpus: 2}\n"))
    assert (type(docker).__name__, docker.name, docker.settings.host_cpus) == ("DockerCloud", "docker", 2)
    ec2 = registry.make_cloud(parse_config("cloud: ec2\nec2: {extra_tags: {cost-center: 42}}\n"))
    assert (type(ec2).__name__, ec2.name) == ("Ec2Cloud", "ec2")
    assert ec2.launch_tags() == {"cost-center": "42"} and ec2.secret_env({"a": 1}) == {}
    blocked = BlockedOffers()
    text = f"cloud: process\nprocess: {{folder: '{tmp_path}', agent_jar: /x/agent.jar}}\njenkins: {{url: 'http://j/'}}\n"
    process = registry.make_cloud(parse_config(text), blocked)
    assert isinstance(process, ProcessCloud) and process.blocked is blocked
    assert (process.folder, process.jenkins_url, str(process.agent_jar)) == (tmp_path, "http://j/", "/x/agent.jar")


def test_run_needs_an_ec2_image_the_daemon_does_not():
    config = parse_config("cloud: ec2\n")
    assert registry.make_cloud(config).name == "ec2"
    with pytest.raises(Exception, match="no image configured for ec2"):
        registry.make_cloud(config, purpose="run")


def test_an_unregistered_cloud_or_section_is_a_config_error_naming_the_line():
    with pytest.raises(ConfigError) as caught:
        parse_config("regions: [us-east-1]\ncloud: gcp\n", "c.yaml")
    assert "cloud" in str(caught.value) and "gcp" in str(caught.value) and ":2" in str(caught.value)
    with pytest.raises(ConfigError, match="process.flavour.*unknown key"):
        parse_config("cloud: process\nprocess:\n  flavour: x\n", "c.yaml")
    with pytest.raises(ConfigError, match="process.launch_delay_s.*must be"):
        parse_config("cloud: process\nprocess:\n  launch_delay_s: soon\n", "c.yaml")


def test_registered_names_and_their_rules_without_building_a_cloud():
    assert registry.names()[:2] == ("docker", "ec2") and "process" in registry.names()
    assert registry.adapter("ec2").user_data_limit == 16384 and registry.adapter("docker").user_data_limit is None
    assert registry.adapter("ec2").bundle_source == "ssm" and registry.adapter("process").bundle_source == "env"
    with pytest.raises(ValueError, match="unknown cloud 'gcp'"):
        registry.adapter("gcp")
    with pytest.raises(ValueError, match="a cloud's name"):
        registry.register("no spaces", CloudDefaults)
