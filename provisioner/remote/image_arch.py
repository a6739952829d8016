"""Which CPU architecture a job may get on EC2, from the platforms its image is built for.

An amd64-only image on a Graviton (arm64) instance fails with "exec format error", and the planner
cannot know the image, so `run --remote` asks before planning. The registry knows: the Docker
engine's distribution endpoint (`GET /distribution/{name}/json`) lists an image index's platforms,
or a single-platform image's one, without pulling anything.

`choose` is the decision (pure): platforms -> no pin, `arch=<one>`, or an error. `for_image` is the
I/O around it: the registry through the engine, else the local image (with a warning: it may be one
platform of a multi-arch image), else x86_64 with a warning that says how to allow Graviton.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from provisioner.runner import LaunchError
from provisioner.runner.engine import DISTRIBUTION_TIMEOUT_S, EngineError

ARCHES = {"amd64": "x86_64", "arm64": "arm64"}   # a linux platform's architecture -> the catalog's
GRAVITON_HINT = "--filter arch=arm64 or a label atom arch=arm64"
LOCAL_TIMEOUT_S = 5.0       # inspecting a local image: the engine answers from its own store


@dataclass(frozen=True)
class ArchChoice:
    arch: str | None            # the `arch=` filter the plan gets; None: either architecture
    reason: str                 # where it came from, for the plan's reasons
    warning: str | None = None  # printed when the choice is a guess


def platform_name(platform: Mapping[str, Any]) -> str:
    """{"os": "linux", "architecture": "arm64", "variant": "v8"} -> "linux/arm64/v8"."""
    return "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))


def _informative(platform: Mapping[str, Any]) -> bool:
    """Attestation entries of an index say unknown/unknown; an entry without a platform says nothing."""
    return bool(platform.get("os") and platform.get("architecture")) and platform.get("os") != "unknown"


def _ours(platforms: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Our architectures among the platforms, each with the platforms that give it."""
    out: dict[str, list[str]] = {}
    for p in platforms:
        arch = ARCHES.get(str(p.get("architecture"))) if p.get("os") == "linux" else None
        if arch:
            out.setdefault(arch, []).append(platform_name(p))
    return out


def choose(image: str, platforms: Iterable[Mapping[str, Any]] | None) -> ArchChoice | None:
    """Both x86_64 and arm64 -> no pin; one -> `arch=` it; none of ours -> LaunchError naming the
    image's platforms; no informative platform at all -> None (the caller does not know)."""
    known = [p for p in platforms or () if _informative(p)]
    if not known:
        return None
    ours = _ours(known)
    if len(ours) == 2:
        names = ", ".join(n for names in ours.values() for n in names)
        return ArchChoice(None, f"image {image} is multi-arch ({names}): x86_64 and arm64 both considered")
    if ours:
        (arch, names), = ours.items()
        return ArchChoice(arch, f"image {image} is {', '.join(names)} only: arch={arch}")
    listed = ", ".join(platform_name(p) for p in known)
    raise LaunchError(f"image {image} is built for {listed}: no linux/amd64 or linux/arm64 platform, "
                      "so no EC2 instance can run it")


def from_local(image: str, inspected: Mapping[str, Any], why: str) -> ArchChoice | None:
    """The local image's platform, with a warning: a pull keeps one platform of a multi-arch image."""
    platform = {"os": inspected.get("Os"), "architecture": inspected.get("Architecture"),
                "variant": inspected.get("Variant")}
    choice = choose(image, [platform])
    if choice is None:
        return None
    other = "arm64" if choice.arch == "x86_64" else "x86_64"
    return replace(choice, reason=f"local image {image} is {platform_name(platform)}: arch={choice.arch}",
                   warning=f"cannot ask the registry which platforms image {image} has ({why}); using the "
                           f"local image's, {platform_name(platform)}: a local image may be one platform of "
                           f"a multi-arch one (to allow {other}: --filter arch={other} or a label atom "
                           f"arch={other})")


def unknown(image: str, why: str) -> ArchChoice:
    return ArchChoice("x86_64", f"image {image}: platforms unknown, x86_64 assumed: arch=x86_64",
                      warning=f"cannot tell which platforms image {image} has ({why}): planning x86_64 "
                              f"only; to allow Graviton (arm64) give {GRAVITON_HINT}")


# ---- I/O ---------------------------------------------------------------------------------------

def for_image(image: str, engine: Any = None, timeout: float = DISTRIBUTION_TIMEOUT_S) -> ArchChoice:
    """Ask the registry through the Docker engine (`engine`, else the one DOCKER_HOST names), then
    fall back to the local image, then to x86_64. Bounded: a registry question of `timeout` s, then
    a local inspection of at most LOCAL_TIMEOUT_S."""
    try:
        if engine is None:
            from provisioner.runner.engine import connect
            engine = connect()
    except Exception as exc:          # a DOCKER_HOST the SDK cannot use
        return unknown(image, f"no Docker engine: {exc}")
    try:
        answer = engine.distribution(image, auth_config=_ecr_auth(image), timeout=timeout)
    except EngineError as exc:
        why = f"the Docker engine could not ask its registry: {exc}"
    else:
        choice = choose(image, (answer or {}).get("Platforms"))
        if choice is not None:
            return choice
        why = "the registry's answer names no platform"
    try:
        local = engine.inspect_image(image, timeout=min(timeout, LOCAL_TIMEOUT_S))
        return from_local(image, local, why) or unknown(image, why)
    except EngineError:
        return unknown(image, why)


def _ecr_auth(image: str) -> dict | None:
    """Amazon ECR credentials for an ECR image (the engine has none of its own); None otherwise or
    when they cannot be had (the registry then refuses, and the fallback applies)."""
    from provisioner.runner.images import default_ecr_client, ecr_auth_config, ecr_region
    region = ecr_region(image)
    if not region:
        return None
    try:
        return ecr_auth_config(default_ecr_client(region))
    except Exception:
        return None
