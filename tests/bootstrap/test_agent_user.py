"""On an image with a `jenkins` user (the pre-warmed AMI has one), agent.jar and so every build run
as that user, never root: the real rendered agent script in a real container whose `java` is a
stand-in that reports who it runs as. Without such a user (the docker cloud's instance image) the
agent runs as the container's user, as the other bootstrap tests show."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from provisioner import secret_bundle
from provisioner.bootstrap import BootstrapSpec, render_user_data
from tests.factories import offer

pytestmark = pytest.mark.docker
TAG = "provisioner-test/agent-with-jenkins-user:1"
JAVA = """#!/bin/sh
# the stand-in for java: who runs the agent, with which secret and jar
secret=""; while [ $# -gt 0 ]; do case "$1" in -secret) secret="${2#@}"; shift ;; -jar) jar="$2"; shift ;; esac; shift; done
{ id -u; id -G; echo "$HOME"; cat "$secret"; echo; echo "$jar"; ls -ln "$secret" | cut -c1-10; } > /out/agent 2>/out/errors
"""


def _file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def image(docker_client: Any, agent_image: str) -> str:
    """The test agent image plus a jenkins user (uid 1000, in group docker), setpriv and a fake java."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _file(tar, "Dockerfile", f"FROM {agent_image}\nCOPY root/ /\n".encode())
        _file(tar, "root/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                                      b"jenkins:x:1000:1000:jenkins:/home/jenkins:/bin/sh\n")
        _file(tar, "root/etc/group", b"root:x:0:\njenkins:x:1000:\ndocker:x:998:jenkins\n")
        _file(tar, "root/usr/local/bin/java", JAVA.encode(), 0o755)
        _file(tar, "root/usr/share/provisioner/agent.jar", b"PK-not-really")
        for path in ("/usr/bin/setpriv", "/lib/x86_64-linux-gnu/libcap-ng.so.0"):
            if not Path(path).exists():
                pytest.skip(f"{path} is not on this machine (Debian's util-linux, libcap-ng0)")
            real = Path(path).resolve()
            _file(tar, f"root{path}", real.read_bytes(), 0o755)
        info = tarfile.TarInfo("root/home/jenkins")
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, 1000, 1000
        tar.addfile(info)
    docker_client.images.build(fileobj=io.BytesIO(buf.getvalue()), custom_context=True, tag=TAG, rm=True)
    return TAG


def test_the_agent_runs_as_jenkins_with_its_own_copy_of_the_secret(docker_client, image, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    spec = BootstrapSpec(run_id="", expires_at="2030-01-01T00:00:00Z", jenkins_url="http://127.0.0.1:9/")
    script = render_user_data("agent", offer(), spec, "docker")
    bundle = secret_bundle.make_bundle(agent_secret="s3cr3t-agent", report_url="http://127.0.0.1:9",
                                 report_token="tok", node_name="prov-t-q1", run_id="prov-t-q1")
    env = {"PROVISIONER_CLOUD": "docker", "PROVISIONER_IMDS_URL": "",
           "PROVISIONER_SECRETS": secret_bundle.encode(bundle)}
    logs = docker_client.containers.run(image, ["sh", "-c", script], environment=env, network_mode="none",
                                        volumes={str(out): {"bind": "/out", "mode": "rw"}}, remove=True,
                                        stdout=True, stderr=True)
    uid, groups, home, secret, jar, mode = (out / "agent").read_text().splitlines()
    assert uid == "1000" and "998" in groups.split(), logs           # jenkins, in the docker group
    assert home == "/home/jenkins" and secret == "s3cr3t-agent"
    assert jar == "/run/provisioner-agent/agent.jar" and mode == "-r--------"
