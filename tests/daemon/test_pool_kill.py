"""The warm pool under SIGKILL (the approach of test_kill_restart.py, its DaemonProcess reused): the
daemon is killed while its spares are starting (after a spare's node is made and before its launch,
inside the docker launch between create / copy / start, and at a random moment) and restarted; once
it runs undisturbed the pool holds exactly its spares: one instance per spare node, no spare node
without an instance, no instance container without its node, nothing else running."""

from __future__ import annotations

import random
import signal
import time
import uuid

import pytest

from tests.daemon.conftest import ADMIN, needs_jdk
from tests.daemon.test_docker_e2e import containers
from tests.daemon.test_kill_restart import DaemonProcess, docker_images  # noqa: F401  (the fixture)
from tests.daemon.test_loop_e2e import ours

pytestmark = [needs_jdk, pytest.mark.docker, pytest.mark.slow]
LABEL = "ec2 && vcpu=2 && mem=4"


def instance_nodes(client, owner: str) -> list[str]:
    """The node label of every instance container of the owner, whatever its state (duplicates kept)."""
    return [c.attrs["Labels"].get("provisioner:node") for c in containers(client, owner)
            if c.attrs["Labels"].get("provisioner:kind") == "instance"]


def test_sigkill_while_spares_start_leaves_no_duplicate_and_no_leak(emu, tmp_path, docker_client,
                                                                     docker_images):   # noqa: F811
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    owner = f"pk{uuid.uuid4().hex[:6]}"
    (tmp_path / "daemon.yaml").write_text(
        f"cloud: docker\ndocker:\n  instance_image: {docker_images[0]}\n  host_cpus: 2\n  host_mem_gib: 4\n"
        f"jenkins:\n  url: {emu.url}\n  user: {ADMIN[0]}\ndaemon:\n  owner_id: {owner}\n  interval_s: 0.5\n"
        "  listen: 127.0.0.1:0\n  boot_timeout_s: 120\n  orphan_grace_s: 60\n  lease_ttl_s: 3\n"
        f"labels:\n  '{LABEL}':\n    pool: {{min_spare: 2, max_spare: 2}}\n")
    daemon = DaemonProcess(tmp_path, emu, "d")
    daemon.cmd += ["--real-cloud", "--owner", owner]
    prefix = f"prov-{owner}-pool-"
    try:
        for step in ("pool.node-created@2", "docker.created", "docker.copied", "pool.node-created"):
            # each restart finds one spare missing, so its first launch reaches the step
            daemon.env["PROVISIONER_KILL_AT"] = step
            assert daemon.start().proc.wait(timeout=60) == -signal.SIGKILL, daemon.text()
            assert f"kill point {step.split('@')[0]}" in daemon.text()
        del daemon.env["PROVISIONER_KILL_AT"]
        for _ in range(2):                                  # killed at random moments while starting
            daemon.start()
            time.sleep(rng.uniform(0.3, 2.5))
            daemon.kill()
        daemon.start()

        def settled() -> bool:
            spares = {n for n in ours(emu) if n.startswith(prefix)}
            nodes = instance_nodes(docker_client, owner)
            return len(spares) == 2 and all(emu.is_online(n) for n in spares) and sorted(nodes) == sorted(spares)
        emu.wait_for(settled, timeout=150)
        time.sleep(2)                                       # a few more ticks: still exactly that
        spares = {n for n in ours(emu) if n.startswith(prefix)}
        nodes = instance_nodes(docker_client, owner)
        assert len(nodes) == len(set(nodes)) == 2, f"seed {seed}: a duplicate: {nodes}"
        assert set(nodes) == spares and set(ours(emu)) == spares, f"seed {seed}: leaked {nodes} {ours(emu)}"
        log = daemon.text().split("--- daemon.start")[-1]
        assert "offer.blocked" not in log, log
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
        for n in ours(emu):
            emu.delete_node(n)
        for c in containers(docker_client, owner):
            c.remove(force=True)
