"""Offer.throughput: what k busy threads get out of a type, with and without hyper-threads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import offer


def test_a_core_per_vcpu_grows_with_the_vcpus_used():
    o = offer("c7g.2xlarge", vcpu=8, single=1500, multi=11800)           # cores unknown (0): one per vCPU
    assert [o.throughput(k) for k in (1, 4, 8, 16)] == pytest.approx([1475, 5900, 11800, 11800])
    assert offer("c7g.2xlarge", vcpu=8, single=1500, multi=11800, cores=8).throughput(4) == pytest.approx(5900)


def test_hyper_threads_give_each_thread_a_core_while_cores_are_idle():
    o = offer("m5.4xlarge", vcpu=16, single=1000, multi=10560, cores=8)
    assert o.throughput(1) == 1000 and o.throughput(8) == 8000           # a core each, single-core speed
    assert o.throughput(12) == pytest.approx(8000 + 2560 * 4 / 8)        # sibling threads add the rest
    assert o.throughput(16) == o.throughput(64) == pytest.approx(10560)  # every vCPU busy: the all-core score


def test_a_core_that_loses_to_its_own_sibling_caps_at_the_all_core_score():
    """A benchmark whose two hyper-threads do less together than one alone (all-core below cores x
    single-core): no thread count is credited with more than the all-core score."""
    o = offer("m6i.large", vcpu=2, single=1800, multi=1700, cores=1)
    assert o.throughput(1) == o.throughput(2) == 1700


@given(n=st.integers(1, 192), share=st.floats(0.05, 1.0), single=st.floats(1, 1e5),
       ratio=st.floats(0.2, 1.2))
def test_throughput_never_falls_with_more_threads_and_ends_at_the_all_core_score(n, share, single, ratio):
    """`Estimate.runtime_bounds` rests on this: a type's throughput grows with the threads."""
    cores = max(1, int(n * share))
    o = offer("x.large", vcpu=n, single=single, multi=single * n * ratio, cores=cores)
    values = [o.throughput(k) for k in range(1, n + 2)]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(values, values[1:]))
    assert values[n - 1] == pytest.approx(o.score_multi, rel=1e-9)
