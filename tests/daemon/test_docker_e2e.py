"""The issue's end-to-end test on the real docker cloud: a build labelled `ec2 && vcpu=2 && mem=4`
-> node with matching labels -> instance container -> agent connects -> the build runs
`provisioner run` -> its usage record reaches the daemon -> node deleted, container gone; /metrics."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from provisioner.config import parse_config
from tests.daemon.conftest import ADMIN, RunningDaemon, needs_jdk
from tests.daemon.fakes import small_catalog
from tests.daemon.test_loop_e2e import finished, ours

pytestmark = [needs_jdk, pytest.mark.docker, pytest.mark.slow]
LABEL = "ec2 && vcpu=2 && mem=4"
IMAGE_TAG = "provisioner-agent:daemon-test"


@pytest.fixture(scope="module")
def images(docker_client, pyimage, busybox) -> tuple[str, str]:
    """(instance image with a Java runtime and the emulator's stand-in agent.jar, busybox for builds);
    docker_client, pyimage and busybox come from tests/conftest_docker.py."""
    from provisioner.clouds.docker_image import build_agent_image
    from tests.jenkins_emulator import agent_jar
    instance = build_agent_image(docker_client, base=pyimage, tag=IMAGE_TAG, java=True,
                                 agent_jar=agent_jar.build_agent_jar())
    return instance, busybox


def docker_config(emu_url: str, image: str, owner: str, interval: float = 0.5) -> Any:
    return parse_config(
        f"cloud: docker\ndocker:\n  instance_image: {image}\n  host_cpus: 2\n  host_mem_gib: 4\n"
        f"jenkins:\n  url: {emu_url}\n  user: {ADMIN[0]}\n"
        f"daemon:\n  owner_id: {owner}\n  interval_s: {interval}\n  listen: 127.0.0.1:0\n"
        "  boot_timeout_s: 120\n  orphan_grace_s: 60\n", "docker-e2e.yaml")


def _runs(history: str, job: str) -> list[dict]:
    from provisioner.history import open_store
    with open_store(history) as store:
        return store.runs(job)


def containers(client, owner: str) -> list:
    """One list call, no per-container inspect: the daemon may be removing them as we look."""
    return client.containers.list(all=True, sparse=True, filters={"label": f"provisioner:owner={owner}"})


def test_label_to_container_to_usage_record_and_cleanup(emu, tmp_path, docker_client, images):
    from provisioner.daemon.wiring import build
    instance_image, busybox = images
    owner = f"e2e-{uuid.uuid4().hex[:6]}"
    history = str(tmp_path / "history.sqlite3")
    parts = build(docker_config(emu.url, instance_image, owner), history, ADMIN[1], owner=owner,
                  catalog=small_catalog())
    d = RunningDaemon(parts).start()
    try:
        emu.create_job("train", label=LABEL,
                       script=f"provisioner run --image {busybox} -- sh -c 'echo hello from the job; sleep 2'")
        qid = emu.schedule("train")
        node = f"prov-{owner}-q{qid}"
        seen = emu.wait_for(lambda: emu.node(node), timeout=30)
        assert set(seen.labels) >= {"ec2", "vcpu=2", "mem=4"}
        emu.wait_for(lambda: containers(docker_client, owner), timeout=30)
        [c] = containers(docker_client, owner)
        labels = c.attrs["Labels"]
        assert labels["provisioner:node"] == node and labels["provisioner:instance-type"] == "c5.large"
        emu.wait_for(lambda: finished(emu, "train"), timeout=180)
        build_ = emu.builds("train")[0]
        assert build_["result"] == "SUCCESS", build_["console"]
        assert build_["node"] == node and "hello from the job" in build_["console"]
        emu.wait_for(lambda: not ours(emu) and not containers(docker_client, owner), timeout=60)
        emu.wait_for(lambda: len(_runs(history, "train")) == 2, timeout=30)
        [rec], [whole] = ([r for r in _runs(history, "train") if r.get("kind") == kind] for kind in ("run", "build"))
        assert (rec["node"], rec["queue_id"], rec["instance_type"], rec["exit_code"]) == (node, str(qid), "c5.large", 0)
        # The watcher's record of the whole build (issue 14); the run inside it points at it.
        assert (whole["node"], whole["build"], whole["result"]) == (node, "1", "SUCCESS")
        assert rec["parent_run_id"] == whole["run_id"]
        reg = d.daemon.metrics.registry
        emu.wait_for(lambda: reg.get_sample_value("provisioner_agents_retired_total", {"reason": "finished"}), timeout=10)
        text = requests.get(d.url + "/metrics", timeout=5).text
        assert 'provisioner_launches_total{instance_type="c5.large",market="on-demand"} 1.0' in text
        assert 'provisioner_usage_records_total{result="stored"} 2.0' in text     # the run's and the build's
        assert "provisioner_queue_wait_to_agent_online_seconds_count 1.0" in text
        assert "provisioner_agents_cost_usd_per_hour 0.0" in text          # nothing left running
    finally:
        d.close()
        for c in containers(docker_client, owner):
            c.remove(force=True)
