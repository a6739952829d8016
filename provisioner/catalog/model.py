"""The catalog's values: an Offer (instance type x region x market) and the Catalog table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import provisioner.catalog.devices as devices

SPOT = "spot"
ON_DEMAND = "on-demand"


class Offer(NamedTuple):
    """One row of the catalog (a NamedTuple: the catalog builds ~15k of them per load)."""

    instance_type: str
    family: str
    region: str
    market: str                      # 'spot' or 'on-demand'
    vcpu: int
    memory_gib: float
    arch: str                        # 'x86_64' or 'arm64'
    price: float                     # USD per hour in this market
    ondemand_price: float | None     # USD per hour on demand in this region (None: not sold there)
    gpu_count: int = 0
    gpu_model: str | None = None
    gpu_memory_gib: float | None = None
    burstable: bool = False
    current_generation: bool = True
    interruption_rate: float | None = None   # spot: share interrupted per month (advisor bucket mid)
    score_single: float = 0.0        # single-core score, in the default score source's unit
    score_multi: float = 0.0         # all-core score, same unit
    score_basis: str = ""            # where the scores come from (source, or how they were derived)
    az: str | None = None
    gpu_manufacturer: str | None = None      # 'NVIDIA', 'AMD' (None: no GPU, or not known)
    accel_model: str | None = None           # a non-GPU accelerator: 'Inferentia2', 'Gaudi HL-205'...
    accel_count: int = 0
    cores: int = 0                   # physical cores (0: unknown, read as one per vCPU)

    def throughput(self, threads: int) -> float:
        """The score `threads` busy threads get together on this type (threads past its vCPUs add nothing).

        With a core per vCPU it grows with the vCPUs used (score_multi x k / vCPUs). On a
        hyper-threaded type the first threads each get a core of their own (score_single apiece,
        never more than score_multi in all) and the rest share cores with them, up to score_multi
        with every vCPU busy."""
        n = self.vcpu
        k = threads if threads < n else n
        c = self.cores
        if not c or c >= n:
            return self.score_multi * k / n
        s, m = self.score_single, self.score_multi
        base = s * (k if k < c else c)
        if base > m:
            base = m
        return base + (m - s * c) * (k - c) / (n - c) if k > c and m > s * c else base

    @property
    def accel_kind(self) -> str | None:
        """The accelerator's software stack: 'neuron', 'gaudi', 'fpga'... (devices.kind)."""
        return devices.kind(self.accel_model) if self.accel_count else None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.instance_type, self.region, self.market

    def devices(self) -> str:
        """'1x A10G', '8x Gaudi HL-205', '' for none: the GPUs and accelerators, for people."""
        parts = [f"{self.gpu_count}x {self.gpu_model or 'GPU'}"] if self.gpu_count else []
        if self.accel_count:
            parts.append(f"{self.accel_count}x {self.accel_model or 'accelerator'}")
        return ", ".join(parts)

    def describe(self) -> str:
        dev = f", {self.devices()}" if self.gpu_count or self.accel_count else ""
        return (f"{self.instance_type} {self.market} {self.region} ({self.vcpu} vCPU, "
                f"{self.memory_gib:g} GiB{dev}, {self.arch}) ${self.price:.4f}/h")


@dataclass
class Catalog:
    """All offers, plus where they came from and any staleness warnings."""

    offers: list[Offer]
    source: str
    score_source: str
    warnings: list[str] = field(default_factory=list)
    _by_key: dict[tuple[str, str, str], Offer] | None = field(default=None, repr=False)

    def find(self, instance_type: str, region: str = "us-east-1", market: str | None = ON_DEMAND) -> Offer | None:
        """The offer for a type in a region and market (None when the catalog has none)."""
        if self._by_key is None:
            self._by_key = {(o[0], o[2], o[3]): o for o in self.offers}
        return self._by_key.get((instance_type, region, market or ON_DEMAND))

    def in_regions(self, regions: list[str] | tuple[str, ...] | None) -> list[Offer]:
        if not regions:
            return list(self.offers)
        wanted = set(regions)
        return [o for o in self.offers if o.region in wanted]

    def regions(self) -> list[str]:
        return sorted({o.region for o in self.offers})
