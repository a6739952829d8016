"""Finding or pulling the image: local first; Amazon ECR with a token from GetAuthorizationToken
(boto3, imported only for ECR images); any other registry through docker's credential config."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from provisioner.runner import LaunchError
from provisioner.runner.engine import EngineError, NotFound

ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)"
                      r"\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class ImageInfo:
    ref: str
    id: str
    digest: str | None          # repo digest (registry@sha256:...) when the image came from one
    pulled: bool
    pull_s: float | None
    pull_detail: str = ""       # layers and bytes, when the pull's progress was followed


def split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`registry/repo:tag@sha256:…` -> (repository, tag, digest); the tag defaults to latest."""
    repo, _, digest = ref.partition("@")
    last = repo.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        repo, tag = repo.rsplit(":", 1)
    if not digest and tag is None:
        tag = "latest"
    return repo, tag, digest or None


def ecr_region(ref: str) -> str | None:
    """The region of an ECR image reference, None for any other registry."""
    host = ref.split("/", 1)[0] if "/" in ref else ""
    m = ECR_HOST.match(host)
    return m.group("region") if m else None


def ecr_auth_config(ecr_client: Any) -> dict[str, str]:
    """docker auth_config from ECR's GetAuthorizationToken: the token is base64 'AWS:<password>'."""
    import base64
    data = ecr_client.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    if not password:
        raise LaunchError("ECR returned an authorization token without a password")
    return {"username": user, "password": password}


def default_ecr_client(region: str) -> Any:
    from provisioner import aws  # boto3 is heavy: imported only for ECR images
    return aws.client("ecr", region=region)


def _describe(image: dict, ref: str, pulled: bool, pull_s: float | None) -> ImageInfo:
    digests = image.get("RepoDigests") or []
    return ImageInfo(ref=ref, id=image["Id"], digest=digests[0] if digests else None,
                     pulled=pulled, pull_s=pull_s)


def ensure_image(engine: Any, ref: str,
                 ecr_client_factory: Callable[[str], Any] = default_ecr_client,
                 clock: Callable[[], float] = time.monotonic, progress: Any = None) -> ImageInfo:
    """The local image, pulled first when missing. LaunchError (125) when it cannot be had.
    `engine` inspects and pulls images (engine.py); `progress` (pull_progress.PullProgress) follows
    a pull's layers and bytes."""
    try:
        return _describe(engine.inspect_image(ref), ref, False, None)
    except NotFound:
        pass
    except EngineError as exc:
        raise LaunchError(f"cannot inspect image {ref}: {exc}") from None
    auth = None
    region = ecr_region(ref)
    if region:
        try:
            auth = ecr_auth_config(ecr_client_factory(region))
        except LaunchError:
            raise
        except Exception as exc:
            raise LaunchError(f"cannot get ECR credentials for {ref}: {exc}") from None
    repo, tag, digest = split_ref(ref)
    started = clock()
    try:
        if progress is None:
            engine.pull_image(repo, digest or tag, auth)
        else:
            engine.pull_image(repo, digest or tag, auth, progress=progress)
            progress.finish()
        image = engine.inspect_image(f"{repo}@{digest}" if digest else f"{repo}:{tag}")
    except EngineError as exc:
        raise LaunchError(f"image {ref} not found locally and could not be pulled: {exc}") from None
    info = _describe(image, ref, True, clock() - started)
    return replace(info, pull_detail=progress.summary()) if progress is not None else info
