"""/metrics shows the fleet: a bearer token or a separate address guards it, and label values from
users are capped in length and count (a hostile label cannot blow it up)."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from provisioner.config import parse_config
from provisioner.daemon.http import DaemonHttpServer, Health
from provisioner.daemon.metrics import LABEL_SERIES_MAX, LABEL_VALUE_MAX, OTHER, DaemonMetrics, Snapshot, capped
from provisioner.errors import ConfigError

TOKEN = "m" * 24


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_hostile_labels_are_capped_in_length_and_count():
    metrics = DaemonMetrics()
    waiting = {f"ec2 && ({'a' * 5000} || x{i})": 1 for i in range(1000)}
    waiting["ec2"] = 5
    metrics.publish(Snapshot(1.0, waiting, (), None, {"budget": 2}))
    srv = DaemonHttpServer(("127.0.0.1", 0), metrics, Health(stuck_after_s=30), None).start()
    try:
        text = requests.get(srv.url + "/metrics", timeout=5).text
    finally:
        srv.stop()
    samples = families(text)["provisioner_queue_waiting_items"].samples
    assert len(samples) == LABEL_SERIES_MAX
    assert all(len(s.labels["label"]) <= LABEL_VALUE_MAX for s in samples)
    by_label = {s.labels["label"]: s.value for s in samples}
    assert by_label["ec2"] == 5 and by_label[OTHER] == 1000 - (LABEL_SERIES_MAX - 2)
    assert sum(by_label.values()) == 1005 and len(text) < 40_000


def test_long_values_stay_apart_and_short_ones_unchanged():
    a, b = "x" * 500 + "1", "x" * 500 + "2"
    out = dict(capped({a: 1, b: 2, "ec2": 3}))
    assert out["ec2"] == 3 and len(out) == 3 and all(len(k) <= LABEL_VALUE_MAX for k in out)


def test_metrics_wants_its_bearer_token_and_healthz_does_not():
    srv = DaemonHttpServer(("127.0.0.1", 0), DaemonMetrics(), Health(stuck_after_s=30), None,
                           metrics_token=TOKEN).start()
    try:
        assert requests.get(srv.url + "/metrics", timeout=5).status_code == 401
        bad = requests.get(srv.url + "/metrics", headers={"Authorization": "Bearer " + "n" * 24}, timeout=5)
        assert bad.status_code == 401 and bad.headers["WWW-Authenticate"] == "Bearer"
        ok = requests.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert ok.status_code == 200 and "provisioner_launches_total" in ok.text
        assert requests.get(srv.url + "/healthz", timeout=5).status_code == 200
    finally:
        srv.stop()


def test_metrics_on_a_separate_address_only(emu, tmp_path, monkeypatch):
    from provisioner.daemon.wiring import build
    from tests.daemon.fakes import small_catalog
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    config = parse_config(f"jenkins:\n  url: {emu.url}\n  user: admin\ndaemon:\n  listen: 127.0.0.1:0\n"
                          f"  metrics_listen: 127.0.0.1:0\n  metrics_token_env: METRICS_TOKEN\n", "m.yaml")
    parts = build(config, str(tmp_path / "h.sqlite3"), "admin-token", owner="t", cloud=object(),
                  catalog=small_catalog())
    try:
        assert requests.get(parts.http.url + "/metrics", timeout=5).status_code == 404
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(parts.metrics_http.url + "/metrics", headers=auth, timeout=5).status_code == 200
        assert requests.get(parts.metrics_http.url + "/metrics", timeout=5).status_code == 401
        assert requests.post(parts.metrics_http.url + "/v1/usage", json={}, timeout=5).status_code == 404
    finally:
        parts.close()
    monkeypatch.setenv("METRICS_TOKEN", "short")
    with pytest.raises(ConfigError, match="METRICS_TOKEN must hold a token of 16 characters"):
        build(config, str(tmp_path / "h.sqlite3"), "admin-token", owner="t", cloud=object(),
              catalog=small_catalog())
