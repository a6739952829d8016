"""The docker cloud against the real engine: limits clamped to the host and recorded, labels,
hostname, Docker socket, user-data as the entrypoint, idempotent launch, describe by owner,
terminate (builds included), blocked offers and a missing image as clear errors."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from provisioner.catalog.model import ON_DEMAND, SPOT
from provisioner.clouds.base import BlockedOffers, CloudError, LaunchSpec
from provisioner.clouds.docker import (USER_DATA_PATH, DockerCloud, DockerSettings, clamp, container_params,
                                       instance_id_for)
from tests.factories import offer
from tests.images import busybox_image

GIB = 1024 ** 3
SCRIPT = "#!/bin/sh\necho booted on $(hostname) cpus=$PROVISIONER_CPUS secret=${PROVISIONER_SECRETS:+set}\nexec sleep 30\n"


def spec(owner: str, *candidates, token: str | None = None, **kw) -> LaunchSpec:
    return LaunchSpec(candidates=candidates or (offer("r5.xlarge", vcpu=4, mem=32, market=SPOT, price=0.08),),
                      user_data=SCRIPT, tags={"provisioner:owner": owner, "provisioner:job": "train",
                                              "provisioner:expires-at": "2030-01-01T00:00:00Z"},
                      client_token=token or str(uuid.uuid4()), secret_env={"PROVISIONER_SECRETS": "{}"}, **kw)


def test_clamp_records_what_was_cut():
    assert clamp(offer(vcpu=2, mem=8), 4, 16) == (2.0, 8.0, "")
    assert clamp(offer(vcpu=8, mem=64), 2, 7.5) == (2.0, 7.5, "cpus 8->2, memory-gib 64->7.5")


def test_container_params_are_the_contract():
    s = spec("o-1", offer("m5.2xlarge", vcpu=8, mem=32, price=0.38))
    p = container_params(s, s.candidates[0], DockerSettings(instance_image="agent:1"), host_cpus=2,
                         host_mem_gib=4, instance_id="i-0123", launched_at=1700000000.0)
    assert p["image"] == "agent:1" and p["name"] == p["hostname"] == "i-0123"
    assert p["entrypoint"] == ["/bin/sh", USER_DATA_PATH] and p["init"] is True
    assert p["nano_cpus"] == 2 * 10 ** 9 and p["mem_limit"] == p["memswap_limit"] == 4 * GIB
    assert p["network_mode"] == "host"
    assert p["volumes"] == {"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}}
    assert p["labels"]["provisioner:owner"] == "o-1" and p["labels"]["provisioner:kind"] == "instance"
    assert p["labels"]["provisioner:clamped"] == "cpus 8->2, memory-gib 32->4"
    assert p["labels"]["provisioner:instance-type"] == "m5.2xlarge" and p["labels"]["provisioner:price"] == "0.38"
    assert p["environment"] == {"PROVISIONER_SECRETS": "{}", "PROVISIONER_CLOUD": "docker",
                                "PROVISIONER_INSTANCE_ID": "i-0123", "PROVISIONER_CPUS": "2",
                                "PROVISIONER_MEMORY": str(4 * GIB), "PROVISIONER_IMDS_URL": ""}
    assert SCRIPT not in repr(p)                      # the user-data is a file, not an argument


@pytest.fixture
def cloud(docker_client):
    image = busybox_image(docker_client)
    c = DockerCloud(docker_client, DockerSettings(instance_image=image, host_cpus=2, host_mem_gib=3,
                                                  gc_after_s=0))
    yield c
    for container in docker_client.containers.list(all=True, sparse=True, filters={"label": "provisioner:kind=instance"}):
        if (container.attrs.get("Labels") or {}).get("provisioner:owner", "").startswith("dc-test-"):
            container.remove(force=True)


@pytest.mark.docker
def test_launch_runs_the_user_data_within_clamped_limits(cloud, docker_client):
    owner = f"dc-test-{uuid.uuid4().hex[:8]}"
    inst = cloud.launch(spec(owner))
    assert inst.id.startswith("i-") and inst.state == "running" and inst.instance_type == "r5.xlarge"
    assert inst.market == SPOT and inst.tag("owner") == owner and inst.tag("clamped") == "cpus 4->2, memory-gib 32->3"
    c = docker_client.containers.get(inst.id)
    host = c.attrs["HostConfig"]
    assert host["NanoCpus"] == 2 * 10 ** 9 and host["Memory"] == 3 * GIB
    assert "/var/run/docker.sock:/var/run/docker.sock:rw" in host["Binds"]
    for _ in range(50):
        if b"booted" in c.logs():
            break
        import time
        time.sleep(0.1)
    assert c.logs().decode().strip() == f"booted on {inst.id} cpus=2 secret=set"
    assert [i.id for i in cloud.describe(owner)] == [inst.id]
    assert cloud.describe("someone-else") == []
    cloud.terminate([inst.id])
    assert cloud.describe(owner) == []
    cloud.terminate([inst.id])                        # already gone: fine


@pytest.mark.docker
def test_same_client_token_launches_once(cloud):
    owner = f"dc-test-{uuid.uuid4().hex[:8]}"
    first = cloud.launch(spec(owner, token=f"tok-{owner}"))
    again = cloud.launch(spec(owner, token=f"tok-{owner}"))
    assert again.id == first.id == instance_id_for(f"tok-{owner}")
    assert len(cloud.describe(owner)) == 1


@pytest.mark.docker
def test_terminate_removes_the_builds_the_instance_started(cloud, docker_client):
    owner = f"dc-test-{uuid.uuid4().hex[:8]}"
    inst = cloud.launch(spec(owner))
    image = busybox_image(docker_client)
    build = docker_client.containers.run(image, ["sleep", "30"], detach=True, network_mode="none",
                                         labels={"provisioner:kind": "run", "provisioner:owner": f"{inst.id}:42"})
    unrelated = docker_client.containers.run(image, ["sleep", "30"], detach=True, network_mode="none",
                                             labels={"provisioner:kind": "run", "provisioner:owner": "otherhost:42"})
    try:
        cloud.terminate([inst.id])
        names = {c.id for c in docker_client.containers.list(all=True, sparse=True)}
        assert build.id not in names and unrelated.id in names
    finally:
        unrelated.remove(force=True)


@pytest.mark.docker
def test_an_exited_instance_is_terminated_and_collected(cloud, docker_client):
    owner = f"dc-test-{uuid.uuid4().hex[:8]}"
    s = spec(owner)
    inst = cloud.launch(LaunchSpec(candidates=s.candidates, user_data="#!/bin/sh\nexit 4\n", tags=s.tags,
                                   client_token=s.client_token))
    assert docker_client.containers.get(inst.id).wait(timeout=10)["StatusCode"] == 4
    assert cloud.describe(owner) == []                # exited = terminated; gc_after_s=0 removes it
    assert not docker_client.containers.list(all=True, sparse=True, filters={"name": inst.id})


@pytest.mark.docker
def test_a_remote_runs_exited_instance_is_kept_for_its_retention(cloud, docker_client):
    owner = f"dc-test-{uuid.uuid4().hex[:8]}"
    s = spec(owner)
    tags = dict(s.tags, **{"provisioner:run-id": "run-1"})
    inst = cloud.launch(LaunchSpec(candidates=s.candidates, user_data="#!/bin/sh\nexit 0\n", tags=tags,
                                   client_token=s.client_token))
    docker_client.containers.get(inst.id).wait(timeout=10)
    assert cloud.describe(owner) == []                # terminated, but its logs and record stay
    assert docker_client.containers.list(all=True, sparse=True, filters={"name": inst.id})
    short = DockerCloud(docker_client, replace(cloud.settings, retention_s=0.001))
    short.describe(owner)
    assert not docker_client.containers.list(all=True, sparse=True, filters={"name": inst.id})


@pytest.mark.docker
def test_first_unblocked_candidate_is_used_and_all_blocked_is_an_error(cloud):
    owner = f"dc-test-{uuid.uuid4().hex[:8]}"
    a, b = offer("c5.large", market=SPOT), offer("m5.large", market=ON_DEMAND)
    cloud.blocked = BlockedOffers()
    cloud.blocked.block(a.key)
    assert cloud.launch(spec(owner, a, b)).instance_type == "m5.large"
    cloud.blocked.block(b.key)
    with pytest.raises(CloudError, match="every candidate offer is blocked") as info:
        cloud.launch(spec(owner, a, b))
    assert info.value.code == "AllOffersBlocked" and info.value.kind == "capacity"
    with pytest.raises(CloudError, match="blocked"):
        cloud.launch(spec(owner, b, spot_only=True))   # spot-only: the on-demand offer is not a fallback


@pytest.mark.docker
def test_missing_instance_image_and_owner_are_clear_errors(docker_client):
    cloud = DockerCloud(docker_client, DockerSettings(instance_image="provisioner-agent:does-not-exist"))
    with pytest.raises(CloudError, match="instance image provisioner-agent:does-not-exist is not on this engine"):
        cloud.launch(spec(f"dc-test-{uuid.uuid4().hex[:8]}"))
    bad = LaunchSpec(candidates=(offer(),), user_data="", tags={}, client_token="x")
    with pytest.raises(CloudError, match="no provisioner:owner tag"):
        cloud.launch(bad)


KILLED_LAUNCH = """
import sys, uuid
from provisioner.clouds.docker import DockerCloud, DockerSettings
from tests.clouds.test_docker_cloud import spec
owner, token, image = sys.argv[1:4]
DockerCloud(settings=DockerSettings(instance_image=image, host_cpus=2, host_mem_gib=3)).launch(spec(owner, token=token))
print("launched")
"""


@pytest.mark.docker
@pytest.mark.parametrize("step", ["docker.created", "docker.copied"])
def test_a_launch_killed_between_its_steps_is_removed_by_the_next_describe_and_relaunched(
        cloud, docker_client, step):
    """SIGKILL between create, copy and start (the kill point hook): the `created` container would
    never boot. The next describe (another process: the restarted daemon) removes it, and the launch
    with the same token makes a running instance of the same id."""
    import os
    import signal
    import subprocess
    import sys
    from tests.conftest import ROOT
    owner = f"dc-test-{uuid.uuid4().hex[:8]}"
    token = f"tok-{owner}"
    done = subprocess.run([sys.executable, "-c", KILLED_LAUNCH, owner, token, cloud.settings.instance_image],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "PROVISIONER_KILL_AT": step},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL and "launched" not in done.stdout, done.stderr
    [left] = docker_client.containers.list(all=True, filters={"label": f"provisioner:owner={owner}"})
    assert left.status == "created" and left.name == instance_id_for(token)
    assert cloud.describe(owner) == []                                  # removed, not "booting"
    assert docker_client.containers.list(all=True, filters={"label": f"provisioner:owner={owner}"}) == []
    inst = cloud.launch(spec(owner, token=token))
    assert inst.id == instance_id_for(token) and inst.state == "running"
    assert [i.id for i in cloud.describe(owner)] == [inst.id]


@pytest.mark.docker
def test_a_container_another_live_process_is_still_launching_is_left_alone(cloud, docker_client):
    """Two CLI processes share an owner: one's describe must not remove the other's launch in progress."""
    from provisioner.clouds.docker import LAUNCHER_LABEL, launcher_id
    owner = f"dc-test-{uuid.uuid4().hex[:8]}"
    s = spec(owner)
    params = container_params(s, s.candidates[0], cloud.settings, host_cpus=2, host_mem_gib=3,
                              instance_id=instance_id_for(s.client_token), launched_at=0.0)
    params["labels"][LAUNCHER_LABEL] = launcher_id(1)                  # pid 1 lives (this host)
    docker_client.containers.create(**params)
    [inst] = cloud.describe(owner)
    assert inst.state == "pending"


def test_an_exited_agent_is_kept_until_ended_reports_it_with_exit_code_and_log(cloud, docker_client):
    """Even with no garbage-collection grace, an exited instance stays until the daemon has read its
    exit code and log tail (`ended`), once; then the usual collection removes it."""
    owner = f"dc-test-{uuid.uuid4().hex[:6]}"
    cloud.ended(owner)                                  # a daemon watches this cloud from now on
    s = replace(spec(owner), user_data="#!/bin/sh\necho starting >&2\necho 'sh: java: not found' >&2\nexit 127\n",
                tags={**spec(owner).tags, "provisioner:node": "prov-x-q1", "provisioner:boot-config": "cfg"})
    inst = cloud.launch(s)
    docker_client.containers.get(inst.id).wait(timeout=30)
    assert cloud.describe(owner) == []                  # exited: not a live instance
    [e] = cloud.ended(owner)
    assert (e.instance, e.node, e.exit_code, e.code, e.config) == (inst.id, "prov-x-q1", 127, "agent-exited", "cfg")
    assert e.image == docker_client.images.get(cloud.settings.instance_image).id == cloud.image_identity()
    assert e.log_tail[-2:] == ("starting", "sh: java: not found")   # one stream: the order across two is not kept
    assert e.offer == ("r5.xlarge", "us-east-1", "spot")
    cloud.describe(owner)
    assert cloud.ended(owner) == []                     # reported once
    cloud.describe(owner)                               # now collected as before
    assert not docker_client.containers.list(all=True, sparse=True, filters={"label": f"provisioner:owner={owner}"})
