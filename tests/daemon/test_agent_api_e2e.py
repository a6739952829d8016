"""The agent API's trust rules through the real loop: the Jenkins emulator, stand-in agents, the
daemon restarted while a build runs. The build's forged record for another job is refused; its own,
posted after the restart, lands (a restarted daemon accepts the agents it launched before)."""

from __future__ import annotations

import socket

import pytest

from provisioner.history import open_store
from tests.daemon.conftest import ADMIN, daemon_config, needs_jdk
from tests.daemon.test_loop_e2e import LABEL, REPORT, cloud_for, finished

pytestmark = [needs_jdk, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_build_writes_only_its_jobs_history_and_its_record_lands_across_a_restart(emu, tmp_path, start_daemon):
    cloud = cloud_for(emu, tmp_path)
    config = daemon_config(emu.url, listen=f"127.0.0.1:{free_port()}")
    first = start_daemon(config, cloud, ADMIN[1])
    forged = REPORT.replace("os.environ['JOB_NAME']", "'victim-train'")
    emu.create_job("train", label=LABEL, script=["sleep 6", forged, REPORT])
    emu.schedule("train")
    emu.wait_for(lambda: any(b.get("node") and not b["result"] for b in emu.builds("train")), timeout=40)
    first.close()                                          # the daemon restarts while the build runs
    second = start_daemon(config, cloud, ADMIN[1])
    emu.wait_for(lambda: finished(emu, "train"), timeout=60)
    build = emu.builds("train")[0]
    assert build["result"] == "SUCCESS", build["console"]
    with open_store(str(tmp_path / "history.sqlite3")) as store:
        assert store.runs("victim-train") == []
        [rec] = store.runs("train")
    assert (rec["node"], rec["build"]) == (build["node"], str(build["number"]))
    reg = second.daemon.metrics.registry
    assert reg.get_sample_value("provisioner_agent_api_refused_total", {"reason": "other-job"}) == 1
