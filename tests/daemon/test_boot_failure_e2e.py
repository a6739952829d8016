"""Issue 14 item 4 on real processes: the daemon, the docker cloud and the Jenkins emulator, with an
instance image that has no Java. Each launch dies at once (`java: not found`, exit 127): exactly one
`agent.boot-failed` line and one counted failure per launch, no instance left behind, the demand
held as `paused` after `daemon.pause_after_boot_failures`, and served by itself once the image is
rebuilt with Java (a new image id under the same tag)."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest

from provisioner.config import parse_config
from tests.daemon.conftest import ADMIN, RunningDaemon, needs_jdk
from tests.daemon.fakes import small_catalog
from tests.daemon.test_docker_e2e import containers
from tests.daemon.test_loop_e2e import finished

pytestmark = [needs_jdk, pytest.mark.docker, pytest.mark.slow]
LABEL = "ec2 && vcpu=2"
PAUSE_AFTER = 2


def config(emu_url: str, image: str, owner: str):
    return parse_config(
        f"cloud: docker\ndocker:\n  instance_image: {image}\n  host_cpus: 2\n  host_mem_gib: 4\n"
        f"jenkins:\n  url: {emu_url}\n  user: {ADMIN[0]}\n"
        f"daemon:\n  owner_id: {owner}\n  interval_s: 0.5\n  listen: 127.0.0.1:0\n"
        f"  boot_timeout_s: 120\n  orphan_grace_s: 60\n  pause_after_boot_failures: {PAUSE_AFTER}\n",
        "boot-failure-e2e.yaml")


def boot_failed_lines(caplog) -> list[dict]:
    out = []
    for r in caplog.records:
        text = r.getMessage()
        if '"agent.boot-failed"' in text:
            out.append(json.loads(text))
    return out


def test_broken_image_fails_once_per_launch_pauses_and_resumes_when_the_image_changes(
        emu, tmp_path, docker_client, pyimage, caplog):
    from provisioner.clouds.docker_image import build_agent_image
    from provisioner.daemon.wiring import build
    from tests.jenkins_emulator import agent_jar
    jar = agent_jar.build_agent_jar()
    tag = f"provisioner-agent:boot-fail-{uuid.uuid4().hex[:6]}"
    build_agent_image(docker_client, base=pyimage, tag=tag, java=False, agent_jar=jar)   # no Java
    owner = f"bf-{uuid.uuid4().hex[:6]}"
    caplog.set_level(logging.INFO, logger="provisioner")
    parts = build(config(emu.url, tag, owner), str(tmp_path / "h.sqlite3"), ADMIN[1], owner=owner,
                  catalog=small_catalog())
    d = RunningDaemon(parts).start()
    reg = d.daemon.metrics.registry

    def value(name: str, labels: dict | None = None) -> float:
        return reg.get_sample_value(name, labels or {}) or 0.0
    try:
        emu.create_job("train", label=LABEL, script="echo built by a fixed image")
        emu.schedule("train")
        emu.wait_for(lambda: value("provisioner_queue_held_items", {"reason": "paused"}) == 1, timeout=120)
        time.sleep(2.0)                                   # several more ticks: nothing is relaunched
        lines = boot_failed_lines(caplog)
        launches = value("provisioner_launches_total", {"instance_type": "c5.large", "market": "on-demand"})
        failures = value("provisioner_failures_total", {"action": "boot", "code": "agent-exited"})
        assert launches == failures == len(lines) == PAUSE_AFTER, lines
        assert len({ln["instance"] for ln in lines}) == PAUSE_AFTER          # one line per launch
        for ln in lines:
            assert ln["node"].startswith(f"prov-{owner}-q") and ln["offer"] == "c5.large/us-east-1/on-demand"
            assert "exit 127" in ln["cause"] and "java" in ln["cause"], ln
        assert [r for r in caplog.records if '"boot.paused"' in r.getMessage()]
        assert not containers(docker_client, owner)       # no instance left behind
        assert not [n for n in (x["displayName"] for x in emu.nodes()) if n.startswith("prov-")]
        assert not emu.builds("train")

        build_agent_image(docker_client, base=pyimage, tag=tag, java=True, agent_jar=jar)   # fixed
        emu.wait_for(lambda: finished(emu, "train"), timeout=180)
        b = emu.builds("train")[0]
        assert b["result"] == "SUCCESS" and "built by a fixed image" in b["console"], b["console"]
        assert value("provisioner_failures_total", {"action": "boot", "code": "agent-exited"}) == PAUSE_AFTER
        emu.wait_for(lambda: not containers(docker_client, owner), timeout=60)
        emu.wait_for(lambda: value("provisioner_queue_held_items", {"reason": "paused"}) == 0, timeout=10)
    finally:
        d.close()
        for c in containers(docker_client, owner):
            c.remove(force=True)
        try:
            docker_client.images.remove(tag, force=True)
        except Exception:
            pass
