"""Pytest plugin: the real Docker engine and the local test images, once per session
(tests/conftest.py lists this in pytest_plugins). scripts/test starts an engine when none answers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.images import busybox_image, python_image


@pytest.fixture(scope="session")
def docker_client() -> Any:
    import docker
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.fail(f"no Docker engine answers ({exc}); scripts/test starts one")
    return client


@pytest.fixture(scope="session")
def busybox(docker_client: Any) -> str:
    """A busybox image built locally with `docker import` (no registry)."""
    return busybox_image(docker_client)


@pytest.fixture(scope="session")
def pyimage(docker_client: Any) -> str:
    """Debian's python3.11 as an image, built locally."""
    return python_image(docker_client)
