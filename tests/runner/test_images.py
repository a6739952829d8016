"""Image lookup and pulls with an injected fake docker client and a stubbed ECR client."""

from __future__ import annotations

import base64

import docker.errors
import pytest

from provisioner.runner import LaunchError
from provisioner.runner.images import ecr_auth_config, ecr_region, ensure_image, split_ref

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/train:v3"


class FakeImage:
    def __init__(self, ref: str, digests: list[str] | None = None):
        self.id = "sha256:" + "ab" * 32
        self.attrs = {"RepoDigests": digests or []}


class FakeImages:
    def __init__(self, local: set[str], pullable: set[str] = frozenset()):
        self.local, self.pullable, self.pulls = set(local), set(pullable), []

    def get(self, ref: str):
        if ref in self.local:
            return FakeImage(ref, [f"{ref.rsplit(':', 1)[0]}@sha256:{'cd' * 32}"])
        raise docker.errors.ImageNotFound(f"No such image: {ref}")

    def pull(self, repo: str, tag: str | None = None, auth_config: dict | None = None):
        self.pulls.append((repo, tag, auth_config))
        ref = f"{repo}:{tag}"
        if ref not in self.pullable:
            raise docker.errors.APIError("pull access denied", explanation="repository does not exist")
        self.local.add(ref)


class FakeClient:
    def __init__(self, images: FakeImages):
        self.images = images


class StubECR:
    def __init__(self, token: str):
        self.token, self.calls = token, 0

    def get_authorization_token(self):
        self.calls += 1
        return {"authorizationData": [{"authorizationToken": self.token,
                                       "proxyEndpoint": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"}]}


def token(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("ref, parts", [
    ("busybox", ("busybox", "latest", None)),
    ("python:3.11-slim", ("python", "3.11-slim", None)),
    ("localhost:5000/x/y", ("localhost:5000/x/y", "latest", None)),
    ("localhost:5000/x/y:2", ("localhost:5000/x/y", "2", None)),
    ("repo@sha256:abc", ("repo", None, "sha256:abc")),
], ids=lambda v: v if isinstance(v, str) else None)
def test_split_ref(ref, parts):
    assert split_ref(ref) == parts


def test_ecr_region():
    assert ecr_region(ECR) == "eu-west-1"
    assert ecr_region("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/x") == "us-gov-west-1"
    assert ecr_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/x:1") == "cn-north-1"
    assert ecr_region("python:3.11") is None
    assert ecr_region("evil.com/123456789012.dkr.ecr.eu-west-1.amazonaws.com") is None


def test_ecr_token_decoding():
    assert ecr_auth_config(StubECR(token("AWS:pass:with:colons"))) == {
        "username": "AWS", "password": "pass:with:colons"}
    with pytest.raises(LaunchError):
        ecr_auth_config(StubECR(token("nopassword")))


def test_local_image_is_not_pulled():
    images = FakeImages(local={"python:3.11"})
    info = ensure_image(FakeClient(images), "python:3.11", ecr_client_factory=pytest.fail)
    assert not info.pulled and info.pull_s is None and images.pulls == []
    assert info.digest == f"python@sha256:{'cd' * 32}"


def test_ecr_image_pulled_with_token():
    images = FakeImages(local=set(), pullable={ECR})
    regions: list[str] = []
    stub = StubECR(token("AWS:secret-pw"))
    ticks = iter([10.0, 12.5])
    info = ensure_image(FakeClient(images), ECR,
                        ecr_client_factory=lambda region: regions.append(region) or stub,
                        clock=lambda: next(ticks))
    assert regions == ["eu-west-1"] and stub.calls == 1
    assert images.pulls == [(ECR.rsplit(":", 1)[0], "v3", {"username": "AWS", "password": "secret-pw"})]
    assert info.pulled and info.pull_s == 2.5


def test_other_registry_uses_docker_credentials():
    images = FakeImages(local=set(), pullable={"registry.example:5000/a:latest"})
    ensure_image(FakeClient(images), "registry.example:5000/a", ecr_client_factory=pytest.fail)
    assert images.pulls == [("registry.example:5000/a", "latest", None)]


def test_unknown_image_is_a_launch_error():
    with pytest.raises(LaunchError, match="nosuch:1 not found locally .*repository does not exist"):
        ensure_image(FakeClient(FakeImages(local=set())), "nosuch:1")


def test_ecr_credentials_failure_is_a_launch_error():
    def broken(region):
        raise RuntimeError("NoCredentialsError")
    with pytest.raises(LaunchError, match="cannot get ECR credentials"):
        ensure_image(FakeClient(FakeImages(local=set())), ECR, ecr_client_factory=broken)
