"""The docker fixtures of tests/remote (engine, images) are shared here."""

from tests.remote.conftest import agent_image  # noqa: F401  (docker_client, pyimage: tests/conftest_docker.py)
