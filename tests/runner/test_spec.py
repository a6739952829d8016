"""ContainerSpec and its parsing: SDK arguments (golden), the masked docker run line, env files,
volumes, labels, GPUs, and the extra docker parameters."""

from __future__ import annotations

import pytest
from docker.types import DeviceRequest, Ulimit

from provisioner.errors import UsageError
from provisioner.runner import LaunchError
from provisioner.runner.docker_args import parse_extra_args
from provisioner.runner.spec import (ContainerSpec, gpu_selection, parse_env_args, parse_gpus,
                                     parse_label, parse_volume, read_env_file)

SYSTEM = {"provisioner:kind": "run", "provisioner:owner": "host:1"}


def test_create_kwargs_golden():
    spec = ContainerSpec(image="img:1", command=("python", "x.py"), env={"A": "1"},
                         volumes=("/data:/data:ro",), workdir="/w", user="1000", gpus="device=0,1",
                         memory_bytes=512 * 1024 * 1024, cpus=1.5, network="none",
                         labels={"team": "ds"},
                         extra=parse_extra_args(["--shm-size 1g --ulimit nofile=1024:2048 -l x=y"]))
    assert spec.create_kwargs("RUN", SYSTEM) == {
        "image": "img:1", "command": ["python", "x.py"], "name": "RUN",
        "environment": {"A": "1", "BUILD_TAG": "RUN"},
        "labels": {"x": "y", "team": "ds", **SYSTEM},
        "init": True, "network_mode": "none", "stdin_open": False, "tty": False,
        "volumes": ["/data:/data:ro"], "working_dir": "/w", "user": "1000",
        "mem_limit": 536870912, "nano_cpus": 1_500_000_000,
        "device_requests": [DeviceRequest(device_ids=["0", "1"], capabilities=[["gpu"]])],
        "shm_size": "1g", "ulimits": [Ulimit(name="nofile", soft=1024, hard=2048)]}


def test_minimal_spec_uses_image_command_and_no_network():
    kw = ContainerSpec(image="img").create_kwargs("R", {})
    assert kw["command"] is None and kw["network_mode"] == "none" and kw["init"] is True
    assert not {"volumes", "mem_limit", "nano_cpus", "device_requests"} & set(kw)


def test_user_build_tag_wins_and_name_is_separate_from_run_id():
    spec = ContainerSpec(image="i", env={"BUILD_TAG": "jenkins-x-1"}, name="mine")
    assert spec.environment("R")["BUILD_TAG"] == "jenkins-x-1"
    assert ContainerSpec(image="i", name="mine").environment("R")["BUILD_TAG"] == "mine"
    assert spec.create_kwargs("R", {})["name"] == "mine"


def test_system_labels_cannot_be_overridden():
    spec = ContainerSpec(image="i", extra=parse_extra_args(["--label provisioner:owner=evil"]))
    assert spec.create_kwargs("R", SYSTEM)["labels"]["provisioner:owner"] == "host:1"


def test_docker_run_line_masks_every_env_value():
    spec = ContainerSpec(image="img", command=("sh", "-c", "echo $TOKEN"),
                         env={"TOKEN": "s3cr3t", "EMPTY": ""}, memory_bytes=2 * 1024 ** 3,
                         cpus=2.0, volumes=("/a:/b",), labels={"k": "v"},
                         extra=parse_extra_args(["--shm-size=1g"]))
    line = spec.docker_run_line("RUN")
    assert "s3cr3t" not in line
    assert line == ("docker run --rm --init --name RUN --network none --env 'TOKEN=***' "
                    "--env 'EMPTY=***' --env 'BUILD_TAG=***' --volume /a:/b --memory 2048m "
                    "--cpus 2 --label k=v --shm-size=1g img sh -c 'echo $TOKEN'")
    assert "s3cr3t" not in repr(spec)


def test_env_args():
    env = parse_env_args(["A=1", "B=", "C=x=y", "FROM_HOST", "UNSET"], {"FROM_HOST": "h"})
    assert env == {"A": "1", "B": "", "C": "x=y", "FROM_HOST": "h"}
    with pytest.raises(UsageError):
        parse_env_args(["=1"], {})
    with pytest.raises(UsageError):
        parse_env_args(["BAD KEY=1"], {})


def test_env_file(tmp_path):
    f = tmp_path / "e.env"
    f.write_text("# comment\n\nA=1\n  B=two words \nC=\"quoted\"\nHOSTVAR\nUNSET\n")
    assert read_env_file(str(f), {"HOSTVAR": "h"}) == {
        "A": "1", "B": "two words ", "C": '"quoted"', "HOSTVAR": "h"}


def test_env_file_errors_are_launch_errors(tmp_path):
    with pytest.raises(LaunchError, match="cannot read env file"):
        read_env_file(str(tmp_path / "missing"), {})
    bad = tmp_path / "bad.env"
    bad.write_text("OK=1\nNOT OK=2\n")
    with pytest.raises(LaunchError, match="line 2"):
        read_env_file(str(bad), {})
    binary = tmp_path / "bin.env"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(LaunchError):
        read_env_file(str(binary), {})


def test_volumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_volume("/a:/b") == "/a:/b"
    assert parse_volume("named:/b:ro") == "named:/b:ro"
    assert parse_volume("./data:/data") == f"{tmp_path}/data:/data"
    for bad in ("nocolon", "/a:relative", ":/b", "/a:/b:ro:x"):
        with pytest.raises(UsageError):
            parse_volume(bad)


def test_labels_and_gpus():
    assert parse_label("a=b=c") == ("a", "b=c")
    for bad in ("novalue", "=x", "provisioner:owner=x"):
        with pytest.raises(UsageError):
            parse_label(bad)
    assert [parse_gpus(x) for x in ("all", "2", '"device=0,1"')] == ["all", "2", "device=0,1"]
    for bad in ("0", "many", "device="):
        with pytest.raises(UsageError):
            parse_gpus(bad)
    assert gpu_selection(None) is None and gpu_selection("all") == -1
    assert gpu_selection("2") == 2 and gpu_selection("device=0,GPU-ab") == ["0", "GPU-ab"]


@pytest.mark.parametrize("text, kwargs", [
    ("--shm-size 1g", {"shm_size": "1g"}),
    ("--cap-add SYS_PTRACE --cap-add=NET_ADMIN --cap-drop ALL",
     {"cap_add": ["SYS_PTRACE", "NET_ADMIN"], "cap_drop": ["ALL"]}),
    ("--tmpfs /run:size=64m --tmpfs /x", {"tmpfs": {"/run": "size=64m", "/x": ""}}),
    ("--add-host db:10.0.0.2", {"extra_hosts": {"db": "10.0.0.2"}}),
    ("--pids-limit 100 --read-only --privileged", {"pids_limit": 100, "read_only": True,
                                                  "privileged": True}),
    ("-h box --ipc host", {"hostname": "box", "ipc_mode": "host"}),
    ("--entrypoint '/bin/sh -c'", {"entrypoint": ["/bin/sh", "-c"]}),
    ("--sysctl net.core.somaxconn=1024", {"sysctls": {"net.core.somaxconn": "1024"}}),
    ("--stop-signal SIGINT --device /dev/fuse", {"stop_signal": "SIGINT", "devices": ["/dev/fuse"]}),
], ids=["shm", "caps", "tmpfs", "add-host", "flags", "short", "entrypoint", "sysctl", "stop-device"])
def test_extra_args_supported(text, kwargs):
    assert parse_extra_args([text]).kwargs == kwargs


@pytest.mark.parametrize("text, message", [
    ("--rm", "managed by provisioner run"),
    ("-it", "managed"),
    ("-e A=1", "use provisioner run's own --env"),
    ("--network=host", "own --network"),
    ("--bogus 1", "unsupported parameter '--bogus'"),
    ("--shm-size", "needs a value"),
    ("--read-only=true", "takes no value"),
    ("--ulimit nofile", "NAME=SOFT"),
    ("--pids-limit lots", "whole number"),
    ("--shm-size '1g", "No closing quotation"),
], ids=lambda v: v if v.startswith("-") else None)
def test_extra_args_refused(text, message):
    with pytest.raises(UsageError, match=message):
        parse_extra_args([text])


def test_stop_signal_follows_extra_args():
    assert ContainerSpec(image="i").stop_signal == "SIGTERM"
    assert ContainerSpec(image="i", extra=parse_extra_args(["--stop-signal SIGINT"])).stop_signal == "SIGINT"
