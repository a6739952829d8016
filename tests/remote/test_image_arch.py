"""The architecture a `run --remote` job may get, from its image's platforms: the pure decision,
which requests decide it themselves, and the bounds of the I/O around it (no Docker engine here:
tests/remote/test_image_arch_registry.py asks a real one)."""

from __future__ import annotations

import socket
import threading

import pytest

from provisioner.remote import image_arch, parts
from provisioner.remote.image_arch import ArchChoice, choose, for_image, from_local, unknown
from provisioner.cli.context import Context
from provisioner.cli.main import build_parser
from provisioner.runner import LaunchError
from provisioner.runner.engine import EngineTimeout, UnixEngine
from provisioner.runner.engine_sdk import within

AMD64 = {"os": "linux", "architecture": "amd64"}
ARM64 = {"os": "linux", "architecture": "arm64", "variant": "v8"}
ATTESTATION = {"os": "unknown", "architecture": "unknown"}


def test_an_amd64_only_image_pins_x86_64_and_says_why():
    choice = choose("python:3.12", [AMD64, ATTESTATION])
    assert choice == ArchChoice("x86_64", "image python:3.12 is linux/amd64 only: arch=x86_64")


def test_an_arm64_only_image_pins_arm64_whatever_its_variant():
    assert choose("img", [ARM64]).arch == "arm64"
    assert choose("img", [{"os": "linux", "architecture": "arm64"}]).arch == "arm64"


def test_a_multi_arch_image_pins_nothing_and_other_platforms_are_ignored():
    choice = choose("python:3.12", [AMD64, ARM64, {"os": "linux", "architecture": "s390x"},
                                    {"os": "windows", "architecture": "amd64"}, ATTESTATION])
    assert choice.arch is None
    assert choice.reason == ("image python:3.12 is multi-arch (linux/amd64, linux/arm64/v8): "
                             "x86_64 and arm64 both considered")


def test_an_image_with_none_of_our_platforms_is_a_launch_error_naming_them():
    with pytest.raises(LaunchError) as err:
        choose("ibm/app:1", [{"os": "linux", "architecture": "s390x"}, {"os": "windows", "architecture": "amd64"},
                             ATTESTATION])
    assert err.value.exit_code == 125
    assert "image ibm/app:1 is built for linux/s390x, windows/amd64: no linux/amd64 or linux/arm64" in str(err.value)


@pytest.mark.parametrize("platforms", [None, [], [ATTESTATION], [{}]])
def test_platforms_that_say_nothing_leave_the_decision_to_the_caller(platforms):
    assert choose("img", platforms) is None


def test_a_local_image_decides_with_a_warning_that_it_may_be_one_platform_of_several():
    choice = from_local("app:1", {"Os": "linux", "Architecture": "arm64", "Variant": "v8"}, "registry down")
    assert choice.arch == "arm64"
    assert choice.reason == "local image app:1 is linux/arm64/v8: arch=arm64"
    assert "(registry down)" in choice.warning and "one platform of a multi-arch one" in choice.warning
    assert "--filter arch=x86_64" in choice.warning


def test_without_any_answer_x86_64_is_assumed_and_the_warning_says_how_to_allow_graviton():
    choice = unknown("app:1", "no Docker engine")
    assert choice.arch == "x86_64"
    assert "(no Docker engine)" in choice.warning
    assert "--filter arch=arm64 or a label atom arch=arm64" in choice.warning


def test_no_engine_at_all_falls_back_to_x86_64(tmp_path):
    choice = for_image("app:1", UnixEngine(str(tmp_path / "no-such.sock")))
    assert choice.arch == "x86_64" and "could not ask its registry" in choice.warning


def test_an_engine_that_never_answers_is_given_up_on(tmp_path):
    """A socket that accepts and then says nothing: the registry question is bounded."""
    path = str(tmp_path / "silent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    try:
        choice = for_image("app:1", UnixEngine(path), timeout=0.2)
    finally:
        server.close()
    assert choice.arch == "x86_64" and "did not answer in time" in choice.warning


def test_an_sdk_call_that_never_returns_is_given_up_on():
    release = threading.Event()
    try:
        with pytest.raises(EngineTimeout):
            within(0.1, release.wait)
    finally:
        release.set()


def test_an_sdk_call_keeps_its_answer_and_its_errors():
    assert within(5, lambda: {"Platforms": []}) == {"Platforms": []}
    with pytest.raises(ZeroDivisionError):
        within(5, lambda: 1 / 0)


# ---- which requests let the image decide ---------------------------------------------------------

def run_args(*extra: str, label: str = "ec2 && vcpu=1 && mem=1"):
    argv = ["run", "--remote", "--label", label, *extra, "--image", "app:1", "--", "true"]
    return build_parser(argv).parse_args(argv)


def declared(args):
    """The declared requirements the intent's resolver hands to the architecture rule."""
    from provisioner.requirements import Requirements
    return Requirements.parse(args.label, list(args.filter or []))


def arch_choice(args, *rest):
    return parts.arch_choice(declared(args), args, *rest)


class AskedEngine:
    """Records that the image was asked about; answers amd64 only."""

    def __init__(self):
        self.asked: list[str] = []

    def distribution(self, ref, auth_config=None, timeout=None):
        self.asked.append(ref)
        return {"Platforms": [AMD64]}


@pytest.mark.parametrize("extra, label", [
    ((), "ec2 && arch=arm64"),
    (("--filter", "arch=x86_64"), "ec2"),
    ((), "ec2 && !arch=arm64"),
    ((), "ec2 && type=c6g.medium"),
    ((), "ec2 && family=c7g"),
    (("--instance-type", "m5.large"), "ec2"),
])
def test_on_ec2_a_request_naming_arch_type_or_family_is_not_second_guessed(extra, label):
    engine = AskedEngine()
    assert arch_choice(run_args(*extra, label=label), "ec2", "x86_64", "app:1", engine) is None
    assert engine.asked == []


def test_on_ec2_the_image_decides_otherwise():
    engine = AskedEngine()
    choice = arch_choice(run_args(label="ec2 && research"), "ec2", "x86_64", "app:1", engine)
    assert engine.asked == ["app:1"] and choice.arch == "x86_64"


def test_the_docker_cloud_runs_the_host_architecture_unless_arch_is_named():
    choice = arch_choice(run_args(label="ec2 && research"), "docker", "arm64", "app:1")
    assert choice == ArchChoice("arm64", "the docker cloud runs the host's architecture: arch=arm64")
    assert arch_choice(run_args(label="ec2 && arch=x86_64"), "docker", "arm64", "app:1") is None


def test_the_plan_gets_the_pin_and_its_reason_first(tmp_path):
    args = run_args("--cloud", "ec2")
    args.history = str(tmp_path / "h.sqlite3")
    choice = image_arch.choose("app:1", [AMD64])
    result = parts.plan(args, Context(args), "job", choice)
    assert "Architecture: image app:1 is linux/amd64 only: arch=x86_64" in result.plan.reasons
    assert result.intent.arch == "x86_64"
    assert {c.offer.arch for c in result.plan.candidates} == {"x86_64"}
