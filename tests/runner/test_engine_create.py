"""The unix-socket engine's create request is the JSON the docker SDK would send for the same
`containers.create` keyword arguments (the SDK's translation, captured without an engine)."""

from __future__ import annotations

import json

import docker
import pytest
from docker.models.containers import _create_container_args

from provisioner.runner.docker_args import SUPPORTED, parse_extra_args
from provisioner.runner.engine import EngineError, UnixEngine
from provisioner.runner.engine_create import create_request, parse_bytes, proxy_environment
from provisioner.runner.spec import ContainerSpec

SYSTEM = {"provisioner:kind": "run", "provisioner:owner": "host:1"}


def sdk_request(kwargs: dict) -> tuple[dict, dict]:
    """(query, body) the SDK posts for `client.containers.create(**kwargs)`."""
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    sent: dict = {}

    def capture(config, name=None, platform=None):
        sent.update(config=config, name=name, platform=platform)
        return {"Id": "x"}
    api.create_container_from_config = capture
    api.create_container(**_create_container_args(dict(kwargs, version="1.41")))
    query = {k: sent[k] for k in ("name", "platform") if sent[k]}
    body = {k: v for k, v in sent["config"].items() if v is not None}  # as the SDK's _post_json
    return query, json.loads(json.dumps(body))


def ours(kwargs: dict, environ: dict) -> tuple[dict, dict]:
    query, body = create_request(kwargs, proxy_environment(environ))
    return query, json.loads(json.dumps(body))


@pytest.fixture
def no_proxies(tmp_path, monkeypatch) -> dict:
    """A docker client config without proxies, for both sides."""
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    return {"DOCKER_CONFIG": str(tmp_path)}


# One spec per supported `--docker-args` parameter, plus the run options of the golden spec.
EXTRA = {
    "--shm-size": "--shm-size 1g", "--ulimit": "--ulimit nofile=1024:2048 --ulimit nproc=64",
    "--cap-add": "--cap-add SYS_PTRACE", "--cap-drop": "--cap-drop ALL",
    "--device": "--device /dev/fuse --device /dev/a:/dev/b:r", "--tmpfs": "--tmpfs /run:size=64m",
    "--add-host": "--add-host db:10.0.0.2 --add-host a:10.0.0.1",
    "--security-opt": "--security-opt no-new-privileges", "--pids-limit": "--pids-limit 100",
    "--hostname": "--hostname box", "--ipc": "--ipc host", "--read-only": "--read-only",
    "--privileged": "--privileged", "--entrypoint": "--entrypoint '/bin/sh -c'",
    "--memory-swap": "--memory-swap 2g", "--memory-reservation": "--memory-reservation 512m",
    "--cpuset-cpus": "--cpuset-cpus 0-1", "--cpu-shares": "--cpu-shares 512",
    "--sysctl": "--sysctl net.core.somaxconn=1024", "--group-add": "--group-add 1000",
    "--stop-signal": "--stop-signal SIGINT", "--platform": "--platform linux/amd64",
    "--label": "--label a=b",
}


def test_every_supported_parameter_has_a_case():
    assert set(EXTRA) == set(SUPPORTED)


@pytest.mark.parametrize("extra", list(EXTRA.values()), ids=list(EXTRA))
def test_docker_args_match_the_sdk(extra, no_proxies):
    kwargs = ContainerSpec(image="img:1", command=("true",),
                           extra=parse_extra_args([extra])).create_kwargs("RUN", SYSTEM)
    assert ours(kwargs, no_proxies) == sdk_request(kwargs)


@pytest.mark.parametrize("spec", [
    ContainerSpec(image="img"),
    ContainerSpec(image="img:1", command=("python", "x.py"), env={"A": "1", "EMPTY": ""},
                  volumes=("/data:/data:ro", "/a:/b", "named:/c:rw"), workdir="/w", user="1000:1000",
                  gpus="device=0,1", memory_bytes=512 * 1024 * 1024, cpus=1.5, network="bridge",
                  name="mine", labels={"team": "ds"}),
    ContainerSpec(image="img", gpus="all"),
    ContainerSpec(image="img", gpus="2", network="host"),
], ids=["minimal", "everything", "gpus-all", "gpus-count"])
def test_run_options_match_the_sdk(spec, no_proxies):
    kwargs = spec.create_kwargs("RUN", SYSTEM)
    assert ours(kwargs, no_proxies) == sdk_request(kwargs)


def test_proxies_from_the_docker_client_config_come_first(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"proxies": {"default": {
        "httpProxy": "http://proxy:3128", "noProxy": "localhost"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    kwargs = ContainerSpec(image="img", env={"HTTP_PROXY": "mine"}).create_kwargs("RUN", SYSTEM)
    query, body = ours(kwargs, {"DOCKER_CONFIG": str(tmp_path)})
    assert (query, body) == sdk_request(kwargs)
    assert body["Env"][:4] == ["http_proxy=http://proxy:3128", "HTTP_PROXY=http://proxy:3128",
                               "no_proxy=localhost", "NO_PROXY=localhost"]
    assert body["Env"][-2:] == ["HTTP_PROXY=mine", "BUILD_TAG=RUN"]  # the job's own value wins


def test_unreadable_client_config_means_no_proxies(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    assert proxy_environment({"DOCKER_CONFIG": str(tmp_path)}) == {}


@pytest.mark.parametrize("text, value", [("512", 512), ("64m", 64 * 2 ** 20), ("1g", 2 ** 30),
                                         ("1gb", 2 ** 30), ("2K", 2048), ("1.5m", 1572864)])
def test_parse_bytes_as_the_sdk(text, value):
    assert parse_bytes(text) == value == docker.utils.parse_bytes(text)


def test_a_value_the_sdk_refuses_is_refused_before_the_engine(tmp_path):
    kwargs = ContainerSpec(image="img", extra=parse_extra_args(["--shm-size lots"])).create_kwargs("R", {})
    with pytest.raises(docker.errors.DockerException) as sdk:
        sdk_request(kwargs)
    engine = UnixEngine(str(tmp_path / "never-used.sock"))
    with pytest.raises(EngineError) as exc:
        engine.create_container(kwargs)
    assert str(exc.value) == str(sdk.value)


def test_unknown_argument_is_a_programming_error():
    with pytest.raises(TypeError, match="ports"):
        create_request({"image": "i", "ports": {80: 80}})
