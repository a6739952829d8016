"""Pytest plugin: one moto server per test session (tests/conftest.py lists this in pytest_plugins).

- `moto_server`: the running `MotoServer` (session scope).
- `moto_url`: its URL, e.g. http://127.0.0.1:41234 (session scope).
- `moto_env`: per test: resets moto's state and sets PROVISIONER_AWS_ENDPOINT_URL, dummy credentials,
  a region and low botocore retries in the environment, so code under test that builds its clients
  through `provisioner.aws` talks to moto. Returns the URL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provisioner import aws
from tests.moto_server import DUMMY_CREDENTIALS, MotoServer


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_url(moto_server: MotoServer) -> str:
    assert moto_server.url is not None
    return moto_server.url


@pytest.fixture
def moto_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    moto_server.reset()
    for key, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(aws.ENDPOINT_ENV, moto_server.url or "")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv(aws.MAX_ATTEMPTS_ENV, "2")  # moto's 500s are retried slowly otherwise
    return moto_server.url or ""
