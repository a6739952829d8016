"""GPU and accelerator keys: `gpu=N` counts NVIDIA (CUDA) GPUs unless a vendor or model is named;
Gaudi, Inferentia and Trainium are accelerators under `accel=<model>[:N]`, never `gpu`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.catalog.model import Offer
from provisioner.errors import InputError
from provisioner.requirements import Requirements
from tests.factories import offer

T4 = offer("g4dn.xlarge", vcpu=4, mem=16, gpus=1, gpu_model="T4", price=0.526)
A10G4 = offer("g5.12xlarge", vcpu=48, mem=192, gpus=4, gpu_model="A10G", price=5.67)
RADEON = offer("g4ad.xlarge", vcpu=4, mem=16, gpus=1, gpu_model="Radeon Pro V520", gpu_maker="AMD", price=0.379)
RADEON4 = offer("g4ad.16xlarge", vcpu=64, mem=256, gpus=4, gpu_model="Radeon Pro V520", gpu_maker="AMD", price=3.47)
INF2 = offer("inf2.xlarge", vcpu=4, mem=16, accel="Inferentia2", accels=1, price=0.758)
TRN16 = offer("trn1.32xlarge", vcpu=128, mem=512, accel="Trainium", accels=16, price=21.5)
TRN2 = offer("trn2.48xlarge", vcpu=192, mem=2048, accel="Trainium2", accels=16, price=40.0)
GAUDI = offer("dl1.24xlarge", vcpu=96, mem=768, accel="Gaudi HL-205", accels=8, price=13.1)
CPU = offer("m5.large", price=0.096)
TABLE = [T4, A10G4, RADEON, RADEON4, INF2, TRN16, TRN2, GAUDI, CPU]


def chosen(label: str) -> list[str]:
    match = Requirements.parse(label).matcher()
    return [o.instance_type for o in TABLE if match(o)]


@pytest.mark.parametrize("label, types", [
    ("ec2 && gpu=1", ["g4dn.xlarge", "g5.12xlarge"]),                 # NVIDIA only: no Radeon, no Gaudi
    ("ec2 && gpu=4", ["g5.12xlarge"]),
    ("ec2 && gpu=nvidia", ["g4dn.xlarge", "g5.12xlarge"]),
    ('ec2 && "gpu=nvidia:4"', ["g5.12xlarge"]),
    ("ec2 && gpu=NVIDIA", ["g4dn.xlarge", "g5.12xlarge"]),
    ("ec2 && gpu=amd", ["g4ad.xlarge", "g4ad.16xlarge"]),
    ("ec2 && gpu=radeon", ["g4ad.xlarge", "g4ad.16xlarge"]),
    ('ec2 && "gpu=radeon:4"', ["g4ad.16xlarge"]),
    ("ec2 && gpu=radeon-pro-v520", ["g4ad.xlarge", "g4ad.16xlarge"]),
    ("ec2 && gpu=t4", ["g4dn.xlarge"]),
    ("ec2 && gpu=a10g", ["g5.12xlarge"]),
    ("ec2 && !gpu=1", ["g4ad.xlarge", "g4ad.16xlarge", "inf2.xlarge", "trn1.32xlarge", "trn2.48xlarge",
                       "dl1.24xlarge", "m5.large"]),
    ('ec2 && "gpu!=radeon" && vcpu=64', ["trn1.32xlarge", "trn2.48xlarge", "dl1.24xlarge"]),
    ("ec2 && accel=inferentia2", ["inf2.xlarge"]),
    ("ec2 && accel=Inferentia2", ["inf2.xlarge"]),
    ('ec2 && "accel=trainium:16"', ["trn1.32xlarge"]),
    ("ec2 && accel=trainium2", ["trn2.48xlarge"]),
    ("ec2 && accel=gaudi", ["dl1.24xlarge"]),
    ('ec2 && "accel=gaudi:9"', []),
    ("ec2 && accel=neuron", ["inf2.xlarge", "trn1.32xlarge", "trn2.48xlarge"]),
    ("ec2 && (accel=inferentia2 || gpu=t4)", ["g4dn.xlarge", "inf2.xlarge"]),
    ("ec2 && !accel=neuron && vcpu=64", ["g4ad.16xlarge", "dl1.24xlarge"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_gpu_counts_nvidia_unless_a_vendor_or_model_is_named(label, types):
    assert chosen(label) == types


@pytest.mark.parametrize("label, position, message", [
    ("ec2 && gpu=gaudi", 11, "gaudi is an accelerator, not a GPU: write accel=gaudi"),
    ('ec2 && "gpu=inferentia2:2"', 12, "write accel=inferentia2"),
    ("ec2 && gpu=trainium", 11, "write accel=trainium"),
    ("ec2 && gpu=habana", 11, "write accel=gaudi"),
    ("ec2 && accel=4", 13, "accel names a model"),
    ("ec2 && accel=a10g", 13, "for a GPU write gpu=a10g"),
    ("ec2 && accel=nvidia", 13, "for a GPU write gpu=nvidia"),
    ('ec2 && "accel=gaudi:0"', 14, "at least 1"),
    ('ec2 && "accel>=gaudi"', 15, "use accel=MODEL or accel=MODEL:N"),
])
def test_accelerators_under_gpu_and_gpus_under_accel_are_errors_with_a_hint(label, position, message):
    with pytest.raises(InputError) as err:
        Requirements.parse(label)
    assert message in str(err.value) and err.value.position == position


def test_declared_requirements_name_gpu_and_accelerator_apart():
    assert Requirements.parse('ec2 && "gpu=nvidia:4"').to_dict() == {"gpu_count": 4, "gpu_model": "nvidia",
                                                                    "atoms": ["ec2"]}
    assert Requirements.parse('ec2 && "accel=trainium:16"').to_dict() == {"accel_count": 16, "accel_model": "trainium",
                                                                         "atoms": ["ec2"]}
    assert Requirements.parse("ec2 && accel=gaudi").to_dict() == {"accel_count": 1, "accel_model": "gaudi",
                                                                  "atoms": ["ec2"]}


def test_node_labels_carry_the_gpu_and_accel_atoms_true_for_the_plan():
    req = Requirements.parse("ec2 && (gpu=1 || accel=inferentia2) && !gpu=radeon")
    assert req.node_labels(INF2) == ["ec2", "accel=inferentia2"]
    assert req.node_labels(T4) == ["ec2", "gpu=1"]


def test_an_offer_with_only_accelerators_has_no_gpu():
    assert isinstance(INF2, Offer) and INF2.gpu_count == 0 and INF2.accel_count == 1
    assert GAUDI.gpu_count == 0 and GAUDI.accel_kind == "gaudi" and TRN16.accel_kind == "neuron"
    assert T4.gpu_manufacturer == "NVIDIA" and CPU.accel_kind is None


VECTORS = json.loads((Path(__file__).parent / "vectors" / "labels.json").read_text())
DEVICE_REJECTIONS = [v for v in VECTORS if v.get("invalid") and set(v["map"]) <= {"gpu", "accel"}]


@pytest.mark.parametrize("vector", DEVICE_REJECTIONS, ids=lambda v: v["name"])
def test_what_groovy_rejects_for_gpu_and_accel_python_rejects_too(vector):
    (key, value), = vector["map"].items()
    with pytest.raises(InputError):
        Requirements.parse(f'ec2 && "{key}={value}"')


def test_at_least_zero_gpus_is_an_error_and_exactly_zero_a_filter():
    with pytest.raises(InputError, match="asks for nothing"):
        Requirements.parse("ec2 && gpu=0")
    assert chosen("ec2 && gpu==0 && vcpu=64") == ["g4ad.16xlarge", "trn1.32xlarge", "trn2.48xlarge", "dl1.24xlarge"]
