"""Which image an EC2 type boots: the plain one of its architecture, or the one carrying its
devices' drivers (NVIDIA, AMD, Neuron for Inferentia/Trainium, Habana for Gaudi)."""

from __future__ import annotations

import pytest

from provisioner.clouds import ec2_params as P
from provisioner.clouds.base import CloudError
from provisioner.config import parse_config
from provisioner.errors import ConfigError
from tests.factories import offer

IMAGES = {"us-east-1": {"x86_64": "ami-cpu", "gpu_x86_64": "ami-nvidia", "neuron_x86_64": "ami-neuron",
                        "gaudi_x86_64": "ami-gaudi", "amdgpu_x86_64": "ami-amd", "gpu_arm64": "ami-nvidia-arm"}}


@pytest.mark.parametrize("o, slot", [
    (offer("m5.large"), "x86_64"),
    (offer("c7g.large", arch="arm64"), "arm64"),
    (offer("g5.xlarge", gpus=1, gpu_model="A10G"), "gpu_x86_64"),
    (offer("g5g.xlarge", arch="arm64", gpus=1, gpu_model="T4g"), "gpu_arm64"),
    (offer("g4ad.xlarge", gpus=1, gpu_model="Radeon Pro V520", gpu_maker="AMD"), "amdgpu_x86_64"),
    (offer("inf2.xlarge", accel="Inferentia2", accels=1), "neuron_x86_64"),
    (offer("trn1.32xlarge", accel="Trainium", accels=16), "neuron_x86_64"),
    (offer("dl1.24xlarge", accel="Gaudi HL-205", accels=8), "gaudi_x86_64"),
    (offer("f1.2xlarge", accel="Virtex UltraScale (VU9P)", accels=1), "x86_64"),   # no slot for FPGA SDKs
], ids=lambda v: v if isinstance(v, str) else v.instance_type)
def test_each_device_stack_has_its_own_image_slot(o, slot):
    assert P.image_slot(o) == slot
    settings = P.Ec2Settings.from_config({"images": IMAGES})
    assert P.image_for(settings, o) == IMAGES["us-east-1"].get(slot)


def test_a_missing_accelerator_image_names_its_config_key():
    settings = P.Ec2Settings.from_config({"images": {"us-east-1": {"x86_64": "ami-cpu"}}, "subnets": ["s"],
                                          "security_groups": ["g"]})
    assert P.config_problems(settings, offer("inf2.xlarge", accel="Inferentia2", accels=1)) == [
        "no image for us-east-1 neuron_x86_64 (ec2.images.us-east-1.neuron_x86_64)"]


def test_the_config_file_accepts_the_new_slots_and_rejects_others():
    cfg = parse_config("cloud: ec2\nec2:\n  images:\n    us-east-1:\n      neuron_x86_64: ami-1\n"
                       "      gaudi_x86_64: ami-2\n      amdgpu_x86_64: ami-3\n", "c.yaml")
    assert cfg.ec2.images["us-east-1"]["neuron_x86_64"] == "ami-1"
    with pytest.raises(ConfigError) as info:
        parse_config("cloud: ec2\nec2:\n  images:\n    us-east-1:\n      inferentia_x86_64: ami-1\n", "c.yaml")
    assert "neuron_x86_64" in str(info.value.problems)
    with pytest.raises(CloudError, match="inferentia_x86_64"):
        P.Ec2Settings.from_config({"images": {"us-east-1": {"inferentia_x86_64": "ami-1"}}})
