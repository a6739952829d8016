"""The engine interface of engine.py over the docker SDK: for a DOCKER_HOST that is not a unix
socket (tcp://, ssh://, TLS), for pulls (registry credentials), and for callers holding a
`docker.DockerClient`. The SDK's exceptions become engine.py's."""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator, Mapping

import docker.errors
import requests.exceptions
import urllib3.exceptions

from provisioner.runner.engine_errors import (DISTRIBUTION_TIMEOUT_S, EngineError, EngineTimeout,
                                              NotFound, Unreachable)


@contextlib.contextmanager
def sdk_errors() -> Iterator[None]:
    """docker SDK and requests exceptions -> NotFound, EngineError, Unreachable, EngineTimeout."""
    try:
        yield
    except docker.errors.NotFound as exc:
        raise NotFound(str(exc.explanation or exc), 404) from None
    except docker.errors.APIError as exc:
        raise EngineError(str(exc.explanation or exc), exc.status_code) from None
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectTimeout) as exc:
        raise EngineTimeout(f"the Docker engine did not answer in time: {exc}") from None
    except requests.exceptions.ConnectionError as exc:
        if any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args):
            raise EngineTimeout(f"the Docker engine did not answer in time: {exc}") from None
        raise Unreachable(str(exc)) from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineError(str(exc)) from None


def within(timeout: float, call: Callable[[], Any]) -> Any:
    """`call()`'s answer, or EngineTimeout when it takes longer than `timeout` (it is left running
    on a daemon thread: the SDK's calls take no timeout of their own)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            with sdk_errors():
                outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="engine-call", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise EngineTimeout(f"the Docker engine did not answer within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class SdkEngine:
    """engine.UnixEngine's calls over a `docker.DockerClient`."""

    def __init__(self, client: Any):
        self.client, self.api = client, client.api

    def __repr__(self) -> str:
        return f"SdkEngine({self.api.base_url})"

    def ping(self) -> None:
        with sdk_errors():
            self.api.ping()

    def list_containers(self, label: str) -> list[dict]:
        with sdk_errors():
            return self.api.containers(all=True, filters={"label": label})

    def inspect_image(self, ref: str, timeout: float | None = None) -> dict:
        if timeout is not None:
            return within(timeout, lambda: self.api.inspect_image(ref))
        with sdk_errors():
            return self.api.inspect_image(ref)

    def distribution(self, ref: str, auth_config: dict | None = None,
                     timeout: float = DISTRIBUTION_TIMEOUT_S) -> dict:
        return within(timeout, lambda: self.api.inspect_distribution(ref, auth_config=auth_config))

    def pull_image(self, repo: str, tag: str | None, auth_config: dict | None = None, progress: Any = None) -> None:
        """`progress` (pull_progress.PullProgress) gets the engine's pull events: layers and bytes."""
        with sdk_errors():
            if progress is None:
                self.client.images.pull(repo, tag=tag, auth_config=auth_config)
                return
            from provisioner.runner.pull_progress import consume
            stream = self.api.pull(repo, tag=tag, auth_config=auth_config, stream=True, decode=True)
            try:
                consume(stream, progress)
            except RuntimeError as exc:
                raise EngineError(str(exc)) from None

    def create_container(self, create_kwargs: Mapping[str, Any]) -> str:
        with sdk_errors():
            return self.client.containers.create(**create_kwargs).id

    def attach(self, cid: str, tty: bool = False) -> Any:
        with sdk_errors():
            return self.api.attach(cid, stream=True, logs=True, demux=True)

    def start(self, cid: str) -> None:
        with sdk_errors():
            self.api.start(cid)

    def wait(self, cid: str, timeout: float | None = None) -> dict:
        with sdk_errors():
            return self.api.wait(cid, timeout=timeout)

    def stats(self, cid: str, stream: bool = True, decode: bool = True) -> Any:
        with sdk_errors():
            return self.api.stats(cid, stream=stream, decode=decode)

    def kill(self, cid: str, signal: str = "SIGKILL") -> None:
        with sdk_errors():
            self.api.kill(cid, signal=signal)

    def inspect_container(self, cid: str) -> dict:
        with sdk_errors():
            return self.api.inspect_container(cid)

    def remove_container(self, cid: str, force: bool = True) -> None:
        with sdk_errors():
            self.api.remove_container(cid, force=force)
