"""Requirements from labels and filters, as one predicate over offers (docs/labels.md semantics)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from provisioner import labels
from provisioner.errors import InputError
from provisioner.labels import LabelSyntaxError
from provisioner.requirements import Requirements, Sizing, always_true, interpret, is_demand, predicate
from tests.factories import offer

SMALL = offer("m5.large", vcpu=2, mem=8)
BIG = offer("r5.4xlarge", vcpu=16, mem=128, price=1.0)
ARM = offer("c7g.2xlarge", vcpu=8, mem=16, arch="arm64", price=0.29)
GPU = offer("g5.xlarge", vcpu=4, mem=16, gpus=1, gpu_model="A10G", price=1.0)
GPU4 = offer("g5.12xlarge", vcpu=48, mem=192, gpus=4, gpu_model="A10G", price=5.6)
SPOT_SMALL = offer("m5.large", vcpu=2, mem=8, market="spot", price=0.04)
TABLE = [SMALL, BIG, ARM, GPU, GPU4, SPOT_SMALL]


def matching(label=None, filters=(), sizing=None, **kw):
    m = Requirements.parse(label, list(filters), **kw).matcher(sizing)
    return [o.instance_type + ("/spot" if o.market == "spot" else "") for o in TABLE if m(o)]


@pytest.mark.parametrize("label,expected", [
    ("ec2 && vcpu=8", ["r5.4xlarge", "c7g.2xlarge", "g5.12xlarge"]),
    ("ec2 && mem=16", ["r5.4xlarge", "c7g.2xlarge", "g5.xlarge", "g5.12xlarge"]),
    ("ec2 && mem=16G && vcpu=4", ["r5.4xlarge", "c7g.2xlarge", "g5.xlarge", "g5.12xlarge"]),
    ("ec2 && mem=512M", ["m5.large", "r5.4xlarge", "c7g.2xlarge", "g5.xlarge", "g5.12xlarge", "m5.large/spot"]),
    ("ec2 && gpu=1", ["g5.xlarge", "g5.12xlarge"]),
    ("ec2 && gpu=a10g", ["g5.xlarge", "g5.12xlarge"]),
    ('ec2 && "gpu=A10G:4"', ["g5.12xlarge"]),
    ("ec2 && gpu=t4", []),
    ("ec2 && arch=arm64", ["c7g.2xlarge"]),
    ("ec2 && arch=aarch64", ["c7g.2xlarge"]),
    ("ec2 && type=m5.large", ["m5.large", "m5.large/spot"]),
    ('ec2 && "type=g5.*"', ["g5.xlarge", "g5.12xlarge"]),
    ("ec2 && family=r5", ["r5.4xlarge"]),
    ("ec2 && spot", ["m5.large/spot"]),
    ("ec2 && ondemand && vcpu=2 && mem=8 && !arch=arm64 && gpu==0", ["m5.large", "r5.4xlarge"]),
    ("ec2 && on-demand && type=m5.large", ["m5.large"]),
    ("ec2 && !spot && type=m5.large", ["m5.large"]),
    ("ec2 && (gpu=a10g || arch=arm64) && vcpu=8", ["c7g.2xlarge", "g5.12xlarge"]),
    ("ec2 && !windows && vcpu=16", ["r5.4xlarge", "g5.12xlarge"]),
    ("ec2 && linux && disk=200 && timeout=2h && team=ds && type=m5.large && spot", ["m5.large/spot"]),
    ('ec2 && "vcpu>=8" && "memory<=64"', ["c7g.2xlarge"]),
    ("ec2 && (spot -> type=m5.large) && vcpu=2 && mem=8 && arch=x86_64 && gpu==0", ["m5.large", "r5.4xlarge", "m5.large/spot"]),
])
def test_label_predicate(label, expected):
    assert matching(label) == expected


def test_filters_in_the_original_syntax_and_labels_combine():
    assert matching(filters=["vcpu>=8", "memory>=16", "arch=arm64"]) == ["c7g.2xlarge"]
    assert matching("ec2 && spot", ["mem>=4"]) == ["m5.large/spot"]
    assert matching(filters=["vcpu>8"]) == ["r5.4xlarge", "g5.12xlarge"]
    assert matching(filters=["vcpu<4"]) == ["m5.large", "m5.large/spot"]
    assert matching(filters=["vcpu==16"]) == ["r5.4xlarge"]


def test_sizing_floors_replace_declared_atoms_but_not_caps():
    assert matching("ec2 && vcpu=16", sizing=Sizing(vcpu=2)) == ["m5.large", "r5.4xlarge", "c7g.2xlarge",
                                                                   "g5.xlarge", "g5.12xlarge", "m5.large/spot"]
    # a negated sizing atom is a cap, which autotune never lifts
    assert matching("ec2 && !vcpu=8", sizing=Sizing(vcpu=16)) == ["m5.large", "g5.xlarge", "m5.large/spot"]


def test_declared_values_and_to_dict():
    r = Requirements.parse('ec2 && linux && vcpu=8 && mem=1.5GiB && "gpu=a10g:4" && arch=arm64 && disk=100 '
                           '&& spot && exact && timeout=1h30m && team=vision && region=us-west-2')
    assert r.vcpu == 8 and r.mem_gib == 1.5 and r.disk_gib == 100 and r.exact and r.timeout_s == 5400
    assert r.has_market_atom and r.mentions_region
    assert r.to_dict() == {"vcpu": 8, "mem_gib": 1.5, "disk_gib": 100.0, "gpu_count": 4, "gpu_model": "a10g",
                           "arch": "arm64", "market": "spot", "region": "us-west-2", "exact": True,
                           "timeout_s": 5400.0, "team": "vision", "atoms": ["ec2", "linux"]}
    assert not Requirements.parse("ec2").exact
    assert Requirements.parse("ec2", no_autotune=True).exact


def test_node_labels_carry_true_atoms_as_written_plus_the_managed_atom():
    r = Requirements.parse('ec2 && !spot && "vcpu>=2" && linux && !windows')
    assert r.node_labels(SMALL) == ["ec2", "vcpu>=2", "linux"]
    # sizing atoms count as true even when autotune chose less
    r = Requirements.parse("ec2 && vcpu=16 && mem=64")
    assert r.node_labels(SMALL, Sizing(vcpu=2, mem_gib=4)) == ["ec2", "vcpu=16", "mem=64"]
    r = Requirements.parse("ec2 && (linux || docker)")
    assert r.node_labels(SMALL) == ["ec2", "linux"]
    assert Requirements.parse("farm && vcpu=2").node_labels(SMALL, managed_atom="farm") == ["farm", "vcpu=2"]


@pytest.mark.parametrize("text,position,needle", [
    ("ec2 && cpu=8", 7, "unknown key 'cpu'"),
    ("ec2 && mem=16X", 11, "bad memory size"),
    ("ec2 && vcpu=two", 12, "not a number"),
    ("ec2 && vcpu=0", 12, "greater than zero"),
    ("ec2 && arch=sparc", 12, "unknown architecture"),
    ('ec2 && "gpu>=a10g"', 13, "bad GPU request"),
    ("ec2 && timeout=0", 15, "greater than zero"),
    ("ec2 && foo=bar", 7, "unknown key 'foo'"),
    ('ec2 && "vcpu=>8"', 13, "not a number"),
])
def test_bad_keys_and_units_name_the_token_and_position(text, position, needle):
    with pytest.raises(InputError) as info:
        Requirements.parse(text)
    assert info.value.position == position, str(info.value)
    assert needle in str(info.value)


def test_unparseable_label_is_an_error_strictly_and_one_atom_laxly():
    with pytest.raises(LabelSyntaxError):
        Requirements.parse("ec2 && vcpu>=8")
    lax = Requirements.parse('"vcpu>=8"', lax=True)
    assert lax.vcpu == 8


def test_bad_filter_names_the_filter():
    with pytest.raises(InputError) as info:
        Requirements.parse(None, ["vcpu>=8", "ram>=4"])
    assert "filter 'ram>=4'" in str(info.value)


@pytest.mark.parametrize("expr,ours", [
    ("ec2", True), ("ec2 && vcpu=8", True), ("linux && (ec2 && spot)", True), ('"ec2"', True),
    ("ec2 || linux", False), ("!ec2", False), ("ec2-x && vcpu=8", False), ("vcpu>=8 && ec2", False),
    (None, False), ("", False),
])
def test_demand_is_the_managed_atom_as_a_positive_top_level_conjunct(expr, ours):
    assert is_demand(expr) is ours


def test_interpret_kinds():
    assert interpret("spot").kind == "market" and interpret("on-demand").value == "on-demand"
    assert interpret("exact").kind == "exact"
    assert interpret("docker").kind == "plain"
    assert interpret("memory>=16").key == "mem"


VECTORS = Path(__file__).parent / "vectors" / "labels.json"


@pytest.mark.skipif(not VECTORS.exists(), reason="the shared Groovy/Python vectors are not there yet")
def test_shared_vectors_parse_to_the_same_requirements_as_groovy_renders():
    cases = json.loads(VECTORS.read_text())
    valid = [c for c in cases if not c.get("invalid")]
    assert len(valid) >= 20
    for case in valid:
        assert Requirements.parse(case["label"]).to_dict() == case["requirements"], case["name"]


# -- folded predicates: the same truth as the expression, evaluated per assignment ----------------

FOLD_CASES = ["ec2", "ec2 && vcpu=8", "ec2 && (vcpu=2 || mem=64) && ondemand", "ec2 && !spot && exact",
              "ec2 && (linux || docker) && mem=16", "ec2 && (a || !b) && (b -> gpu=1)", "ec2 && (spot <-> arch=arm64)",
              "ec2 && !(vcpu=4 -> mem=128)", "ec2 && (linux <-> vcpu=8) && timeout=2h && disk=50",
              "ec2 && (x || !x)", "ec2 && !ec2", "ec2 && (spot || !spot) && (gpu=a10g || !gpu=2)",
              "ec2 && (type=g5.* || family=m5) && !region=us-west-2", "!(linux && spot) || (mem=8 <-> !vcpu=4)"]


def _by_assignment(req: Requirements, sizing: Sizing | None):
    """The expression evaluated atom by atom under every assignment of its free plain atoms."""
    def truth(s, o, assign):
        def atom(a):
            t = s.terms[a]
            if t.kind == "plain":
                return a.name in s.forced or assign[a.name]
            return predicate(t, sizing, s.positive[a])(o)
        return atom

    def source(s, o):
        return any(labels.evaluate(s.ast, truth(s, o, dict(zip(s.free, values))))
                   for values in itertools.product([False, True], repeat=len(s.free)))
    return lambda o: all(source(s, o) for s in req.sources)


@pytest.mark.parametrize("label", FOLD_CASES)
@pytest.mark.parametrize("sizing", [None, Sizing(vcpu=1, mem_gib=12)], ids=["declared", "autotuned"])
def test_folded_predicates_agree_with_the_expression(label, sizing):
    offers = TABLE + [offer("m5.xlarge", region="us-west-2", vcpu=4, mem=16), offer("c7g.large", arch="arm64",
                                                                                 market="spot", price=0.02)]
    req = Requirements.parse(label, ["ondemand"] if "x" in label else [])
    reference = _by_assignment(req, sizing)
    assert [req.matcher(sizing)(o) for o in offers] == [reference(o) for o in offers]
    for desc, pred in req.narrowing_steps(sizing):
        step = Requirements.parse(desc)
        if step.conjunctive:    # a conjunct with free atoms alone is checked against the whole source
            assert [pred(o) for o in offers] == [_by_assignment(step, sizing)(o) for o in offers], desc


def test_a_step_no_offer_can_fail_is_always_true():
    steps = Requirements.parse("ec2 && linux && vcpu=2 && exact && timeout=1h").narrowing_steps()
    assert [pred is always_true for _, pred in steps] == [True, True, False, True, True]


def test_key_and_the_sizing_the_predicates_use():
    a, b = Requirements.parse("ec2 && vcpu=8"), Requirements.parse("ec2 && vcpu=8", lax=True)
    assert a.key == b.key and hash(a.key) == hash(b.key)
    assert a.key != Requirements.parse("ec2 && vcpu=8", ["spot"]).key
    sizing = Sizing(vcpu=1, mem_gib=6)
    assert a.sizing_used(sizing) == (1, None)          # no mem= atom: the memory floor changes nothing
    assert Requirements.parse("ec2 && mem=16").sizing_used(sizing) == (None, 6)
    assert Requirements.parse("ec2 && !mem=16 && vcpu=2").sizing_used(sizing) == (1, None)   # a cap
    assert a.sizing_used(None) == (None, None)


@pytest.mark.parametrize("label", ["ec2 && vcpu=nan", "ec2 && vcpu=inf", "ec2 && vcpu=1e400", "ec2 && mem=1e400",
                                   "ec2 && mem=" + "9" * 400, "ec2 && disk=" + "9" * 400, "ec2 && vcpu=-inf",
                                   "ec2 && timeout=" + "9" * 400, 'ec2 && "vcpu>=nan"'])
def test_non_finite_numbers_are_refused_clearly(label):
    with pytest.raises(InputError) as info:
        Requirements.parse(label)
    assert any(word in str(info.value) for word in ("number", "finite", "too long"))


def test_free_plain_atoms_are_limited_to_twelve():
    twelve = " && ".join(f"(a{i} || vcpu=2)" for i in range(12))
    assert Requirements.parse(f"ec2 && {twelve}").matcher()(SMALL)
    with pytest.raises(InputError) as info:
        Requirements.parse(f"ec2 && {twelve} && (b || spot)")
    assert info.value.reason == "label-too-complex" and "12" in str(info.value)


def test_a_long_chain_plans_and_deep_labels_are_rejected_not_crashed():
    req = Requirements.parse("ec2&&" + "&&".join(["linux"] * 400 + ["vcpu=2"] * 100))
    assert req.matcher()(SMALL) and req.node_labels(SMALL) == ["ec2", "linux", "vcpu=2"]
    assert len(req.narrowing_steps()) == 3 and req.key == req.key
    deep = "ec2 && " + "(" * 165 + "vcpu=2" + ")" * 165
    assert is_demand(deep)
    with pytest.raises(InputError) as info:
        Requirements.parse(deep, lax=True)
    assert info.value.reason == "label-too-complex"
