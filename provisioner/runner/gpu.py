"""GPU utilisation and memory through NVML (nvidia-ml-py's `pynvml`), on a background thread.

Standalone on purpose: only the standard library at import time, so `bench/gpu_check.py` can load
this file by path on a GPU machine without installing provisioner. Without NVML, a driver or GPUs,
`start()` returns False and the figures are absent (None), never an error.

Device figures are whole-device figures (NVML cannot attribute them to one container); on an
ephemeral agent the job is the only GPU user, so they are the job's.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


def load_nvml() -> Any | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    return pynvml


class NvmlSampler:
    """Samples the selected GPUs every `interval_s`.

    selection: -1 all devices, N the first N, or a list of indices / UUIDs (docker's --gpus).
    nvml: the pynvml module or a fake with the same functions (tests)."""

    def __init__(self, nvml: Any | None = None, selection: int | list[str] = -1,
                 interval_s: float = 1.0):
        self._nvml = nvml if nvml is not None else load_nvml()
        self._selection = selection
        self._interval = interval_s
        self._handles: list[Any] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._util_sum = 0.0
        self._util_n = 0
        self._util_max: float | None = None
        self._mem_max: int | None = None
        self.latest_util_pct: float | None = None
        self.latest_mem_bytes: int | None = None
        self.thread: threading.Thread | None = None

    @property
    def gpu_count(self) -> int:
        return len(self._handles)

    def _select(self) -> list[Any]:
        nvml = self._nvml
        count = nvml.nvmlDeviceGetCount()
        sel = self._selection
        if isinstance(sel, int):
            n = count if sel < 0 else min(sel, count)
            return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
        handles = []
        for ident in sel:
            if ident.isdigit():
                handles.append(nvml.nvmlDeviceGetHandleByIndex(int(ident)))
            else:
                handles.append(nvml.nvmlDeviceGetHandleByUUID(ident))
        return handles

    def start(self) -> bool:
        """Initialise NVML and start sampling; False (and nothing running) without GPUs."""
        if self._nvml is None:
            return False
        try:
            self._nvml.nvmlInit()
        except Exception as exc:  # no driver, no library: GPUs are absent, not an error
            log.debug("NVML unavailable: %s", exc)
            return False
        try:
            self._handles = self._select()
        except Exception as exc:
            log.debug("NVML device selection failed: %s", exc)
            self._handles = []
        if not self._handles:
            self._shutdown()
            return False
        self.sample()
        self.thread = threading.Thread(target=self._run, name="provisioner-gpu", daemon=True)
        self.thread.start()
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        """One reading of every selected device: mean utilisation, summed memory in use."""
        try:
            utils = [float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in self._handles]
            mem = sum(int(self._nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self._handles)
        except Exception as exc:  # a device fell off the bus: keep what we have
            log.debug("NVML sample failed: %s", exc)
            return
        util = sum(utils) / len(utils)
        with self._lock:
            self._util_sum += util
            self._util_n += 1
            self._util_max = max(self._util_max or 0.0, max(utils))
            self._mem_max = max(self._mem_max or 0, mem)
            self.latest_util_pct, self.latest_mem_bytes = util, mem

    def _shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass

    def stop(self) -> dict[str, float | int | None]:
        """Stop sampling; the figures for the usage record (gpu_count 0 when none was sampled)."""
        if self.thread is not None:
            self._stop.set()
            self.thread.join(self._interval + 1.0)
            self.thread = None
            self._shutdown()
        with self._lock:
            avg = round(self._util_sum / self._util_n, 1) if self._util_n else None
            return {"gpu_count": len(self._handles),
                    "gpu_util_avg_pct": avg,
                    "gpu_util_max_pct": None if self._util_max is None else round(self._util_max, 1),
                    "gpu_mem_max_bytes": self._mem_max}
