"""The daemon as a real process: SIGKILLed at random moments and restarted, and a second daemon
with the same owner id waiting for the lease.

PROVISIONER_KILL_CYCLES sets how many builds the SIGKILL test provisions (default 20 here to keep
the suite short; the issue's 50 with PROVISIONER_KILL_CYCLES=50). The seed is printed; set
PROVISIONER_KILL_SEED to replay one. Half the restarts arm a kill point (provisioner.killpoints) at a
random step of a launch or a retirement, the others are killed at a random moment.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.clouds.conftest import ec2_moto_url, moto_images, moto_world  # noqa: F401
from tests.conftest import ROOT
from tests.daemon.conftest import ADMIN, needs_jdk
from tests.daemon.fakes import ProcessCloud
from tests.daemon.test_loop_e2e import finished, ours

pytestmark = [needs_jdk, pytest.mark.slow]
LABEL = "ec2 && vcpu=2 && mem=4"


class DaemonProcess:
    def __init__(self, tmp: Path, emu, name: str, launch_delay: float = 0.0):
        self.log = tmp / f"{name}.log"
        self.cmd = [sys.executable, "-m", "tests.daemon.run_daemon", "--config", str(tmp / "daemon.yaml"),
                    "--history", str(tmp / "history.sqlite3"), "--cloud-dir", str(tmp / "cloud"),
                    "--agent-jar", str(emu.agent_jar()), "--launch-delay", str(launch_delay)]
        self.env = {**os.environ, "JENKINS_TOKEN": ADMIN[1], "PYTHONPATH": str(ROOT)}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "DaemonProcess":
        out = open(self.log, "a")
        out.write(f"--- daemon.start {time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d}\n")
        out.flush()
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return self

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def write_config(tmp: Path, emu) -> None:
    (tmp / "daemon.yaml").write_text(
        f"jenkins:\n  url: {emu.url}\n  user: {ADMIN[0]}\ndaemon:\n  owner_id: t\n  interval_s: 0.3\n"
        "  listen: 127.0.0.1:0\n  boot_timeout_s: 15\n  orphan_grace_s: 10\n  lease_ttl_s: 5\n")


def test_second_daemon_waits_for_the_lease_and_takes_over(emu, tmp_path):
    write_config(tmp_path, emu)
    a = DaemonProcess(tmp_path, emu, "a").start()
    emu.wait_for(lambda: "lease.acquired" in a.text(), timeout=30)
    b = DaemonProcess(tmp_path, emu, "b").start()
    try:
        emu.wait_for(lambda: "lease.waiting" in b.text(), timeout=30)
        emu.create_job("train", label=LABEL, script="sleep 1")
        emu.schedule("train")
        emu.wait_for(lambda: emu.builds("train") and emu.builds("train")[0]["result"], timeout=40)
        emu.wait_for(lambda: not ours(emu), timeout=20)            # A retired its agent
        assert "agent.launched" in a.text() and "agent.launched" not in b.text(), a.text() + b.text()
        assert a.stop() == 0                                    # SIGTERM: finish the tick, give the lease back
        emu.wait_for(lambda: "lease.acquired" in b.text(), timeout=15)
        emu.schedule("train")
        emu.wait_for(lambda: len(emu.builds("train")) == 2 and emu.builds("train")[1]["result"], timeout=40)
        assert "agent.launched" in b.text()
    finally:
        for d in (a, b):
            if d.proc.poll() is None:
                d.kill()
        ProcessCloud(tmp_path / "cloud", emu.url, emu.agent_jar()).kill_all()


KILL_STEPS = ("process.created", "launch.node-created", "launch.launched", "retire.node-deleted")


def _waits_after_restarts(builds: list[dict], restarts: list[float], scheduled: dict[str, float]
                          ) -> tuple[list[float], int]:
    """Per restart with builds waiting (scheduled before it, started after): restart -> the first of
    them starting, when that came before the next kill; and how many restarts were killed first."""
    waits, cut = [], 0
    for k, r in enumerate(restarts):
        nxt = restarts[k + 1] if k + 1 < len(restarts) else float("inf")
        starts = [b["timestamp"] / 1000.0 for b in builds
                  if scheduled.get(b["params"].get("N"), r) < r < b["timestamp"] / 1000.0]
        if not starts:
            continue
        if min(starts) < nxt:
            waits.append(min(starts) - r)
        else:
            cut += 1
    return waits, cut


def test_sigkill_at_random_moments_no_duplicates_no_leaks_every_build_served(emu, tmp_path):
    builds = int(os.environ.get("PROVISIONER_KILL_CYCLES", "20"))
    seed = int(os.environ.get("PROVISIONER_KILL_SEED", str(random.randrange(1 << 30))))
    print(f"seed {seed} builds {builds}")
    rng = random.Random(seed)
    write_config(tmp_path, emu)
    cloud = ProcessCloud(tmp_path / "cloud", emu.url, emu.agent_jar())
    for i in range(4):
        emu.create_job(f"job{i}", label=LABEL, script=["sleep 1.5"], concurrent=True)
    daemon = DaemonProcess(tmp_path, emu, "d", launch_delay=0.2).start()   # a wider window inside launch
    scheduled, kills, deadline = 0, 0, time.monotonic() + 40 + 2.5 * builds
    points: Counter = Counter()
    restarts: list[float] = []
    queued: dict[str, float] = {}
    started = time.monotonic()
    try:
        while time.monotonic() < deadline:
            done = sum(1 for i in range(4) for b in emu.builds(f"job{i}") if b["result"])
            if done >= builds:
                break
            waiting = scheduled - done
            while scheduled < builds and waiting < 6:           # a few at a time, distinct jobs
                emu.schedule(f"job{scheduled % 4}", params={"N": str(scheduled)})
                queued[str(scheduled)] = time.time()
                scheduled, waiting = scheduled + 1, waiting + 1
            time.sleep(rng.uniform(0.3, 3.0))                    # then a SIGKILL at a random moment
            at = daemon.env.pop("PROVISIONER_KILL_AT", None)
            hit = daemon.proc.poll() is not None                 # it died at its kill point meanwhile
            daemon.kill()
            points[at if hit else "random moment"] += 1
            print(f"t={time.monotonic() - started:.1f}s kill {kills + 1} ({at if hit else 'random'}): "
                  f"{done}/{builds} served", flush=True)
            kills += 1
            if rng.random() < 0.5:                               # the next one dies inside an action
                daemon.env["PROVISIONER_KILL_AT"] = f"{rng.choice(KILL_STEPS)}@{rng.randint(1, 3)}"
            restarts.append(time.time())
            daemon.start()
        else:
            pytest.fail(f"not every build was served in time (seed {seed})")
        # a last, undisturbed run cleans up what the last kill left
        if daemon.env.pop("PROVISIONER_KILL_AT", None) is not None:
            daemon.kill()
            daemon.start()
        emu.wait_for(lambda: not ours(emu) and not cloud.describe("t"), timeout=30)
    finally:
        daemon.kill()
        cloud.kill_all()
    results = Counter(b["result"] for i in range(4) for b in emu.builds(f"job{i}"))
    launches = cloud.launch_log()
    ids_per_node: dict[str, set] = {}
    for rec in launches:                 # a half-made launch made again keeps its id (the same token)
        ids_per_node.setdefault(rec["node"], set()).add(rec["id"])
    duplicates = {n: ids for n, ids in ids_per_node.items() if len(ids) > 1}
    all_builds = [b for i in range(4) for b in emu.builds(f"job{i}")]
    waits, cut = _waits_after_restarts(all_builds, restarts, queued)
    print(f"kill points hit: {dict(points)}")
    if waits:
        print(f"queue wait after a restart (restart -> first waiting build starts, {len(waits)} restarts, "
              f"{cut} killed again first): max {max(waits):.1f} s, median {sorted(waits)[len(waits) // 2]:.1f} s "
              "(interval 0.3 s + boot of a stand-in agent)")
    log = daemon.text()
    assert "offer.blocked" not in log and '"boot-timeout"' not in log, f"seed {seed}: an offer blocked for a crash"
    print(f"seed {seed}: {builds} builds, {kills} kills, {len(launches)} launches, results {dict(results)}")
    for b in (b for i in range(4) for b in emu.builds(f"job{i}") if b["result"] != "SUCCESS"):
        print("FAILED BUILD", b["node"], b["console"][-500:])
        ids = [rec["id"] for rec in launches if rec["node"] == b["node"]]
        print("\n".join(line for line in daemon.text().splitlines()
                        if b["node"] in line or any(i in line for i in ids) or "daemon.start" in line))
    assert results == {"SUCCESS": builds}, f"seed {seed}"                 # every build served
    # Not asserted: Jenkins may hand a finished agent a second build before the next tick drains or
    # deletes it (a build shorter than the interval). Printed to keep an eye on it.
    per_agent = Counter(b["node"] for i in range(4) for b in emu.builds(f"job{i}"))
    print(f"agents that ran a second build: {sum(1 for n in per_agent.values() if n > 1)}")
    assert duplicates == {}, f"seed {seed}: more than one instance for a node: {duplicates}"
    assert cloud.describe("t") == [] and ours(emu) == [], f"seed {seed}: leaked"


@pytest.fixture
def docker_images(docker_client, pyimage, busybox):
    from tests.daemon.test_docker_e2e import images
    return images.__wrapped__(docker_client, pyimage, busybox)


@pytest.mark.docker
@pytest.mark.parametrize("step", ["docker.created", "docker.copied"])
def test_a_daemon_killed_inside_a_docker_launch_finishes_it_on_its_first_tick_after_restart(
        emu, tmp_path, docker_client, docker_images, step):
    """The real docker cloud: SIGKILL between create and copy, or copy and start, leaves a container
    that can never boot. The restarted daemon removes it and launches again (same token, same id) at
    once: no boot timeout waited out, no offer blocked, one container for the node."""
    from tests.daemon.test_docker_e2e import containers
    owner = f"kr{uuid.uuid4().hex[:6]}"
    (tmp_path / "daemon.yaml").write_text(
        f"cloud: docker\ndocker:\n  instance_image: {docker_images[0]}\n  host_cpus: 2\n  host_mem_gib: 4\n"
        f"jenkins:\n  url: {emu.url}\n  user: {ADMIN[0]}\ndaemon:\n  owner_id: {owner}\n  interval_s: 0.5\n"
        "  listen: 127.0.0.1:0\n  boot_timeout_s: 300\n  orphan_grace_s: 60\n  lease_ttl_s: 5\n")
    emu.create_job("train", label=LABEL, script="sleep 1")
    node = f"prov-{owner}-q{emu.schedule('train')}"
    daemon = DaemonProcess(tmp_path, emu, "d")
    daemon.cmd += ["--real-cloud", "--owner", owner]
    daemon.env["PROVISIONER_KILL_AT"] = step
    try:
        assert daemon.start().proc.wait(timeout=60) == -signal.SIGKILL, daemon.text()
        [left] = containers(docker_client, owner)
        assert left.status == "created" and f"kill point {step}" in daemon.text()
        del daemon.env["PROVISIONER_KILL_AT"]
        restarted = time.monotonic()
        daemon.start()
        emu.wait_for(lambda: emu.is_online(node) or finished(emu, "train"), timeout=120)
        wait = time.monotonic() - restarted
        emu.wait_for(lambda: finished(emu, "train"), timeout=60)
        build = emu.builds("train")[0]
        assert build["result"] == "SUCCESS" and build["node"] == node, build["console"]
        emu.wait_for(lambda: not ours(emu) and not containers(docker_client, owner), timeout=60)
        log = daemon.text().split("--- daemon.start")[-1]
        assert "removing half-made instance" in log
        assert "offer.blocked" not in log and "boot-timeout" not in log, log
        print(f"{step}: queue wait after the restart {wait:.1f} s (interval 0.5 s + boot)")
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
        for c in containers(docker_client, owner):
            c.remove(force=True)


def _owned(owner: str) -> list[dict]:
    """Every instance (terminated too) carrying this owner tag, straight from moto."""
    from provisioner import aws
    from tests.clouds.conftest import REGION
    ec2 = aws.client("ec2", region=REGION)
    pages = ec2.describe_instances(Filters=[{"Name": "tag:provisioner:owner", "Values": [owner]}])
    return [i for r in pages["Reservations"] for i in r["Instances"]]


def _bundle(instance_id: str) -> dict | None:
    import json as _json

    from provisioner import aws
    from tests.clouds.conftest import REGION
    ssm = aws.client("ssm", region=REGION)
    try:
        value = ssm.get_parameter(Name=f"/provisioner/agents/{instance_id}", WithDecryption=True)
    except ssm.exceptions.ParameterNotFound:
        return None
    return _json.loads(value["Parameter"]["Value"])


@pytest.mark.moto
@pytest.mark.parametrize("step,recovered", [("ec2.fleet-created", 4), ("ec2.tagged@2", 2), ("launch.launched", 0)],
                         ids=["after-CreateFleet", "between-CreateTags", "before-SSM-put"])
def test_a_daemon_killed_inside_an_ec2_launch_finishes_it_on_its_first_tick_after_restart(
        emu, tmp_path, moto_env, ec2_moto_url, moto_world, step, recovered):  # noqa: F811
    """moto: a batch of four launched alike, SIGKILL after CreateFleet (no node tags), between two
    CreateTags, or before the SSM put of the secret bundles. The restarted daemon tags what was left
    untagged, puts the missing bundles, launches nothing twice, terminates nothing, blocks no offer."""
    owner = f"ke{uuid.uuid4().hex[:6]}"
    (tmp_path / "daemon.yaml").write_text(
        f"jenkins:\n  url: {emu.url}\n  user: {ADMIN[0]}\ndaemon:\n  owner_id: {owner}\n  interval_s: 0.3\n"
        "  listen: 127.0.0.1:0\n  boot_timeout_s: 300\n  orphan_grace_s: 60\n  lease_ttl_s: 5\n")
    for n in range(4):
        emu.create_job(f"fit-{n}", label=LABEL, script="sleep 1")
        emu.schedule(f"fit-{n}", quiet_period=0)
    emu.wait_for(lambda: sum(1 for i in emu.queue_items() if i.get("buildable")) == 4, timeout=10)
    settings = {"subnets": moto_world["subnets"], "security_groups": [moto_world["security_group"]],
                "instance_profile": "provisioner-instance", "images": {"us-east-1": moto_world["images"]}}
    daemon = DaemonProcess(tmp_path, emu, "d")
    daemon.cmd += ["--owner", owner, "--ec2-moto", ec2_moto_url, "--ec2-settings", json.dumps(settings)]
    daemon.env["PROVISIONER_KILL_AT"] = step
    try:
        assert daemon.start().proc.wait(timeout=60) == -signal.SIGKILL, daemon.text()
        left = _owned(owner)
        assert len(left) == 4 and all(_bundle(i["InstanceId"]) is None for i in left)   # none handed over
        del daemon.env["PROVISIONER_KILL_AT"]
        daemon.start()
        nodes = {n["displayName"] for n in emu.nodes() if n["displayName"].startswith("prov-")}

        def finished_up() -> bool:
            insts = _owned(owner)
            tags = [{t["Key"]: t["Value"] for t in i.get("Tags", [])} for i in insts]
            bundles = [_bundle(i["InstanceId"]) for i in insts]
            return {t.get("provisioner:node") for t in tags} == nodes and all(
                b is not None and b["node_name"] == t["provisioner:node"] for b, t in zip(bundles, tags))
        emu.wait_for(finished_up, timeout=30)
        insts = _owned(owner)
        assert len(insts) == 4 and {i["State"]["Name"] for i in insts} == {"running"}   # none twice, none ended
        for inst in insts:
            node = next(t["Value"] for t in inst["Tags"] if t["Key"] == "provisioner:node")
            assert _bundle(inst["InstanceId"])["agent_secret"] == emu.secret(node)
        log = daemon.text().split("--- daemon.start")[-1]
        assert "offer.blocked" not in log and "instance.terminated" not in log, log
        assert "agent.launched" not in log                        # nothing launched again
        assert log.count('"ec2.batch-recovered"') == recovered        # node tags written by describe
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
