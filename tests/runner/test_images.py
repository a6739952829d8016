"""Image lookup and pulls with an injected fake engine and a stubbed ECR client."""

from __future__ import annotations

import base64

import pytest

from provisioner.runner import LaunchError
from provisioner.runner.engine import EngineError, NotFound
from provisioner.runner.images import ecr_auth_config, ecr_region, ensure_image, split_ref

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/train:v3"


class FakeEngine:
    """inspect_image / pull_image over a set of local and a set of pullable references."""

    def __init__(self, local: set[str], pullable: set[str] = frozenset(),
                 inspect_error: EngineError | None = None):
        self.local, self.pullable, self.pulls = set(local), set(pullable), []
        self.inspect_error = inspect_error

    def inspect_image(self, ref: str) -> dict:
        if self.inspect_error:
            raise self.inspect_error
        if ref in self.local:
            return {"Id": "sha256:" + "ab" * 32,
                    "RepoDigests": [f"{ref.rsplit(':', 1)[0]}@sha256:{'cd' * 32}"]}
        raise NotFound(f"No such image: {ref}", 404)

    def pull_image(self, repo: str, tag: str | None, auth_config: dict | None = None) -> None:
        self.pulls.append((repo, tag, auth_config))
        ref = f"{repo}:{tag}"
        if ref not in self.pullable:
            raise EngineError("repository does not exist", 404)
        self.local.add(ref)


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
    images = FakeEngine(local={"python:3.11"})
    info = ensure_image(images, "python:3.11", ecr_client_factory=pytest.fail)
    assert not info.pulled and info.pull_s is None and images.pulls == []
    assert info.digest == f"python@sha256:{'cd' * 32}"


def test_ecr_image_pulled_with_token():
    images = FakeEngine(local=set(), pullable={ECR})
    regions: list[str] = []
    stub = StubECR(token("AWS:secret-pw"))
    ticks = iter([10.0, 12.5])
    info = ensure_image(images, ECR,
                        ecr_client_factory=lambda region: regions.append(region) or stub,
                        clock=lambda: next(ticks))
    assert regions == ["eu-west-1"] and stub.calls == 1
    assert images.pulls == [(ECR.rsplit(":", 1)[0], "v3", {"username": "AWS", "password": "secret-pw"})]
    assert info.pulled and info.pull_s == 2.5


def test_other_registry_uses_docker_credentials():
    images = FakeEngine(local=set(), pullable={"registry.example:5000/a:latest"})
    ensure_image(images, "registry.example:5000/a", ecr_client_factory=pytest.fail)
    assert images.pulls == [("registry.example:5000/a", "latest", None)]


def test_unknown_image_is_a_launch_error():
    with pytest.raises(LaunchError, match="nosuch:1 not found locally .*repository does not exist"):
        ensure_image(FakeEngine(local=set()), "nosuch:1")


def test_ecr_credentials_failure_is_a_launch_error():
    def broken(region):
        raise RuntimeError("NoCredentialsError")
    with pytest.raises(LaunchError, match="cannot get ECR credentials"):
        ensure_image(FakeEngine(local=set()), ECR, ecr_client_factory=broken)


def test_engine_refusing_the_inspect_is_a_launch_error():
    engine = FakeEngine(local=set(), inspect_error=EngineError("server error", 500))
    with pytest.raises(LaunchError, match="cannot inspect image x:1: server error"):
        ensure_image(engine, "x:1", ecr_client_factory=pytest.fail)
    assert engine.pulls == []
