"""Fixtures for the docker cloud, the bootstrap in containers and `run --remote`: the real engine,
the local test images, the instance image built from them, and a config that uses it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.images import busybox_image

AGENT_TAG = "provisioner-agent:test"
HANGING_TAG = "provisioner-test/never-ready:2"


@pytest.fixture(scope="session")
def agent_image(docker_client: Any, pyimage: str) -> str:
    """provisioner-agent built from the local python image (rebuilt only when the sources change)."""
    from provisioner.clouds.docker_image import build_agent_image
    return build_agent_image(docker_client, base=pyimage, tag=AGENT_TAG)


@pytest.fixture(scope="session")
def never_ready_image(docker_client: Any) -> str:
    """An instance image whose provisioner-agent hangs: the bootstrap never gets to its ready line."""
    import io
    import tarfile
    base = busybox_image(docker_client)
    script = b"#!/bin/sh\nexec sleep 3600\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        dockerfile = f"FROM {base}\nCOPY provisioner-agent /usr/local/bin/provisioner-agent\n".encode()
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        info = tarfile.TarInfo("provisioner-agent")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    docker_client.images.build(fileobj=io.BytesIO(buf.getvalue()), custom_context=True, tag=HANGING_TAG, rm=True)
    return HANGING_TAG


def write_config(path: Path, image: str, boot_timeout_s: float = 60) -> Path:
    path.write_text(f"docker:\n  instance_image: {image}\n  host_cpus: 2\n  host_mem_gib: 4\n"
                    f"daemon:\n  boot_timeout_s: {boot_timeout_s}\n")
    return path


def instances_of(client: Any, job: str) -> list:
    """Instance containers of this job, and build containers: whatever a test could leave behind."""
    return client.containers.list(all=True, sparse=True, filters={"label": f"provisioner:job={job}"})


def unique_job() -> str:
    return f"remote-test-{uuid.uuid4().hex[:8]}"
