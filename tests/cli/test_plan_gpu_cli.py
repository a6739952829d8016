"""`provisioner plan` with GPU and accelerator labels, on the real bundled catalog."""

from __future__ import annotations

import json

import pytest

from provisioner.catalog import load_catalog

NEURON_OR_GAUDI = ("inf1", "inf2", "trn1", "trn1n", "trn2", "dl1")


@pytest.fixture(scope="module")
def by_type(tmp_path_factory):
    return {o.instance_type: o for o in load_catalog(cache=tmp_path_factory.mktemp("c") / "none").offers}


def plan(cli, label: str) -> dict:
    out = cli("plan", "--label", label, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_gpu_1_plans_an_nvidia_gpu_never_radeon_gaudi_or_neuron(cli, by_type):
    p = plan(cli, "ec2 && gpu=1")
    assert p["gpu_count"] >= 1 and p["accel_count"] == 0
    for c in p["candidates"]:
        o = by_type[c["instance_type"]]
        assert o.gpu_manufacturer == "NVIDIA" and o.family not in ("g4ad",) + NEURON_OR_GAUDI, c


def test_gpu_names_a_vendor_a_series_or_a_model(cli, by_type):
    nvidia4 = plan(cli, 'ec2 && "gpu=nvidia:4"')
    assert nvidia4["gpu_count"] >= 4 and by_type[nvidia4["instance_type"]].gpu_manufacturer == "NVIDIA"
    assert plan(cli, "ec2 && gpu=nvidia")["gpu_count"] >= 1
    radeon = plan(cli, "ec2 && gpu=radeon")
    assert radeon["instance_type"].startswith("g4ad.") and radeon["gpu_count"] >= 1
    assert plan(cli, "ec2 && gpu=amd")["instance_type"].startswith("g4ad.")
    assert plan(cli, "ec2 && gpu=a10g")["instance_type"].startswith("g5.")


def test_accelerators_are_planned_under_accel_with_no_gpu(cli):
    inf2 = plan(cli, "ec2 && accel=inferentia2")
    assert inf2["instance_type"].startswith("inf2.") and inf2["gpu_count"] == 0
    assert (inf2["accel_model"], inf2["accel_count"]) == ("Inferentia2", 1)
    trn = plan(cli, 'ec2 && "accel=trainium:16"')
    assert trn["instance_type"].startswith("trn1") and trn["accel_count"] >= 16 and trn["gpu_count"] == 0
    gaudi = plan(cli, "ec2 && accel=gaudi")
    assert gaudi["instance_type"] == "dl1.24xlarge" and gaudi["gpu_count"] == 0 and gaudi["accel_count"] == 8


def test_an_accelerator_under_gpu_is_exit_2_with_the_right_key(cli):
    out = cli("plan", "--label", "ec2 && gpu=gaudi")
    assert out.returncode == 2 and "accel=gaudi" in out.stderr and "Traceback" not in out.stderr
    out = cli("plan", "--label", "ec2 && gpu=inferentia2", "--json")
    assert out.returncode == 2 and "accel=inferentia2" in json.loads(out.stdout)["error"]
