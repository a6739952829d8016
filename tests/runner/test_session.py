"""RunSession in-process on the real engine, with fake log sinks, reporter and history store: the
seams the CloudWatch sink and the daemon reporter plug into. Plus the CLI's wiring of them."""

from __future__ import annotations

import io
import sys
import threading
import types

import pytest

from provisioner.runner.console import Console
from provisioner.runner.instance_price import Pricing
from provisioner.runner.retry import RetryPolicy
from provisioner.runner.session import RunSession, Services
from provisioner.runner.spec import ContainerSpec
from provisioner.runner.summary import JobInfo


class FakeSink:
    def __init__(self, run_id: str, dropped: int = 0, fail_write: bool = False):
        self.run_id, self.dropped, self.fail_write = run_id, dropped, fail_write
        self.lines: list[tuple[float, str]] = []
        self.closed_with: float | None = None

    def write(self, ts: float, line: str) -> None:
        if self.fail_write:
            raise ConnectionError("endpoint down")
        self.lines.append((ts, line))

    def close(self, timeout_s: float) -> int:
        self.closed_with = timeout_s
        return self.dropped


class FakeReporter:
    def __init__(self, fail: bool = False):
        self.records: list[dict] = []
        self.samples: list[dict] = []
        self.fail = fail

    def report(self, record: dict) -> None:
        if self.fail:
            raise ConnectionError("daemon away")
        self.records.append(record)

    def sample(self, payload: dict) -> None:
        self.samples.append(payload)


class FakeStore:
    def __init__(self):
        self.added: list[dict] = []

    def add(self, record: dict) -> bool:
        self.added.append(record)
        return True


def session(client, sinks: list, reporter, store, out: io.StringIO, err: io.StringIO,
            sample_every_s: float = 15.0) -> RunSession:
    def factory(run_id: str):
        sink = FakeSink(run_id, dropped=3)
        sinks.append(sink)
        return sink
    return RunSession(Services(client=client, console=Console(out, err), store_factory=lambda: store,
                               reporter=reporter, sink_factories=[factory],
                               sample_every_s=sample_every_s))


@pytest.mark.docker
def test_sinks_reporter_store_and_samples(docker_client, busybox, tmp_path):
    sinks: list[FakeSink] = []
    reporter, store = FakeReporter(), FakeStore()
    out, err = io.StringIO(), io.StringIO()
    spec = ContainerSpec(image=busybox, command=("sh", "-c", "echo one; echo two >&2; sleep 2.5"))
    outcome = session(docker_client, sinks, reporter, store, out, err, sample_every_s=1.0).run(
        spec, JobInfo(job="session-test"), RetryPolicy(), Pricing(), str(tmp_path / "s.json"))
    assert outcome.exit_code == 0
    (sink,) = sinks
    # stdout and stderr are separate streams: docker orders lines within each, not across
    assert sorted(line for _, line in sink.lines) == ["one", "two"] and sink.closed_with == 10.0
    (record,) = outcome.records
    assert sink.run_id == record["run_id"] and record["log_lines_dropped"] == 3
    assert reporter.records == [record] and store.added == [record]
    assert len(reporter.samples) >= 1
    assert set(reporter.samples[0]) == {"run_id", "at", "cpu_pct", "mem_bytes", "gpu_util_pct"}
    assert reporter.samples[0]["run_id"] == record["run_id"]
    assert "Log lines dropped by log sinks: 3" in out.getvalue()
    assert not docker_client.containers.list(all=True, sparse=True, filters={"label": "provisioner:job=session-test"})


@pytest.mark.docker
def test_failing_sink_reporter_and_store_never_change_the_exit_code(docker_client, busybox):
    class BrokenStore:
        def add(self, record):
            raise OSError("disk full")
    out, err = io.StringIO(), io.StringIO()
    services = Services(client=docker_client, console=Console(out, err),
                        store_factory=BrokenStore, reporter=FakeReporter(fail=True),
                        sink_factories=[lambda run_id: FakeSink(run_id, fail_write=True)])
    spec = ContainerSpec(image=busybox, command=("sh", "-c", "echo hello; exit 5"))
    outcome = RunSession(services).run(spec, JobInfo(job="session-fail"), RetryPolicy(), Pricing())
    assert outcome.exit_code == 5
    assert "hello" in out.getvalue()
    warnings = err.getvalue()
    for text in ("log sink FakeSink failed and was dropped", "not written to the history store",
                 "not reported to the daemon"):
        assert text in warnings


@pytest.mark.docker
def test_signal_during_retry_pause_stops(docker_client, busybox):
    import os
    import signal
    out, err = io.StringIO(), io.StringIO()
    services = Services(client=docker_client, console=Console(out, err))
    spec = ContainerSpec(image=busybox, command=("sh", "-c", "exit 1"))
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        outcome = RunSession(services).run(spec, JobInfo(job="session-pause"),
                                           RetryPolicy(retries=3, delay_s=30), Pricing())
    finally:
        timer.cancel()
    assert outcome.exit_code == 143 and len(outcome.records) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


# ---- CLI wiring of the seams ------------------------------------------------------------------------

def test_reporter_wiring(monkeypatch):
    from provisioner.cli.run import make_reporter
    warnings: list[str] = []
    assert make_reporter({}, warnings.append) is None and warnings == []
    env = {"PROVISIONER_REPORT_URL": "http://127.0.0.1:1", "PROVISIONER_REPORT_TOKEN": "t"}
    fake = types.ModuleType("provisioner.runner.daemon_client")
    fake.reporter_from_env = lambda environ: ("reporter", environ["PROVISIONER_REPORT_URL"])
    monkeypatch.setitem(sys.modules, "provisioner.runner.daemon_client", fake)
    assert make_reporter(env, warnings.append) == ("reporter", "http://127.0.0.1:1")
    monkeypatch.setitem(sys.modules, "provisioner.runner.daemon_client", types.ModuleType("x"))
    assert make_reporter(env, warnings.append) is None
    assert "daemon reporter is not available" in warnings[-1]


def test_log_group_wiring(monkeypatch):
    from provisioner.cli.run import make_sink_factories
    warnings: list[str] = []
    assert make_sink_factories(None, "us-east-1", warnings.append) == []
    made: list = []
    fake = types.ModuleType("provisioner.runner.cloudwatch")
    fake.CloudWatchSink = lambda group, stream, region=None: made.append((group, stream, region))
    monkeypatch.setitem(sys.modules, "provisioner.runner.cloudwatch", fake)
    (factory,) = make_sink_factories("/jobs", "eu-west-1", warnings.append)
    factory("RUN-1")
    assert made == [("/jobs", "RUN-1", "eu-west-1")] and warnings == []


def test_help_text_wrap_is_textwraps():
    import textwrap
    from provisioner.cli.run import _fill
    text = ", ".join(f"--option-{i}{'x' * (i % 7)}" for i in range(40))
    for width in (20, 60, 90):
        assert _fill(text, width) == textwrap.fill(text, width, break_on_hyphens=False)
