"""The real Docker engine asks a registry (tests/remote/registry_stub.py on 127.0.0.1) which platforms
an image has, and `run --remote` on EC2 plans only instances of an architecture the image runs on."""

from __future__ import annotations

import subprocess

import pytest

from provisioner.remote import image_arch, parts
from provisioner.cli.context import Context
from provisioner.cli.main import build_parser
from provisioner.runner.engine import UnixEngine, connect
from provisioner.runner.engine_sdk import SdkEngine
from tests.conftest import provisioner_exe
from tests.remote.registry_stub import RegistryStub

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def registry():
    stub = RegistryStub()
    stub.add_index("amd", "1", ["linux/amd64"], attestations=True)
    stub.add_index("team/arm", "1", ["linux/arm64/v8"], attestations=True)
    stub.add_index("both", "1", ["linux/amd64", "linux/arm64/v8", "linux/ppc64le"])
    stub.add_image("single-arm", "1", "linux/arm64", docker_types=True)
    stub.add_index("mainframe", "1", ["linux/s390x"])
    port = stub.start()
    stub.host = f"127.0.0.1:{port}"
    yield stub
    stub.stop()


@pytest.fixture
def engine(docker_client):
    found = connect()
    return found if isinstance(found, UnixEngine) else SdkEngine(docker_client)


def platforms(answer: dict) -> list[str]:
    return sorted(image_arch.platform_name(p) for p in answer["Platforms"])


@pytest.mark.parametrize("image, expected", [
    ("amd:1", ["linux/amd64", "unknown/unknown"]),
    ("team/arm:1", ["linux/arm64/v8", "unknown/unknown"]),
    ("both:1", ["linux/amd64", "linux/arm64/v8", "linux/ppc64le"]),
    ("single-arm:1", ["linux/arm64"]),
])
def test_the_engine_reports_the_platforms_the_registry_serves(registry, engine, image, expected):
    answer = engine.distribution(f"{registry.host}/{image}")
    assert platforms(answer) == expected
    assert answer["Descriptor"]["digest"] == registry.tags[tuple(image.split(":"))]


def test_the_sdk_engine_asks_the_same_way(registry, docker_client):
    assert platforms(SdkEngine(docker_client).distribution(f"{registry.host}/both:1")) == [
        "linux/amd64", "linux/arm64/v8", "linux/ppc64le"]


@pytest.mark.parametrize("image, arch", [("amd:1", "x86_64"), ("team/arm:1", "arm64"),
                                         ("single-arm:1", "arm64"), ("both:1", None)])
def test_the_registry_decides_the_arch(registry, engine, image, arch):
    choice = image_arch.for_image(f"{registry.host}/{image}", engine)
    assert choice.arch == arch and choice.warning is None


def test_a_registry_that_is_down_falls_back_to_x86_64_with_a_warning(engine):
    down = RegistryStub()
    port = down.start()
    down.stop()                      # the port is free again: nothing answers there
    choice = image_arch.for_image(f"127.0.0.1:{port}/amd:1", engine)
    assert choice.arch == "x86_64"
    assert "could not ask its registry" in choice.warning and "--filter arch=arm64" in choice.warning


def test_a_registry_that_is_down_falls_back_to_the_local_image(engine, docker_client, busybox):
    down = RegistryStub()
    port = down.start()
    down.stop()
    ref = f"127.0.0.1:{port}/local:1"
    docker_client.images.get(busybox).tag(ref)
    try:
        local = docker_client.images.get(ref).attrs["Architecture"]
        choice = image_arch.for_image(ref, engine)
    finally:
        docker_client.images.remove(ref)
    assert choice.arch == image_arch.ARCHES[local]
    assert choice.reason.startswith(f"local image {ref} is linux/{local}")
    assert "one platform of a multi-arch one" in choice.warning


def ec2_plan(image: str, tmp_path, label: str = "ec2 && vcpu=1 && mem=1"):
    argv = ["--history", str(tmp_path / "h.sqlite3"), "run", "--remote", "--cloud", "ec2", "--label", label,
            "--image", image, "--", "true"]
    args = build_parser(argv).parse_args(argv)
    return parts.plan(args, Context(args), "arch-job", cloud_name="ec2",
                         choose=lambda req: parts.arch_choice(req, args, "ec2", "x86_64", image))


def test_an_amd64_only_image_never_gets_a_graviton_candidate(registry, docker_client, tmp_path):
    image = f"{registry.host}/amd:1"
    result = ec2_plan(image, tmp_path)
    assert {c.offer.arch for c in result.plan.candidates} == {"x86_64"}
    assert f"Architecture: image {image} is linux/amd64 only: arch=x86_64" in result.plan.reasons


def test_an_arm64_only_image_gets_only_graviton(registry, docker_client, tmp_path):
    result = ec2_plan(f"{registry.host}/team/arm:1", tmp_path)
    assert {c.offer.arch for c in result.plan.candidates} == {"arm64"}


def test_a_multi_arch_image_keeps_both_architectures(registry, docker_client, tmp_path):
    result = ec2_plan(f"{registry.host}/both:1", tmp_path)
    assert {c.offer.arch for c in result.plan.candidates} == {"x86_64", "arm64"}


def test_an_image_for_no_ec2_architecture_is_exit_125_before_anything_is_launched(registry, docker_client, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("cloud: ec2\n")
    image = f"{registry.host}/mainframe:1"
    done = subprocess.run([provisioner_exe(), "--config", str(config), "--history", str(tmp_path / "h.sqlite3"),
                           "run", "--remote", "--label", "ec2", "--image", image, "--", "true"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 125
    assert f"image {image} is built for linux/s390x: no linux/amd64 or linux/arm64 platform" in done.stderr
