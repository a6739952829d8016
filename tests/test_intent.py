"""The job's intent, resolved once (provisioner/intent.py): market, timeout and architecture rules."""

from __future__ import annotations

import pytest

from provisioner.config import parse_config
from provisioner.errors import ConfigError, NoOfferError
from provisioner.intent import ArchRule, config_arch_rule, image_arches, market_of, resolve
from provisioner.planner import plan_intent, resolve_for_config, settings_for
from provisioner.requirements import Requirements
from provisioner.catalog.model import Catalog
from tests.factories import offer

DEFAULTS = parse_config("").defaults


@pytest.mark.parametrize("label, filters, market", [
    ("ec2", [], None),
    ("ec2 && spot", [], "spot"),
    ("ec2 && (spot)", [], "spot"),
    ("ec2 && ondemand && vcpu=2", [], "on-demand"),
    ("ec2 && on-demand", [], "on-demand"),
    ("ec2 && !ondemand", [], "spot"),
    ("ec2 && !spot", [], "on-demand"),
    ("ec2 && (spot || ondemand)", [], None),
    ("ec2 && (spot || vcpu=8)", [], None),
    ("ec2 && !(spot && vcpu=8)", [], None),
    ("ec2", ["spot"], "spot"),
    ("ec2 && spot && ondemand", [], None),        # contradictory: the matcher finds no offer
], ids=lambda v: str(v))
def test_a_market_atom_restricts_only_as_a_top_level_conjunct(label, filters, market):
    intent = resolve(label, filters, defaults=DEFAULTS)
    assert market_of(Requirements.parse(label, filters)) == market
    assert intent.market == market
    assert intent.spot_only == (market == "spot")


def test_timeout_precedence_flag_label_config_default():
    two_h = parse_config("defaults:\n  timeout: 3h\n").defaults
    assert resolve("ec2 && timeout=2h", defaults=DEFAULTS, timeout="30m").timeout_s == 1800
    assert resolve("ec2 && timeout=2h", defaults=DEFAULTS, timeout=600.0).timeout_s == 600
    assert resolve("ec2 && timeout=2h", defaults=two_h).timeout_s == 7200
    assert resolve("ec2", defaults=two_h).timeout_s == 3 * 3600
    assert resolve("ec2", defaults=DEFAULTS).timeout_s == 6 * 3600
    assert resolve("ec2", defaults=None).timeout_s == 6 * 3600
    intent = resolve("ec2 && timeout=2h", defaults=DEFAULTS)
    assert intent.target_s == 5760 and "from the label's timeout=" in intent.reasons[0]


def test_interruptions_force_on_demand_unless_the_request_restricts_the_market():
    forced = resolve("ec2 && vcpu=2", defaults=DEFAULTS, interruptions=2, ondemand_after=2)
    assert forced.market == "on-demand" and forced.market_forced and not forced.spot_only
    assert forced.requirements.text == "ec2 && vcpu=2 && ondemand" and forced.declared.text == "ec2 && vcpu=2"
    assert any("interrupted at least 2 times" in r for r in forced.reasons)
    assert resolve("ec2 && vcpu=2", defaults=DEFAULTS, interruptions=1, ondemand_after=2).market is None
    assert resolve("ec2 && vcpu=2", defaults=DEFAULTS, interruptions=5, ondemand_after=0).market is None
    spot = resolve("ec2 && spot", defaults=DEFAULTS, interruptions=5, ondemand_after=2)
    assert spot.market == "spot" and not spot.market_forced and spot.requirements.text == "ec2 && spot"
    # both markets allowed by the label: the interruption rule may choose
    either = resolve("ec2 && (spot || ondemand)", defaults=DEFAULTS, interruptions=3, ondemand_after=2)
    assert either.market == "on-demand" and either.market_forced


def test_team_and_disk_come_from_the_label_else_the_caller_and_config():
    intent = resolve("ec2 && team=ml && disk=100", defaults=DEFAULTS, team="other")
    assert (intent.team, intent.disk_gib) == ("ml", 100)
    plain = resolve("ec2", defaults=DEFAULTS, team="other")
    assert (plain.team, plain.disk_gib) == ("other", 30)


def _rule(label: str, default: str | None, images, where: str = "test") -> ArchRule:
    return config_arch_rule(Requirements.parse(label), default, images, where)


def test_arch_rule_plans_only_arches_with_an_image_and_defaults_arch_unless_named():
    both = frozenset({"x86_64", "arm64"})
    assert _rule("ec2 && vcpu=2", None, both).arch == "x86_64"
    assert _rule("ec2 && vcpu=2", "arm64", both).arch == "arm64"
    assert _rule("ec2 && vcpu=2", "any", both).arch is None
    assert _rule("ec2 && arch=arm64", None, both).arch is None             # the label decides
    assert _rule("ec2 && type=c8g.large", None, both).arch is None        # the named type decides
    assert _rule("ec2 && (type=c8g.* || vcpu=4)", None, both).arch == "x86_64"   # not every branch
    only_arm = frozenset({"arm64"})
    fallback = _rule("ec2 && vcpu=2", None, only_arm)
    assert fallback.arch == "arm64" and "no image for defaults.arch x86_64" in fallback.reason
    assert _rule("ec2 && arch=x86_64", None, only_arm).arch == "arm64"    # then no offer, said so
    assert _rule("ec2 && vcpu=2", None, None).arch == "x86_64"           # images unknown


def test_image_arches_of_each_cloud():
    ec2 = parse_config("cloud: ec2\nec2:\n  images:\n    us-east-1: {x86_64: ami-1, gpu_arm64: ami-2}\n")
    assert image_arches(ec2, "x86_64")[0] == {"x86_64", "arm64"}
    assert image_arches(parse_config("cloud: ec2\n"), "x86_64")[0] is None
    assert image_arches(parse_config(""), "arm64")[0] == {"arm64"}        # docker: the host's
    assert image_arches(parse_config("defaults:\n  arch: any\n"), "arm64")[0] == {"x86_64", "arm64"}
    with pytest.raises(ConfigError, match="defaults.arch: must be one of x86_64, arm64, any"):
        parse_config("defaults:\n  arch: sparc\n")


CATALOG = Catalog([offer("c8g.large", vcpu=2, mem=4, arch="arm64", price=0.02),
                   offer("c7a.large", vcpu=2, mem=4, price=0.03)], "test", "test")


def test_the_plan_carries_the_intent_and_its_reasons_and_names_a_missing_image():
    config = parse_config("cloud: ec2\nec2:\n  images:\n    us-east-1: {x86_64: ami-1, arm64: ami-2}\n")
    intent = resolve_for_config(config, "ec2 && vcpu=2 && mem=2")
    plan = plan_intent(CATALOG, intent, [], settings_for(config, intent))
    assert plan.chosen.offer.instance_type == "c7a.large" and plan.intent is intent
    assert plan.reasons[:len(intent.reasons)] == intent.reasons
    arm = resolve_for_config(parse_config("cloud: ec2\ndefaults: {arch: arm64}\nec2:\n  images:\n"
                                          "    us-east-1: {x86_64: ami-1, arm64: ami-2}\n"), "ec2 && vcpu=2")
    assert plan_intent(CATALOG, arm, [], settings_for(config, arm)).chosen.offer.instance_type == "c8g.large"
    x86_only = parse_config("cloud: ec2\nec2:\n  images:\n    us-east-1: {x86_64: ami-1}\n")
    named = resolve_for_config(x86_only, "ec2 && arch=arm64")
    with pytest.raises(NoOfferError, match="ec2.images has images for x86_64") as exc:
        plan_intent(CATALOG, named, [], settings_for(x86_only, named))
    assert exc.value.constraint == "arch=x86_64"


def test_the_job_timeout_default_is_decided_once():
    """planner, `run` and the daemon's agents all take the default from intent.timeout_rule."""
    from provisioner.intent import BUILTIN_TIMEOUT_S, default_timeout_s
    assert default_timeout_s(parse_config("defaults:\n  timeout: 3h\n").defaults) == 3 * 3600
    assert default_timeout_s(None) == BUILTIN_TIMEOUT_S == 6 * 3600
