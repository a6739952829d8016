"""Small inline catalog rows and usage records for unit tests."""

from __future__ import annotations

import random

from provisioner.catalog.model import ON_DEMAND, SPOT, Offer

GIB = 1024 ** 3


def offer(instance_type: str = "m5.large", *, market: str = ON_DEMAND, region: str = "us-east-1",
          vcpu: int = 2, mem: float = 8, price: float = 0.1, ondemand: float | None = None,
          arch: str = "x86_64", gpus: int = 0, gpu_model: str | None = None, gpu_maker: str = "NVIDIA",
          accel: str | None = None, accels: int = 0, single: float = 1000,
          multi: float | None = None, interruption: float | None = None, cores: int = 0) -> Offer:
    return Offer(
        instance_type=instance_type, family=instance_type.split(".")[0], region=region, market=market,
        vcpu=vcpu, memory_gib=mem, arch=arch, price=price,
        ondemand_price=ondemand if ondemand is not None else (price if market == ON_DEMAND else price * 3),
        gpu_count=gpus, gpu_model=gpu_model, gpu_memory_gib=24 if gpus else None,
        gpu_manufacturer=gpu_maker if gpus else None, accel_model=accel, accel_count=accels,
        interruption_rate=(interruption if interruption is not None else 0.05) if market == SPOT else None,
        score_single=single, score_multi=multi if multi is not None else single * vcpu * 0.9,
        score_basis="test", cores=cores)


def run(job: str = "train", n: int = 0, *, instance_type: str = "m5.large", duration: float = 3600,
        exit_code: int = 0, cpu_avg: float | None = 100, cpu_max: float | None = 100,
        mem_gib: float | None = 2, vcpu: int | None = None, region: str = "us-east-1", **extra) -> dict:
    record = {"job": job, "build": str(n), "run_id": f"{job}-{n}", "start": f"2026-01-01T00:{n % 60:02d}:00Z",
              "duration_s": duration, "exit_code": exit_code, "instance_type": instance_type,
              "region": region, "cpu_avg_pct": cpu_avg, "cpu_max_pct": cpu_max,
              "mem_max_bytes": int(mem_gib * GIB) if mem_gib is not None else None, "vcpu": vcpu}
    record.update(extra)
    return record


def steady_site(jobs: int = 8, spread: float = 0.06, seed: int = 5) -> list[dict]:
    """Jobs whose peaks vary run to run by up to `spread` (uniform, relative: a CV of ~1.7%), 6 runs each."""
    rng = random.Random(seed)
    return [run(f"site-{j}", i, instance_type="r7i.2xlarge", vcpu=8, mem_gib=(4 + j) * (1 - rng.uniform(0, spread)))
            for j in range(jobs) for i in range(6)]
