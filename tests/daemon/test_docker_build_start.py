"""One build per agent for builds that never report, on the real docker cloud: two jobs with the same
label whose builds are a plain short shell step (no `provisioner run`, so no usage post), one agent
at a time (`max_agents: 1`), no drain poll between the daemon's ticks (`drain_poll_s: 0`, interval
3 s). Only the agent watcher's build-start signal (provisioner/agent/buildstart.py: one sample to
/v1/samples, which drains the node before it answers) keeps Jenkins from giving the first agent the
second build once the first one is over. Disable the signal and the two builds share one node.

The step is half a second of `sleep`: short next to the daemon's 3 s tick (which would drain a
busy node too, so a longer build could pass without the signal), long next to the signal's latency
(about 0.1 s end to end here: inotify sees the workspace at once; the post and the daemon's drain
call take the rest). A bare `true` lasts 60-140 ms on the emulator's agent, the same as the
signal: it passes here most of the time, but as a race, and a test must not be one."""

from __future__ import annotations

import uuid

import pytest

from provisioner.config import parse_config
from tests.daemon.conftest import ADMIN, RunningDaemon, needs_jdk
from tests.daemon.fakes import small_catalog
from tests.daemon.test_docker_e2e import LABEL, containers, images  # noqa: F401  (images: a fixture)
from tests.daemon.test_loop_e2e import finished, ours

pytestmark = [needs_jdk, pytest.mark.docker, pytest.mark.slow]
STEP = "sleep 0.5"


def config(emu_url: str, image: str, owner: str):
    return parse_config(
        f"cloud: docker\ndocker:\n  instance_image: {image}\n  host_cpus: 2\n  host_mem_gib: 4\n"
        f"jenkins:\n  url: {emu_url}\n  user: {ADMIN[0]}\n"
        f"daemon:\n  owner_id: {owner}\n  interval_s: 3\n  listen: 127.0.0.1:0\n  max_agents: 1\n"
        "  drain_poll_s: 0\n  boot_timeout_s: 120\n  orphan_grace_s: 60\n", "build-start.yaml")


def test_two_short_builds_that_never_report_get_two_agents(emu, tmp_path, docker_client, images):  # noqa: F811
    from provisioner.daemon.wiring import build
    instance_image, _ = images
    owner = f"bs-{uuid.uuid4().hex[:6]}"
    parts = build(config(emu.url, instance_image, owner), str(tmp_path / "history.sqlite3"), ADMIN[1],
                  owner=owner, catalog=small_catalog())
    d = RunningDaemon(parts).start()
    try:
        # A freestyle job and a pipeline (its node() body is the queued item), both one short step.
        emu.create_job("first", label=LABEL, script=STEP)
        emu.create_job("second", label=LABEL, kind="pipeline", script=STEP)
        emu.schedule("first")
        emu.schedule("second")
        emu.wait_for(lambda: finished(emu, "first") and finished(emu, "second"), timeout=240, interval=0.2)
        [first], [second] = emu.builds("first"), emu.builds("second")
        assert first["result"] == "SUCCESS", first["console"]
        assert second["result"] == "SUCCESS", second["console"]
        assert first["node"].startswith(f"prov-{owner}-") and second["node"].startswith(f"prov-{owner}-")
        assert first["node"] != second["node"], "the first agent was given a second build"
        # Each agent's watcher said so (no build runs `provisioner run`); at each build's end it
        # posted the build's usage record (issue 14), and nothing else posted.
        reg = d.daemon.metrics.registry
        assert reg.get_sample_value("provisioner_samples_total") >= 2
        emu.wait_for(lambda: not ours(emu) and not containers(docker_client, owner), timeout=60)
        assert reg.get_sample_value("provisioner_usage_records_total", {"result": "stored"}) == 2
        from provisioner.history import open_store
        with open_store(str(tmp_path / "history.sqlite3")) as store:
            assert [r["kind"] for r in store.runs("first") + store.runs("second")] == ["build", "build"]
    finally:
        d.close()
        for c in containers(docker_client, owner):
            c.remove(force=True)
