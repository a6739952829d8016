#!/usr/bin/env python3
"""Check on a real GPU machine that the runner's NVML sampler reads utilisation and memory.

Standalone: needs only nvidia-ml-py and PyTorch; it loads provisioner/runner/gpu.py by path (no
provisioner install, no Docker). It samples while a matmul loop keeps GPU 0 busy for ~20 s and
prints the figures and PASS or FAIL (exit 0 / 1).

    python3 bench/gpu_check.py [--seconds 20] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

SAMPLER = Path(__file__).resolve().parent.parent / "provisioner" / "runner" / "gpu.py"


def load_sampler_module():
    spec = importlib.util.spec_from_file_location("provisioner_gpu_sampler", SAMPLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def burn(seconds: float, size: int) -> tuple[int, float]:
    """Matmuls on cuda:0 for `seconds`; (iterations, bytes held by the tensors)."""
    import torch
    a = torch.randn(size, size, device="cuda:0")
    b = torch.randn(size, size, device="cuda:0")
    held = 3 * a.element_size() * a.nelement()
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        c = a @ b
        n += 1
        if n % 20 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    del c
    return n, held


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--size", type=int, default=8192, help="matrix side (8192: 768 MiB held)")
    args = ap.parse_args()

    gpu = load_sampler_module()
    nvml = gpu.load_nvml()
    print(f"pynvml: {'found' if nvml else 'MISSING'}; sampler: {SAMPLER}")
    idle = gpu.NvmlSampler(nvml=nvml, selection=-1, interval_s=args.interval)
    if not idle.start():
        print("FAIL: the sampler found no GPU through NVML")
        return 1
    time.sleep(2)
    before = idle.stop()
    print(f"idle ({before['gpu_count']} GPU): util avg {before['gpu_util_avg_pct']}%, "
          f"max {before['gpu_util_max_pct']}%, mem max {before['gpu_mem_max_bytes'] / 2**20:.0f} MiB")

    sampler = gpu.NvmlSampler(nvml=nvml, selection=["0"], interval_s=args.interval)
    sampler.start()
    started = time.monotonic()
    iterations, held = burn(args.seconds, args.size)
    elapsed = time.monotonic() - started
    busy = sampler.stop()
    print(f"busy: {iterations} matmuls of {args.size}x{args.size} in {elapsed:.1f} s; "
          f"tensors held {held / 2**20:.0f} MiB")
    print(f"sampled on GPU 0: util avg {busy['gpu_util_avg_pct']}%, max {busy['gpu_util_max_pct']}%, "
          f"mem max {busy['gpu_mem_max_bytes'] / 2**20:.0f} MiB")

    problems = []
    if busy["gpu_count"] != 1:
        problems.append(f"gpu_count {busy['gpu_count']} != 1")
    if (busy["gpu_util_max_pct"] or 0) < 90:
        problems.append(f"util max {busy['gpu_util_max_pct']} < 90")
    if (busy["gpu_util_avg_pct"] or 0) < 60:
        problems.append(f"util avg {busy['gpu_util_avg_pct']} < 60")
    if (busy["gpu_mem_max_bytes"] or 0) < held:
        problems.append(f"mem max {busy['gpu_mem_max_bytes']} < tensors held {held}")
    print("PASS" if not problems else "FAIL: " + "; ".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
