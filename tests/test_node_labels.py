"""The node a plan creates: Jenkins (the emulator's own reader) must run the item there, and the
expression is decided once per truth vector of its comparisons, not once per offer and assignment."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from provisioner.errors import InputError
from provisioner.labels import node_label_string
from provisioner.requirements import Requirements, Sizing, is_demand
from tests.factories import offer
from tests.jenkins_emulator import labels as L

TABLE = [offer("m5.large", vcpu=2, mem=8), offer("r5.2xlarge", vcpu=8, mem=64, market="spot", price=0.2),
         offer("c7g.large", vcpu=2, mem=4, arch="arm64", price=0.05),
         offer("g5.xlarge", vcpu=4, mem=16, gpus=1, gpu_model="A10G", price=1.0),
         offer("t3.micro", vcpu=2, mem=1, market="spot", price=0.003)]
NODE = "ec2-node-1"     # the node's own name, a label Jenkins adds


def jenkins_runs(expression: str, names: list[str]) -> bool:
    """Would Jenkins run an item with `expression` on a node whose labelString provisioner wrote?"""
    on_node = frozenset(L.split_label_string(node_label_string(names))) | {NODE}
    return L.get_label(expression).matches(on_node)


@pytest.mark.parametrize("names", [["ec2", "it's"], ["ec2", "a\\"], ["ec2", "tab\there"], ["ec2", 'q"uote'],
                                   ["ec2", "x y", "\\\\"], ["ec2", ""], ["ec2", "new\nline", "cr\r"],
                                   ["ec2", "'", '"', "\\t", "\\u0041"]], ids=repr)
def test_node_label_string_splits_back_to_the_same_names(names):
    assert L.split_label_string(node_label_string(names)) == names


def test_quote_in_an_atom_reaches_jenkins_intact():
    req = Requirements.parse('ec2 && "it\'s"')
    names = req.node_labels(TABLE[0])
    assert names == ["ec2", "it's"] and jenkins_runs('ec2 && "it\'s"', names)


def test_an_atom_both_positive_and_negated_is_labelled_by_its_truth():
    expr = "ec2 && (mem=64 || spot) && !mem=64"
    req = Requirements.parse(expr)
    fits = [o for o in TABLE if req.matcher()(o)]
    assert [o.instance_type for o in fits] == ["t3.micro"]
    names = req.node_labels(fits[0])
    assert "mem=64" not in names and jenkins_runs(expr, names)
    autotuned = Sizing(vcpu=1, mem_gib=2)
    for o in TABLE:
        if req.matcher(autotuned)(o):
            assert jenkins_runs(expr, req.node_labels(o, autotuned)), o.instance_type


# ---- property: for any demand we accept, Jenkins runs the item on the node we make ------------

PLAIN = ["linux", "docker", "it's", "a\\", "tab\tx", 'q"', "x y", "-", "a:b", "é", "\\\\", "it\\'s"]
COMPARISONS = ["vcpu=2", "vcpu=8", "mem=8", "mem=64", "memory=64", "spot", "ondemand", "on-demand",
               "arch=arm64", "type=m5.*", "family=c7g", "gpu=1", "exact", "timeout=1h", "disk=50",
               "region=us-east-1", "vcpu>=4", "mem<16", "type!=t3.micro"]
ATOM = st.sampled_from(PLAIN + COMPARISONS).map(L.quote)


def _expressions():
    def grow(inner):
        return st.one_of(st.builds(lambda a: f"!({a})", inner),
                         st.builds(lambda a, op, b: f"({a}{op}{b})", inner,
                                   st.sampled_from(["&&", "||", "->", "<->"]), inner))
    return st.recursive(ATOM, grow, max_leaves=12).map(lambda e: f"ec2 && {e}")


@settings(max_examples=400, deadline=None)
@given(_expressions(), st.sampled_from([None, Sizing(vcpu=1, mem_gib=2), Sizing(vcpu=1, mem_gib=100)]))
def test_jenkins_runs_the_item_on_the_node_provisioner_labels(expression, sizing):
    assert is_demand(expression)
    try:
        req = Requirements.parse(expression, lax=True)
    except InputError:
        assume(False)
    match = req.matcher(sizing)
    for o in TABLE:
        if match(o):
            assert jenkins_runs(expression, req.node_labels(o, sizing)), (o.instance_type, expression)


# ---- work: once per truth vector --------------------------------------------------------------

class CountingOffer(type(TABLE[0])):
    """An offer that notes each read of the attributes the comparisons of the test read."""

    __slots__ = ()

    def __getattribute__(self, name):
        if name in ("vcpu", "memory_gib"):
            READS.append(name)
        return object.__getattribute__(self, name)


READS: list[str] = []


def test_free_atoms_do_not_multiply_the_work_per_offer():
    pairs = " && ".join(f"(a{i} || vcpu=100000) && (!a{i} || mem=100000)" for i in range(10))
    req = Requirements.parse(f"ec2 && {pairs}")
    offers = [CountingOffer(*o) for o in TABLE * 40]
    match = req.matcher()
    READS.clear()
    assert not any(match(o) for o in offers)
    assert len(READS) <= 2 * len(offers) + 2 * len(TABLE)   # per offer and comparison, whatever 2^10 is
