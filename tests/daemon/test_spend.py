"""TeamSpend: re-reads the store only on refresh or a new record, accrues running agents every tick,
announces each crossing once (through the real alert state), keeps its last state when the store fails."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from provisioner.config import parse_alerts
from provisioner.clouds.base import Instance
from provisioner.daemon.spend import TeamSpend, alert_dispatcher
from provisioner.history import open_store
from tests.alerts.conftest import http_sink  # noqa: F401  (a fixture)

ALERTS = {"rules": [{"on": ["budget"], "budget_usd": 10, "teams": ["ml"], "thresholds": [0.5, 1.0], "enforce": True}]}
TEAMS = {"ml": ["ml-*"]}


def record(run_id: str, cost: float, node: str | None = None) -> dict:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"job": "ml-train", "run_id": run_id, "start": now, "duration_s": 60, "exit_code": 0, "cost_usd": cost,
            "node": node}


def agent(node: str, launched: float) -> Instance:
    return Instance(f"i-{node}", "c5.large", "on-demand", "us-east-1", "running", launched,
                    {"provisioner:job": "ml-train", "provisioner:node": node})


def test_reads_on_refresh_and_after_a_record_and_accrues_running_agents_each_tick(tmp_path):
    history = str(tmp_path / "h.sqlite3")
    with open_store(history) as s:
        s.add(record("r1", 3.0))
    reads = []

    def store():
        reads.append(1)
        return open_store(history)
    clock = [0.0]
    spend = TeamSpend(parse_alerts(ALERTS), TEAMS, store, refresh_s=60, clock=lambda: clock[0])
    now = time.time()
    [use] = spend.evaluate(now, [agent("n1", now - 3600)], {"i-n1": 2.0})
    assert (use.recorded_usd, round(use.running_usd, 3), len(reads)) == (3.0, 2.0, 1)
    with open_store(history) as s:
        s.add(record("r2", 5.0, node="n1"))                # n1's build is recorded now
    [use] = spend.evaluate(now, [agent("n1", now - 3600)], {"i-n1": 2.0})
    assert (use.recorded_usd, len(reads)) == (3.0, 1)         # not re-read before refresh_s ...
    spend.invalidate(record("r2", 5.0, node="n1"))            # ... but the agent API hands it over
    [use] = spend.evaluate(now, [agent("n1", now - 3600)], {"i-n1": 2.0})
    assert (use.recorded_usd, use.running_usd, len(reads)) == (8.0, 0.0, 1)   # n1 counted once, no read
    spend.invalidate()                                        # without a record: read again
    [use] = spend.evaluate(now, [], {})
    assert (use.recorded_usd, len(reads)) == (8.0, 2)
    clock[0] = 61
    spend.evaluate(now, [], {})
    assert len(reads) == 3


def test_each_crossing_is_announced_once_and_a_failing_store_keeps_the_last_state(tmp_path, http_sink):
    history = str(tmp_path / "h.sqlite3")
    with open_store(history) as s:
        s.add(record("r1", 6.0))
    section = {"sinks": [{"name": "chat", "type": "slack", "webhook_url": http_sink.url}], **ALERTS}
    sent = threading.Event()
    dispatch = alert_dispatcher(parse_alerts(section), history)

    def dispatching(alerts):
        try:
            return dispatch(alerts)
        finally:
            sent.set()
    spend = TeamSpend(parse_alerts(section), TEAMS, lambda: open_store(history), dispatch=dispatching)
    now = time.time()
    spend.evaluate(now, [], {})
    assert sent.wait(10)
    sent.clear()
    spend.evaluate(now, [], {})                                # the same crossing: not announced again
    assert not sent.wait(0.5)
    assert len(http_sink.bodies) == 1 and "50%" in http_sink.bodies[0]["text"]
    again = TeamSpend(parse_alerts(section), TEAMS, lambda: open_store(history), dispatch=dispatching)
    again.evaluate(now, [], {})                                # a restarted daemon: the shared state dedups
    assert sent.wait(10)
    assert len(http_sink.bodies) == 1

    state = {"broken": False}

    def store():
        if state["broken"]:
            raise OSError("disk gone")
        return open_store(history)
    flaky = TeamSpend(parse_alerts(ALERTS), TEAMS, store)
    [before] = flaky.evaluate(now, [], {})
    state["broken"] = True
    flaky.invalidate()
    try:
        flaky.evaluate(now, [], {})
        raise AssertionError("the store error must reach the loop's guard")
    except OSError:
        pass
    assert flaky.uses == [before]                              # what the loop keeps acting on
