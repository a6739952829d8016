"""Agent reuse on the `ec2` cloud: moto (EC2 and SSM, server mode), the Jenkins emulator and the
daemon running. moto boots nothing, so the test boots the instance itself: the user-data the daemon
launched (read back from moto) runs as a process tree in a PID namespace of its own (the instance's
processes, nothing else: the recycle kills everything there but its init), with the real
`provisioner-agent` helpers reading and deleting SSM parameters on moto and the emulator's stand-in
agent.jar. Three builds of one job run on that one agent, each after the last build's leftover
process was killed and its workspace wiped, each handed its own report token through the instance's
`.next` SSM parameter; after `max_builds` the instance is terminated."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner import aws
from provisioner.config import parse_config
from tests.clouds.conftest import REGION, ec2_moto_url, ec2_settings, moto_images, moto_world  # noqa: F401
from tests.daemon.conftest import ADMIN, needs_jdk
from tests.daemon.test_ec2_batch_launch import ec2_cloud
from tests.daemon.test_loop_e2e import finished, ours
from tests.daemon.test_pool_ec2 import instances
from tests.daemon.test_reuse_e2e import CHECK

pytestmark = [needs_jdk, pytest.mark.moto, pytest.mark.slow]
LABEL = "ec2 && vcpu=2 && mem=4"
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (f"sleep 2\nif [ -e leftover ]; then echo DIRTY WORKSPACE; exit 1; fi\n{CHECK}\n"
          "touch leftover\nnohup sleep 299 >/dev/null 2>&1 &\necho clean start of build $BUILD_NUMBER\n")
needs_unshare = pytest.mark.skipif(os.geteuid() != 0 or subprocess.run(
    ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode != 0,
    reason="a PID namespace (unshare as root) is needed to boot the instance's process tree")


def boot(iid: str, emu, tmp_path: Path) -> subprocess.Popen:
    """Run the instance's user-data as EC2 would, in a PID namespace (its init is the bootstrap)."""
    ec2 = aws.client("ec2", region=REGION)
    user_data = base64.b64decode(ec2.describe_instance_attribute(
        InstanceId=iid, Attribute="userData")["UserData"]["Value"]).decode()
    assert user_data.startswith("#!/bin/sh")
    box = tmp_path / iid
    (box / "bin").mkdir(parents=True)
    stub = box / "bin" / "shutdown"                  # never the host's: the instance "shuts down"
    stub.write_text(f"#!/bin/sh\necho \"$@\" >> {box / 'shutdown.log'}\n")
    stub.chmod(0o755)
    (box / "user-data").write_text(user_data)
    env = {**os.environ, "PATH": f"{box / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "PROVISIONER_IMDS_URL": "", "PROVISIONER_INSTANCE_ID": iid,
           "PROVISIONER_STATE_DIR": str(box / "state"), "PROVISIONER_AGENT_JAR": str(emu.agent_jar()),
           "PROVISIONER_WATCH_INTERVAL_S": "0.3"}
    log = open(box / "console.log", "wb")
    return subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh",
                             str(box / "user-data")], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def config(emu_url: str, owner: str, work: Path):
    return parse_config(
        f"jenkins:\n  url: {emu_url}\n  user: {ADMIN[0]}\n"
        f"daemon:\n  owner_id: {owner}\n  interval_s: 0.3\n  listen: 127.0.0.1:0\n  boot_timeout_s: 120\n"
        f"  orphan_grace_s: 60\n  lease_ttl_s: 10\n  remote_fs: {work}\n"
        f"labels:\n  '{LABEL}':\n    reuse: {{idle: 2m, max_builds: 3}}\n", "reuse-ec2.yaml")


@needs_unshare
def test_reuse_on_ec2_serves_three_builds_on_one_instance_through_its_ssm_next_bundle(
        emu, moto_env, ec2_moto_url, ec2_settings, start_daemon, tmp_path):  # noqa: F811
    from provisioner.history import open_store
    owner = "reuseec2"
    cloud = ec2_cloud(ec2_moto_url, ec2_settings)
    d = start_daemon(config(emu.url, owner, tmp_path / "agent"), cloud, ADMIN[1], owner=owner)
    ssm = aws.client("ssm", region=REGION)
    emu.create_job("train", label=LABEL, script=SCRIPT)
    proc = None
    try:
        emu.schedule("train", params={"N": "1"})
        [iid] = emu.wait_for(lambda: [i for i, v in instances(owner).items()
                                      if v["tags"].get("provisioner:node")], timeout=30)
        inst = instances(owner)[iid]
        node = inst["tags"]["provisioner:node"]
        emu.wait_for(lambda: [p for p in ssm.describe_parameters()["Parameters"]
                              if p["Name"] == f"/provisioner/agents/{iid}"], timeout=30)
        first = json.loads(ssm.get_parameter(Name=f"/provisioner/agents/{iid}", WithDecryption=True)
                           ["Parameter"]["Value"])
        assert first["reuse"] == "1" and first["node_name"] == inst["tags"]["provisioner:node"]
        proc = boot(iid, emu, tmp_path)
        emu.wait_for(lambda: finished(emu, "train", 1), timeout=120)
        keeper = d.daemon.pools.reuse
        for n in (2, 3):
            # the agent waits for its job's next build (a build queued while the daemon still saw the
            # last one running gets a new agent: reuse is taken when it is there, never waited for),
            # so the next build is queued once a whole tick has begun after the last build ended
            emu.wait_for(lambda: keeper._agents.get(node, {}).get("phase") == "waiting"
                         and keeper._agents[node]["builds"] == n - 1, timeout=60)
            ticks = d.daemon._ticks
            emu.wait_for(lambda: d.daemon._ticks >= ticks + 2, timeout=30)
            emu.schedule("train", params={"N": str(n)})
            emu.wait_for(lambda: finished(emu, "train", n), timeout=120)
        console = (tmp_path / iid / "console.log").read_text(errors="replace")
        builds = emu.builds("train")[:3]
        assert [b["result"] for b in builds] == ["SUCCESS"] * 3, ([b["console"][-600:] for b in builds], console[-3000:])
        assert len({b["node"] for b in builds}) == 1 and builds[0]["node"] == inst["tags"]["provisioner:node"]
        assert list(instances(owner)) == [iid], "one instance served all three builds"
        assert console.count("the next build of this job was handed over") == 2, console[-3000:]
        # max_builds 3: retired after its third build, its parameters gone
        emu.wait_for(lambda: not ours(emu), timeout=60)
        emu.wait_for(lambda: instances(owner)[iid]["State"]["Name"] in ("shutting-down", "terminated"), timeout=30)
        left = ssm.describe_parameters()["Parameters"]
        assert not [p for p in left if iid in p["Name"]], left
        reg = d.daemon.metrics.registry
        assert reg.get_sample_value("provisioner_agent_reuses_total") == 2
        with open_store(str(tmp_path / "history.sqlite3")) as store:
            recs = store.runs("train")
        assert sorted(r["build"] for r in recs) == sorted(str(b["number"]) for b in builds), recs
        assert {r["node"] for r in recs} == {builds[0]["node"]}
        data = aws.client("ec2", region=REGION).describe_instance_attribute(InstanceId=iid, Attribute="userData")
        text = base64.b64decode(data["UserData"]["Value"]).decode()
        assert emu.secret(builds[0]["node"]) not in text and emu.secret(builds[0]["node"]) not in json.dumps(inst, default=str)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_the_ssm_handover_replaces_an_untaken_bundle_and_the_instance_side_reads_and_deletes_it(
        moto_env, tmp_path):
    """The daemon's SsmHandover and the instance's NextBuild/recycle hand-off against moto's SSM."""
    from provisioner import secret_bundle
    from provisioner.agent import nextbuild
    from provisioner.clouds.base import Instance
    from provisioner.clouds.ec2_nextbuild import SsmHandover
    ssm = aws.client("ssm", region=REGION)
    inst = Instance("i-0123456789abcdef0", "c5.large", "on-demand", REGION, "running", 0.0)
    handover = SsmHandover(lambda region: aws.client("ssm", region=region), lambda: "123456789012")
    poll = nextbuild.NextBuild(inst.id, tmp_path, lambda: ssm, out=lambda line: None)
    assert not poll.poll() and not (tmp_path / "next-bundle").exists()      # nothing handed over yet
    handover.recycle(inst, secret_bundle.encode(secret_bundle.make_bundle(report_token="first", node_name="n")))
    handover.recycle(inst, secret_bundle.encode(secret_bundle.make_bundle(report_token="second", node_name="n")))
    name = "/provisioner/agents/i-0123456789abcdef0.next"
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
    assert tags == [{"Key": "provisioner:instance-arn",
                     "Value": f"arn:aws:ec2:{REGION}:123456789012:instance/{inst.id}"}]
    assert ssm.get_parameter(Name=name)["Parameter"]["Type"] == "SecureString"
    assert not handover.recycled(inst)
    assert poll.poll()                                                       # the later one, not the first
    assert json.loads((tmp_path / "next-bundle").read_text())["report_token"] == "second"
    assert (tmp_path / "next-bundle").stat().st_mode & 0o777 == 0o600
    assert not handover.recycled(inst), "read is not taken: the old agent may still run"
    nextbuild.done(tmp_path, {"PROVISIONER_REGION": REGION})                # the recycle's last step
    assert handover.recycled(inst) and not (tmp_path / "next-bundle.parameter").exists()
    assert nextbuild.NextBuild.from_env({"PROVISIONER_INSTANCE_ID": inst.id}, tmp_path, print) is None
