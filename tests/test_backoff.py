"""The one backoff (provisioner.backoff): the ceiling doubles to the cap; each jitter stays in its band."""

from __future__ import annotations

import random

import pytest

from provisioner.backoff import UNCAPPED, Backoff


def test_ceiling_doubles_to_the_cap():
    b = Backoff(0.5, 10.0)
    assert [b.ceiling(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert Backoff(0.5, UNCAPPED).ceiling(3) == 4 and Backoff(1, UNCAPPED).ceiling(10_000) == 2.0 ** 60


@pytest.mark.parametrize("jitter, low, high", [("full", 0.0, 1.0), ("spread", 0.75, 1.25), ("none", 1.0, 1.0)])
def test_each_jitter_stays_in_its_band(jitter, low, high):
    rng = random.Random(7)
    b = Backoff(0.5, 10.0, jitter=jitter)
    for n in range(8):
        draws = [b.delay(n, rng) / b.ceiling(n) for _ in range(200)]
        assert low <= min(draws) and max(draws) <= high
        if jitter != "none":
            assert max(draws) - min(draws) > 0.2 * (high - low)     # it does spread


def test_unknown_jitter_is_refused():
    with pytest.raises(ValueError, match="jitter must be one of"):
        Backoff(jitter="equal")
