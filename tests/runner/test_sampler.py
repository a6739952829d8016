"""Usage sampling: stats frames (cgroup v1 and v2 shapes), the accumulator, the stats thread with
an injected fake API, and the NVML sampler with a fake NVML module."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from provisioner.runner.gpu import NvmlSampler
from provisioner.runner.sampler import (Frame, StatsSampler, UsageAccumulator, parse_engine_time,
                                        parse_frame)


def frame(read: str, cpu_ns: int, usage: int = 0, stats: dict | None = None) -> dict:
    return {"read": read, "preread": "0001-01-01T00:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": cpu_ns}, "online_cpus": 2},
            "memory_stats": {"usage": usage, "stats": stats or {}}}


def test_engine_time_keeps_nanoseconds():
    assert parse_engine_time("2026-01-02T03:04:05.123456789Z") == pytest.approx(1767323045.123456789)
    assert parse_engine_time("2026-01-02T03:04:05Z") == 1767323045.0
    assert parse_engine_time("2026-01-02T04:04:05.5+01:00") == 1767323045.5
    assert parse_engine_time("0001-01-01T00:00:00Z") is None
    assert parse_engine_time(None) is None and parse_engine_time("garbage") is None


def test_frame_memory_excludes_inactive_cache_v1_and_v2():
    v1 = parse_frame(frame("2026-01-01T00:00:01Z", 5, 300, {"total_inactive_file": 100, "cache": 150}))
    v2 = parse_frame(frame("2026-01-01T00:00:01Z", 5, 300, {"inactive_file": 40}))
    assert (v1.mem_bytes, v2.mem_bytes) == (200, 260)
    assert parse_frame(frame("2026-01-01T00:00:01Z", 5, 300, {})).mem_bytes == 300


def test_empty_frames_of_a_stopped_container_are_skipped():
    stopped = {"read": "2026-01-01T00:00:01Z", "cpu_stats": {"cpu_usage": {"total_usage": 0}},
               "memory_stats": {}}
    assert parse_frame(stopped) is None
    assert parse_frame({"read": "0001-01-01T00:00:00Z"}) is None


def test_accumulator_busy_then_idle():
    acc = UsageAccumulator()
    cpu = 0
    for second in range(7):  # 3 s at one vCPU, then 3 s idle
        acc.add(Frame(1000.0 + second, cpu, 200 * 2 ** 20 + second))
        cpu += int(1e9) if second < 3 else 0
    s = acc.summary()
    assert s["cpu_max_pct"] == 100.0 and s["cpu_avg_pct"] == 50.0
    assert s["mem_max_bytes"] == 200 * 2 ** 20 + 6
    assert s["mem_avg_bytes"] == 200 * 2 ** 20 + 3
    assert acc.latest_cpu_pct == 0.0


def test_accumulator_ignores_duplicate_and_reset_frames():
    acc = UsageAccumulator()
    acc.add(Frame(10.0, 1_000_000_000, 1))
    acc.add(Frame(10.05, 2_000_000_000, 1))   # too close to the previous one
    acc.add(Frame(11.05, 1_000, 1))           # counter went backwards
    acc.add(Frame(12.05, 500_001_000, 1))
    assert acc.summary()["cpu_max_pct"] == 50.0


def test_accumulator_without_frames_is_unknown():
    assert UsageAccumulator().summary() == {"cpu_avg_pct": None, "cpu_max_pct": None,
                                            "mem_avg_bytes": None, "mem_max_bytes": None}


class FakeStatsAPI:
    """`api.stats(...)` yielding given frames, then blocking until released (like the engine)."""

    def __init__(self, frames: list[dict]):
        self.frames, self.release = frames, threading.Event()

    def stats(self, container_id: str, stream: bool, decode: bool):
        assert (stream, decode) == (True, True)
        yield from self.frames
        self.release.wait(5)


def test_stats_sampler_thread_with_fake_api():
    frames = [frame(f"2026-01-01T00:00:0{i}Z", i * 2 * 10 ** 9, 10 * (i + 1)) for i in range(4)]
    seen: list[Frame] = []
    api = FakeStatsAPI(frames)
    sampler = StatsSampler(api, "cid", on_frame=seen.append).start()
    for _ in range(100):
        if len(seen) == 4:
            break
        threading.Event().wait(0.01)
    summary = sampler.stop()
    api.release.set()
    sampler.thread.join(2)
    assert summary["cpu_max_pct"] == 200.0 and summary["mem_max_bytes"] == 40
    assert not sampler.thread.is_alive()


class FakeNVML:
    """The few pynvml functions the sampler calls, over scripted readings."""

    def __init__(self, utils: list[list[int]], mems: list[list[int]], fail_init: bool = False):
        self.utils, self.mems, self.fail_init = utils, mems, fail_init
        self.i = 0
        self.inited = self.shut = 0

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")
        self.inited += 1

    def nvmlShutdown(self):
        self.shut += 1

    def nvmlDeviceGetCount(self):
        return len(self.utils[0])

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return int(uuid.rsplit("-", 1)[1])

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self.utils[min(self.i, len(self.utils) - 1)][h])

    def nvmlDeviceGetMemoryInfo(self, h):
        used = self.mems[min(self.i, len(self.mems) - 1)][h]
        if h == len(self.utils[0]) - 1:
            self.i += 1  # one reading of every device done
        return SimpleNamespace(used=used, total=16 * 2 ** 30)


def test_nvml_sampler_figures():
    nvml = FakeNVML(utils=[[100, 50], [80, 0]], mems=[[1000, 500], [2000, 0]])
    sampler = NvmlSampler(nvml=nvml, selection=-1, interval_s=3600)
    assert sampler.start() is True and sampler.gpu_count == 2
    sampler.sample()
    result = sampler.stop()
    assert result == {"gpu_count": 2, "gpu_util_avg_pct": 57.5, "gpu_util_max_pct": 100.0,
                      "gpu_mem_max_bytes": 2000}
    assert nvml.inited == 1 and nvml.shut == 1


def test_nvml_selection_first_n_and_by_id():
    nvml = FakeNVML(utils=[[10, 20, 30]], mems=[[1, 2, 3]])
    assert NvmlSampler(nvml=nvml, selection=2, interval_s=3600)._select() == [0, 1]
    assert NvmlSampler(nvml=nvml, selection=["2", "GPU-1"], interval_s=3600)._select() == [2, 1]
    first = NvmlSampler(nvml=nvml, selection=["2"], interval_s=3600)
    first.start()
    assert first.stop()["gpu_util_max_pct"] == 30.0


@pytest.mark.parametrize("nvml", [None, FakeNVML([[1]], [[1]], fail_init=True), FakeNVML([[]], [[]])],
                         ids=["no-pynvml", "no-driver", "no-devices"])
def test_gpus_cleanly_absent(nvml, monkeypatch):
    if nvml is None:
        monkeypatch.setattr("provisioner.runner.gpu.load_nvml", lambda: None)
    sampler = NvmlSampler(nvml=nvml, interval_s=0.01)
    assert sampler.start() is False
    assert sampler.stop() == {"gpu_count": 0, "gpu_util_avg_pct": None, "gpu_util_max_pct": None,
                              "gpu_mem_max_bytes": None}


def test_nvml_sampler_thread_samples_until_stopped():
    nvml = FakeNVML(utils=[[40]], mems=[[7]])
    sampler = NvmlSampler(nvml=nvml, interval_s=0.01)
    assert sampler.start()
    for _ in range(200):
        if nvml.i >= 5:
            break
        threading.Event().wait(0.01)
    result = sampler.stop()
    assert nvml.i >= 5 and result["gpu_util_avg_pct"] == 40.0 and sampler.thread is None
