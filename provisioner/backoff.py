"""The one backoff: exponential delays between retries, with the jitter each caller needs.

Used by the EC2 adapter (clouds/pacing.py), the CloudWatch log shipper (runner/cloudwatch.py),
the usage-report client (runner/daemon_client.py), the build-start signal (agent/buildstart.py) and a history
store opened while other processes create it (history/store.py).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

JITTERS = ("full", "spread", "none")


@dataclass(frozen=True)
class Backoff:
    """Retry n waits min(cap, base * 2**n), drawn as `jitter` says:

    - full: U(0, that) — many workers throttled by one empty bucket do not retry in step (AWS calls);
    - spread: that x U(0.75, 1.25) — agents reporting to one daemon drift apart, none retries at once;
    - none: exactly that (one caller, a tight bound on the total wait).

    The EC2 pacing defaults: EC2 meters calls with per-account, per-region token buckets (CreateFleet
    refills at about 5 tokens/s, launches at about 2/s), so a first wait of up to 0.5 s usually
    suffices and doubling to a 10 s cap lets 20+ launches' worth refill; six attempts bound the worst
    case at 0.5+1+2+4+8 = 15.5 s of sleep (7.75 s expected), about three daemon ticks.
    """

    base_s: float = 0.5
    cap_s: float = 10.0
    attempts: int = 6
    jitter: str = "full"

    def __post_init__(self) -> None:
        if self.jitter not in JITTERS:
            raise ValueError(f"jitter must be one of {', '.join(JITTERS)}, got {self.jitter!r}")

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry `retry` (0-based)."""
        return min(self.cap_s, self.base_s * 2 ** min(max(retry, 0), 60))

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry `retry` (0-based)."""
        top = self.ceiling(retry)
        if self.jitter == "none":
            return top
        draw = rng or random
        return draw.uniform(0.0, top) if self.jitter == "full" else top * draw.uniform(0.75, 1.25)


UNCAPPED = math.inf
