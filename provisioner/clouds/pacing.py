"""How the EC2 adapter paces its calls: full-jitter backoff between retries, and batches of ids."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: sleep U(0, min(cap, base * 2**n)) before retry n.

    EC2 meters API calls with per-account, per-region token buckets: mutating calls such as
    CreateFleet refill at about 5 tokens/s and instance launches at about 2/s. A throttled call means
    the bucket is empty, so the first wait of up to 0.5 s (a couple of tokens) usually suffices;
    doubling up to a 10 s cap lets 20+ launches' worth refill when other callers share the bucket.
    Six attempts bound the worst case at 0.5+1+2+4+8 = 15.5 s of sleep (7.75 s expected), about
    three daemon ticks; after that the launch fails as 'throttle' and the next tick tries again.
    Full jitter (not equal jitter) spreads retries of many workers hit by the same empty bucket.
    """

    base_s: float = 0.5
    cap_s: float = 10.0
    attempts: int = 6

    def delay(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** retry))


def grouper(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive batches of at most `size` items (the one batching helper)."""
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
