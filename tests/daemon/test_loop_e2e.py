"""The loop end to end: the Jenkins emulator, the daemon, and the tests' process cloud of stand-in
agent processes, chosen by `cloud: process` in the config (built through clouds/registry.py)."""

from __future__ import annotations

import sys

import pytest
import requests

from tests.daemon.conftest import ADMIN, BOB, daemon_config, needs_jdk
from tests.daemon.fakes import ProcessCloud, process_cloud_yaml

pytestmark = [needs_jdk, pytest.mark.slow]
LABEL = "ec2 && vcpu=2 && mem=4"
# The build posts a usage record the way `provisioner run` does (Reporter, env from the bundle).
REPORT = (f"{sys.executable} -c \"import os,uuid; from provisioner.runner.daemon_client import Reporter; "
          "Reporter.from_env().report({'job': os.environ['JOB_NAME'], 'build': os.environ['BUILD_NUMBER'], "
          "'run_id': str(uuid.uuid4()), 'start': '2026-01-01T00:00:00Z', 'duration_s': 1.0, 'exit_code': 0, "
          "'instance_type': os.environ['PROVISIONER_INSTANCE_TYPE'], 'market': os.environ['PROVISIONER_MARKET']})\"")


def cloud_for(emu, tmp_path, **kw) -> ProcessCloud:
    return ProcessCloud(tmp_path / "cloud", emu.url, emu.agent_jar(), **kw)


def process_cloud(emu, tmp_path, **settings) -> str:
    """The config lines choosing the process cloud, its instances' state under tmp_path/cloud."""
    return process_cloud_yaml(tmp_path / "cloud", emu.agent_jar(), **settings)


def node_names(emu) -> list[str]:
    return [n["displayName"] for n in emu.nodes()]


def ours(emu) -> list[str]:
    return [n for n in node_names(emu) if n.startswith("prov-")]


def finished(emu, job: str, n: int = 1) -> bool:
    builds = emu.builds(job)
    return len(builds) >= n and all(b["result"] for b in builds[:n])


@pytest.mark.parametrize("user", [ADMIN, BOB], ids=["admin-scriptText", "non-admin-rest-sentinel"])
def test_a_queued_build_gets_an_agent_runs_reports_and_everything_is_cleaned_up(emu, tmp_path, start_daemon, user):
    d = start_daemon(daemon_config(emu.url, user[0], cloud=process_cloud(emu, tmp_path)), None, user[1])
    cloud = d.daemon.cloud
    assert isinstance(cloud, ProcessCloud) and cloud.name == "process"
    emu.create_job("train", label=LABEL, script=["sleep 1", REPORT])
    emu.schedule("train")
    emu.wait_for(lambda: finished(emu, "train"), timeout=40)
    build = emu.builds("train")[0]
    assert build["result"] == "SUCCESS", build["console"]
    logs = {p.parent.name: p.read_text()[-400:] for p in (tmp_path / "cloud" / "work").glob("*/agent.log")}
    assert build["node"] == f"prov-t-q{build['queueId']}", (build, cloud.launch_log(), logs)
    # node deleted, instance gone
    emu.wait_for(lambda: not ours(emu) and not cloud.describe("t"),
                 timeout=20)
    assert cloud.launches == 1
    if user is BOB:
        assert "autoscaler-sentinel" in node_names(emu) and d.daemon.reader.path == "rest"
    else:
        assert "autoscaler-sentinel" not in node_names(emu) and d.daemon.reader.path == "script"
    reg = d.daemon.metrics.registry
    emu.wait_for(lambda: reg.get_sample_value("provisioner_agents_retired_total", {"reason": "finished"}), timeout=5)
    text = requests.get(d.url + "/metrics", timeout=5).text
    assert 'provisioner_launches_total{instance_type="c5.large",market="on-demand"} 1.0' in text
    assert 'provisioner_usage_records_total{result="stored"} 1.0' in text
    assert 'provisioner_agents_retired_total{reason="finished"} 1.0' in text
    assert "provisioner_queue_wait_to_agent_online_seconds_count 1.0" in text
    from provisioner.history import open_store
    with open_store(str(tmp_path / "history.sqlite3")) as store:
        [rec] = store.runs("train")
    assert rec["node"] == build["node"] and rec["queue_id"] == str(build["queueId"])
    assert requests.get(d.url + "/healthz", timeout=5).json()["status"] == "ok"


def test_an_agent_that_reports_is_drained_before_its_build_ends_so_it_never_runs_a_second(
        emu, tmp_path, start_daemon):
    """Two items, one agent at a time, builds far shorter than the tick and no drain poll: only the
    drain made when the build posts its usage record keeps the second item off the first agent."""
    d = start_daemon(daemon_config(emu.url, interval_s=3, drain_poll_s=0, max_agents=1,
                                   cloud=process_cloud(emu, tmp_path)), None, ADMIN[1])
    cloud = d.daemon.cloud
    for job in ("a", "b"):
        emu.create_job(job, label=LABEL, script=[REPORT])
        emu.schedule(job)
    emu.wait_for(lambda: finished(emu, "a") and finished(emu, "b"), timeout=60)
    builds = emu.builds("a") + emu.builds("b")
    assert [b["result"] for b in builds] == ["SUCCESS", "SUCCESS"], [b["console"] for b in builds]
    assert len({b["node"] for b in builds}) == 2, builds               # one build per agent
    emu.wait_for(lambda: not ours(emu) and not cloud.describe("t"), timeout=30)
