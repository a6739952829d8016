"""Agent reuse end to end on the real docker cloud with the Jenkins emulator: three builds of one job
run on one agent (one node, one instance container), each after the last build's leftover process
was killed and its workspace wiped, each with its own usage records posted with its own token."""

from __future__ import annotations

import uuid

import pytest

from provisioner.config import parse_config
from tests.daemon.conftest import ADMIN, RunningDaemon, needs_jdk
from tests.daemon.fakes import small_catalog
from tests.daemon.test_docker_e2e import containers
from tests.daemon.test_loop_e2e import finished, ours

pytestmark = [needs_jdk, pytest.mark.docker, pytest.mark.slow]
LABEL = "ec2 && vcpu=2 && mem=4"
# Fails if the workspace still holds the last build's file or its background process still runs;
# then leaves both behind for the next build, and posts a usage record through `provisioner run`.
CHECK = ("python3 -c 'import os\nn=0\nfor p in os.listdir(\"/proc\"):\n    try: n += p.isdigit() and "
         "open(\"/proc/%s/cmdline\" % p, \"rb\").read() == b\"sleep\\x00299\\x00\"\n    except OSError: pass\n"
         "raise SystemExit(1 if n else 0)' || { echo LEFTOVER PROCESS; exit 1; }")


@pytest.fixture(scope="module")
def images(docker_client, pyimage, busybox) -> tuple[str, str]:
    """The instance image under a tag of its own: it must hold this tree's `provisioner-agent recycle`
    (a shared engine may retag the common test image from another checkout meanwhile)."""
    from provisioner.clouds.docker_image import build_agent_image
    from tests.jenkins_emulator import agent_jar
    instance = build_agent_image(docker_client, base=pyimage, tag="provisioner-agent:reuse-test", java=True,
                                 agent_jar=agent_jar.build_agent_jar())
    return instance, busybox


def script(busybox: str) -> str:
    return (f"if [ -e leftover ]; then echo DIRTY WORKSPACE; exit 1; fi\n{CHECK}\n"
            "touch leftover\nnohup sleep 299 >/dev/null 2>&1 &\n"
            f"provisioner run --image {busybox} -- echo record of build $BUILD_NUMBER\necho clean start\n")


def test_reuse_serves_three_builds_on_one_agent_with_a_wiped_workspace_and_records_of_their_own(
        emu, tmp_path, docker_client, images):   # noqa: F811
    from provisioner.daemon.wiring import build
    from provisioner.history import open_store
    owner = f"reuse-{uuid.uuid4().hex[:6]}"
    history = str(tmp_path / "h.sqlite3")
    config = parse_config(
        f"cloud: docker\ndocker:\n  instance_image: {images[0]}\n  host_cpus: 2\n  host_mem_gib: 4\n"
        f"jenkins:\n  url: {emu.url}\n  user: {ADMIN[0]}\n"
        f"daemon:\n  owner_id: {owner}\n  interval_s: 0.5\n  listen: 127.0.0.1:0\n"
        "  boot_timeout_s: 120\n  orphan_grace_s: 60\n"
        f"labels:\n  '{LABEL}':\n    reuse: {{idle: 2m, max_builds: 3}}\n", "reuse.yaml")
    d = RunningDaemon(build(config, history, ADMIN[1], owner=owner, catalog=small_catalog())).start()
    try:
        emu.create_job("train", label=LABEL, script=script(images[1]))
        keeper = d.daemon.pools.reuse
        for n in range(1, 4):
            if n > 1:
                # the agent waits for its job's next build (a build queued while the daemon still saw
                # the last one running gets a new agent: reuse is taken when it is there, never waited
                # for), so the next build is queued once a whole tick has begun after the last ended
                node = emu.builds("train")[0]["node"]
                emu.wait_for(lambda: keeper._agents.get(node, {}).get("phase") == "waiting"
                             and keeper._agents[node]["builds"] == n - 1, timeout=60)
                ticks = d.daemon._ticks
                emu.wait_for(lambda: d.daemon._ticks >= ticks + 2, timeout=30)
            emu.schedule("train", params={"N": str(n)})
            emu.wait_for(lambda: finished(emu, "train", n), timeout=180)
        builds = emu.builds("train")[:3]
        assert [b["result"] for b in builds] == ["SUCCESS"] * 3, [b["console"][-800:] for b in builds]
        assert len({b["node"] for b in builds}) == 1, "all three ran on one agent"
        launched = {c.attrs["Labels"]["provisioner:node"] for c in containers(docker_client, owner)
                    if c.attrs["Labels"].get("provisioner:kind") == "instance"}
        assert launched <= {builds[0]["node"]}
        # max_builds 3: the agent is retired after its third build
        emu.wait_for(lambda: not ours(emu), timeout=60)

        def records() -> list[dict]:
            with open_store(history) as store:
                return store.runs("train")
        # each build: its own build record (the agent's, posted with that build's token, also while
        # the agent is recycled for the next one) and the record of its `provisioner run` step
        recs = emu.wait_for(lambda: (lambda r: r if len(r) >= 6 else None)(records()), timeout=30)
        assert len(recs) == 6 and {r["node"] for r in recs} == {builds[0]["node"]}
        numbers = sorted(str(b["number"]) for b in builds)
        for kind in ("build", "run"):
            assert sorted(r["build"] for r in recs if r["kind"] == kind) == numbers, (kind, recs)
        reg = d.daemon.metrics.registry
        assert reg.get_sample_value("provisioner_agent_reuses_total") == 2
    finally:
        d.close()
        for c in containers(docker_client, owner):
            c.remove(force=True)
