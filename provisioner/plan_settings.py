"""The settings one plan is made with (flags > label > config > built-in defaults, see
provisioner/planner.py): a value the sizing rules and the selection both read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class PeakSpread(NamedTuple):
    """The site's run-to-run spread of jobs' memory peaks (`sizing.site_peak_spread`): the squared
    coefficient of variation a job's peaks typically show, from how many jobs."""

    cv2: float
    jobs: int


@dataclass(frozen=True)
class PlanSettings:
    timeout_s: float = 6 * 3600
    runtime_target: float = 0.8
    # A runtime scaled from other types by CPU score must fit the target with this much to spare:
    # benchmark suites disagree by 10-30% on the same pair of types, more across CPU vendors.
    scaled_margin: float = 0.25
    policy: str = "deadline"
    max_price: float | None = None
    default_runtime_s: float = 3600
    boot_s: float = 90
    disk_gib: float = 30
    mem_headroom: float = 0.2
    autotune: bool = True
    autotune_min_runs: int = 3
    regions: tuple[str, ...] = ("us-east-1",)
    # Burstable types (t2, t3, t4g...) sustain only a baseline share of their CPU once credits run
    # out; long jobs measured at burst speed would miss deadlines. Named types are always allowed.
    allow_burstable: bool = False
    # Previous-generation types (m1, c3, m4...) cost more per unit of work and are being retired.
    allow_previous_generation: bool = False
    # What the site's history says about memory peaks: moderates a job's own few peaks (sizing.py)
    peak_spread: PeakSpread | None = None

    @property
    def target_s(self) -> float:
        return self.timeout_s * self.runtime_target
