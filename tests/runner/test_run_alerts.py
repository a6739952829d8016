"""A standalone `provisioner run` that fails raises an alert to the configured sink."""

from __future__ import annotations

import pytest

from tests.alerts.conftest import http_sink  # noqa: F401  (a fixture, shared with the alerts tests)


@pytest.mark.docker
def test_failed_standalone_run_alerts_once_and_success_is_quiet(prun, busybox, http_sink, tmp_path):
    url = f"http://127.0.0.1:{http_sink.server_address[1]}/hook"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"alerts:\n  sinks:\n    - {{name: chat, type: slack, webhook_url: '{url}'}}\n")
    env = {"PROVISIONER_CONFIG": str(cfg)}
    ok = prun("--image", busybox, "--", "true", env=env)
    assert ok.returncode == 0, ok.stderr
    assert http_sink.bodies == []
    failed = prun("--image", busybox, "--", "sh", "-c", "exit 3", env=env)
    assert failed.returncode == 3
    assert len(http_sink.bodies) == 1
    assert prun.job in http_sink.bodies[0]["text"]


@pytest.mark.docker
def test_runs_reporting_to_a_daemon_leave_alerts_to_it(prun, busybox, http_sink, tmp_path):
    url = f"http://127.0.0.1:{http_sink.server_address[1]}/hook"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"alerts:\n  sinks:\n    - {{name: chat, type: slack, webhook_url: '{url}'}}\n")
    # a daemon that is not there: the report is spooled, the exit code kept, no alert raised here
    env = {"PROVISIONER_CONFIG": str(cfg), "PROVISIONER_REPORT_URL": "http://127.0.0.1:9/",
           "PROVISIONER_REPORT_TOKEN": "t"}
    failed = prun("--image", busybox, "--", "sh", "-c", "exit 3", env=env, timeout=90)
    assert failed.returncode == 3
    assert http_sink.bodies == []
