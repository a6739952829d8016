"""CPU and memory usage of a running container, from the Docker stats stream, on a background thread.

The engine emits one stats frame per second per stream; reading it costs the runner one small JSON
decode per second (measured in bench/runner_overhead.py). CPU % is the container's CPU time over
wall time between two consecutive frames (100 = one vCPU busy), using the engine's own read
timestamps. Memory is usage minus inactive page cache, as `docker stats` shows it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from provisioner.runner import LazyLogger

log = LazyLogger(__name__)

_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_engine_time(text: str | None) -> float | None:
    """The engine's RFC 3339 time with nanoseconds -> epoch seconds (None for the zero time)."""
    m = _TS.match(text or "")
    if not m or m.group(1).startswith("0001-"):
        return None
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = datetime.fromisoformat(m.group(1) + tz).timestamp()
    frac = m.group(2) or "0"
    return base + int(frac) / 10 ** len(frac)


@dataclass(frozen=True)
class Frame:
    """What one stats frame tells: when it was read, cumulative CPU ns, memory in use."""

    read: float
    cpu_ns: int
    mem_bytes: int | None


def parse_frame(raw: dict[str, Any]) -> Frame | None:
    """A Frame from a stats frame (cgroup v1 or v2 shape); None for an empty frame (a stopped
    container's stream keeps sending zeros)."""
    read = parse_engine_time(raw.get("read"))
    cpu = (raw.get("cpu_stats") or {}).get("cpu_usage") or {}
    total = cpu.get("total_usage")
    if read is None or not total:
        return None
    mem = raw.get("memory_stats") or {}
    usage = mem.get("usage")
    if usage is not None:
        stats = mem.get("stats") or {}
        # cgroup v1 reports total_inactive_file, v2 inactive_file (docker CLI's formula)
        inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0))
        usage = max(0, usage - (inactive if inactive < usage else 0))
    return Frame(read, int(total), usage)


class UsageAccumulator:
    """Running CPU and memory figures; thread-safe. CPU average is weighted by interval length."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prev: Frame | None = None
        self._cpu_ns = 0
        self._wall_s = 0.0
        self.cpu_max_pct: float | None = None
        self._mem_sum = 0.0
        self._mem_n = 0
        self.mem_max_bytes: int | None = None
        self.latest_cpu_pct: float | None = None
        self.latest_mem_bytes: int | None = None

    def add(self, frame: Frame) -> None:
        with self._lock:
            prev, self._prev = self._prev, frame
            if frame.mem_bytes is not None:
                self._mem_sum += frame.mem_bytes
                self._mem_n += 1
                self.latest_mem_bytes = frame.mem_bytes
                self.mem_max_bytes = max(self.mem_max_bytes or 0, frame.mem_bytes)
            if prev is None:
                return
            wall = frame.read - prev.read
            used = frame.cpu_ns - prev.cpu_ns
            if wall < 0.2 or used < 0:  # duplicate or reset frame: no usable interval
                return
            pct = used / 1e9 / wall * 100.0
            self._cpu_ns += used
            self._wall_s += wall
            self.latest_cpu_pct = pct
            self.cpu_max_pct = max(self.cpu_max_pct or 0.0, pct)

    def summary(self) -> dict[str, float | int | None]:
        with self._lock:
            cpu_avg = self._cpu_ns / 1e9 / self._wall_s * 100.0 if self._wall_s else None
            mem_avg = int(self._mem_sum / self._mem_n) if self._mem_n else None
            return {"cpu_avg_pct": _round(cpu_avg), "cpu_max_pct": _round(self.cpu_max_pct),
                    "mem_avg_bytes": mem_avg, "mem_max_bytes": self.mem_max_bytes}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class StatsSampler:
    """Follows `api.stats(container_id, stream=True, decode=True)` on a daemon thread.

    `api` is an engine (engine.py) or a docker SDK APIClient (same signature), injected so tests
    can feed recorded frames."""

    def __init__(self, api: Any, container_id: str,
                 on_frame: Callable[[Frame], None] | None = None):
        self._api, self._id, self._on_frame = api, container_id, on_frame
        self.usage = UsageAccumulator()
        self._stop = threading.Event()
        self._stream: Any = None
        self.thread = threading.Thread(target=self._run, name="provisioner-stats", daemon=True)

    def start(self) -> "StatsSampler":
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self._stream = self._api.stats(self._id, stream=True, decode=True)
            for raw in self._stream:
                if self._stop.is_set():
                    break
                frame = parse_frame(raw)
                if frame is None:
                    continue
                self.usage.add(frame)
                if self._on_frame:
                    self._on_frame(frame)
        except Exception as exc:  # the container went away or the engine closed the stream
            if not self._stop.is_set():
                log.debug("stats stream ended: %s", exc)

    def stop(self, timeout: float = 0.0) -> dict[str, float | int | None]:
        """Stop following and return the figures. The stream is closed when it can be (engine.py's
        can; the SDK's ends when the container is removed), so the engine is not kept busy."""
        self._stop.set()
        close = getattr(self._stream, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # e.g. a generator running on the stats thread
                log.debug("stats stream not closed: %s", exc)
        if timeout:
            self.thread.join(timeout)
        return self.usage.summary()
