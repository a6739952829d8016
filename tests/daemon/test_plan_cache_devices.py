"""The daemon plans GPU and accelerator labels on the real catalog, and its nodes carry them."""

from __future__ import annotations

import pytest

from provisioner.catalog import load_catalog
from provisioner.config import parse_config
from provisioner.daemon.model import NoPlan, PlanKey
from provisioner.daemon.plan_cache import PlanCache


@pytest.fixture(scope="module")
def plan_cache(tmp_path_factory):
    catalog = load_catalog(cache=tmp_path_factory.mktemp("catalog") / "none")
    return PlanCache(parse_config("regions: [us-east-1]\n"), catalog, None, lambda: frozenset())


def test_node_for_gpu_1_is_an_nvidia_type_labelled_gpu_1(plan_cache):
    key = PlanKey("ec2 && gpu=1 && linux", "train")
    plan = plan_cache.plans([key], {})[key]
    assert not isinstance(plan, NoPlan), plan
    chosen = plan.chosen.offer
    assert chosen.gpu_manufacturer == "NVIDIA" and chosen.gpu_count >= 1 and not chosen.family.startswith("g4ad")
    assert all(c.offer.gpu_manufacturer == "NVIDIA" for c in plan.candidates)
    assert set(plan.node_labels) == {"ec2", "gpu=1", "linux"}


def test_node_for_an_accelerator_carries_accel_and_no_gpu_atom(plan_cache):
    key = PlanKey('ec2 && "accel=trainium:16" && !gpu=1', "pretrain")
    plan = plan_cache.plans([key], {})[key]
    assert not isinstance(plan, NoPlan), plan
    chosen = plan.chosen.offer
    assert chosen.accel_model == "Trainium" and chosen.accel_count >= 16 and chosen.gpu_count == 0
    assert plan.node_labels == ("ec2", "accel=trainium:16")


def test_an_accelerator_under_gpu_leaves_the_item_waiting_with_the_reason(plan_cache):
    key = PlanKey("ec2 && gpu=inferentia2", "infer")
    plan = plan_cache.plans([key], {})[key]
    assert isinstance(plan, NoPlan) and "write accel=inferentia2" in plan.reason
