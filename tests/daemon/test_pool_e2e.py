"""The warm pool end to end on the real docker cloud with the Jenkins emulator: a pool of 2 serves
the first two builds from its spares and refills; a build whose plan differs launches as usual;
the image changing rebuilds the spares; the metrics count hits, misses and spares by state."""

from __future__ import annotations

import uuid

import pytest

from provisioner.config import parse_config
from tests.daemon.conftest import ADMIN, RunningDaemon, needs_jdk
from tests.daemon.fakes import small_catalog
from tests.daemon.test_docker_e2e import containers, images  # noqa: F401  (images: the fixture)
from tests.daemon.test_loop_e2e import finished, ours

pytestmark = [needs_jdk, pytest.mark.docker, pytest.mark.slow]
LABEL = "ec2 && vcpu=2 && mem=4"
CANON = "ec2&&vcpu=2&&mem=4"
BIG = "ec2 && vcpu=4"                 # another plan (c5.xlarge): no spare fits it


def pool_config(emu_url: str, image: str, owner: str, spares: int = 2, interval: float = 0.5):
    return parse_config(
        f"cloud: docker\ndocker:\n  instance_image: {image}\n  host_cpus: 2\n  host_mem_gib: 4\n"
        f"jenkins:\n  url: {emu_url}\n  user: {ADMIN[0]}\n"
        f"daemon:\n  owner_id: {owner}\n  interval_s: {interval}\n  listen: 127.0.0.1:0\n"
        "  boot_timeout_s: 120\n  orphan_grace_s: 60\n"
        f"labels:\n  '{LABEL}':\n    pool: {{min_spare: {spares}, max_spare: {spares}}}\n", "pool-e2e.yaml")


def spares(emu, owner: str, online: bool = True) -> set[str]:
    prefix = f"prov-{owner}-pool-"
    return {n for n in ours(emu) if n.startswith(prefix) and (not online or emu.is_online(n))}


def running(client, owner: str) -> set[str]:
    """The nodes of the running instance containers."""
    return {c.attrs["Labels"].get("provisioner:node") for c in containers(client, owner)
            if c.attrs.get("State") == "running" and c.attrs["Labels"].get("provisioner:kind") == "instance"}


def start(emu, tmp_path, images, spares_n: int = 2) -> tuple[RunningDaemon, str]:   # noqa: F811
    from provisioner.daemon.wiring import build
    owner = f"pool-{uuid.uuid4().hex[:6]}"
    parts = build(pool_config(emu.url, images[0], owner, spares_n), str(tmp_path / "h.sqlite3"), ADMIN[1],
                  owner=owner, catalog=small_catalog())
    return RunningDaemon(parts).start(), owner


def test_a_pool_of_two_serves_two_builds_refills_and_a_different_plan_launches_normally(
        emu, tmp_path, docker_client, images):   # noqa: F811
    d, owner = start(emu, tmp_path, images)
    try:
        first = emu.wait_for(lambda: (lambda s: s if len(s) == 2 else None)(spares(emu, owner)), timeout=120)
        emu.create_job("train", label=LABEL, script="echo hello from a spare; sleep 1", concurrent=True)
        emu.schedule("train", params={"N": "1"})
        emu.schedule("train", params={"N": "2"})
        emu.wait_for(lambda: finished(emu, "train", 2), timeout=120)
        builds = emu.builds("train")[:2]
        assert all(b["result"] == "SUCCESS" for b in builds), [b["console"] for b in builds]
        assert {b["node"] for b in builds} == first, "both builds ran on the two spares"
        assert all("hello from a spare" in b["console"] for b in builds)
        # refilled with two new spares; the used ones retired (one build per agent), no q-nodes
        emu.wait_for(lambda: len(spares(emu, owner) - first) == 2 and not (set(ours(emu)) & first), timeout=120)
        assert not [n for n in ours(emu) if "-q" in n], "no normal launch for the pooled builds"
        reg = d.daemon.metrics.registry
        assert reg.get_sample_value("provisioner_pool_hits_total", {"label": CANON}) == 2
        assert reg.get_sample_value("provisioner_pool_misses_total", {"label": CANON}) is None
        emu.wait_for(lambda: reg.get_sample_value("provisioner_pool_spares", {"label": CANON, "state": "ready"}) == 2,
                     timeout=30)
        # another plan: a normal node and instance for its queue item, the spares untouched
        emu.create_job("big", label=BIG, script="echo big")
        qid = emu.schedule("big")
        emu.wait_for(lambda: finished(emu, "big"), timeout=120)
        [big] = emu.builds("big")
        assert big["result"] == "SUCCESS" and big["node"] == f"prov-{owner}-q{qid}"
        assert len(spares(emu, owner)) == 2
        # nothing leaked: once the big build's agent is retired, the running instances are the spares
        emu.wait_for(lambda: running(docker_client, owner) == spares(emu, owner), timeout=60)
        assert len(running(docker_client, owner)) == 2
    finally:
        d.close()
        for n in ours(emu):
            emu.delete_node(n)
        for c in containers(docker_client, owner):
            c.remove(force=True)
