"""The docker fixtures of tests/remote (engine, images) are shared here."""

from tests.remote.conftest import agent_image, docker_client, pyimage  # noqa: F401
