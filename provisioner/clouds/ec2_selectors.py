"""AMIs, subnets and security groups chosen by tags or name pattern instead of fixed ids.

Wherever `ec2.images`, `ec2.subnets` or `ec2.security_groups` takes an id, a selector may stand:

    subnets: {us-east-1: [{tags: {tier: private}}]}              # every subnet with that tag
    security_groups: [{name: provisioner-agents}]                # by group name (globs allowed)
    images: {us-east-1: {x86_64: {name: "provisioner-agent-x86_64-*"},   # the newest match
                         gpu_x86_64: {tags: {provisioner:image: agent, provisioner:gpu: "true"},
                                      owners: [self]}}}

`resolve` turns them into ids with one Describe* call per selector and region (the caller caches
the result); fixed ids pass through untouched. Pure apart from the `describe` function it is given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from provisioner.clouds.base import CloudError

ANY_REGION = "*"                  # a flat list of subnets/security groups applies to every region
KEYS = ("tags", "name", "owners")
Describe = Callable[[str, str, dict], dict]      # (region, operation, request) -> answer


@dataclass(frozen=True)
class Selector:
    tags: tuple[tuple[str, str], ...] = ()
    name: str | None = None
    owners: tuple[str, ...] = ()                  # images only (default: this account)

    def describe(self) -> str:
        parts = [f"tags {dict(self.tags)}"] if self.tags else []
        if self.name:
            parts.append(f"name {self.name!r}")
        if self.owners:
            parts.append(f"owners {list(self.owners)}")
        return " and ".join(parts)


def problem(value: Any, image: bool = False) -> str | None:
    """Why `value` is neither an id nor a selector, or None."""
    if isinstance(value, str) and value:
        return None
    if not isinstance(value, dict) or not value:
        return "must be an id or a selector {tags: {KEY: VALUE}} / {name: PATTERN}"
    allowed = KEYS if image else KEYS[:2]
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        return f"unknown selector key {unknown[0]!r} (known: {', '.join(allowed)})"
    if "tags" not in value and "name" not in value:
        return "a selector needs tags or name"
    tags = value.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float, bool))
                                             for k, v in tags.items()):
        return "tags must map tag keys to values"
    if "name" in value and not (isinstance(value["name"], str) and value["name"]):
        return "name must be a non-empty pattern"
    owners = value.get("owners", [])
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        return "owners must be a list of account ids or aliases (self, amazon)"
    return None


def parse(value: Any) -> str | Selector:
    """An id as it is, a selector mapping as a Selector (validated by `problem` first)."""
    if isinstance(value, str):
        return value
    tags = tuple(sorted((str(k), str(v).lower() if isinstance(v, bool) else str(v))
                        for k, v in (value.get("tags") or {}).items()))
    return Selector(tags, value.get("name"), tuple(value.get("owners") or ()))


def has_selectors(settings: Any) -> bool:
    lists = [*settings.subnets.values(), *settings.security_groups.values(),
             *(m.values() for m in settings.images.values())]
    return any(isinstance(x, Selector) for values in lists for x in values)


def _filters(selector: Selector, name_filter: str) -> list[dict]:
    out = [{"Name": f"tag:{k}", "Values": [v]} for k, v in selector.tags]
    if selector.name:
        out.append({"Name": name_filter, "Values": [selector.name]})
    return out


@dataclass(frozen=True)
class Resolved:
    path: str                                     # e.g. ec2.subnets.us-east-1
    selector: Selector
    ids: tuple[str, ...]
    detail: str = ""                              # an image's name


def _ids(region: str, path: str, values: tuple, describe: Describe, op: str, key: str, id_key: str,
         name_filter: str, found: list[Resolved]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        if not isinstance(v, Selector):
            out.append(v)
            continue
        answer = describe(region, op, {"Filters": _filters(v, name_filter)})
        ids = tuple(sorted(item[id_key] for item in answer.get(key) or []))
        if not ids:
            raise CloudError(f"{path}: nothing in {region} matches {v.describe()}", code="Config", kind="config")
        found.append(Resolved(path, v, ids))
        out.extend(ids)
    return tuple(dict.fromkeys(out))


def _image(region: str, path: str, selector: Selector, describe: Describe, found: list[Resolved]) -> str:
    request: dict = {"Filters": _filters(selector, "name") + [{"Name": "state", "Values": ["available"]}],
                     "Owners": list(selector.owners or ("self",))}
    images = describe(region, "describe_images", request).get("Images") or []
    if not images:
        raise CloudError(f"{path}: no available image in {region} matches {selector.describe()}",
                         code="Config", kind="config")
    newest = max(images, key=lambda i: (i.get("CreationDate") or "", i["ImageId"]))
    found.append(Resolved(path, selector, (newest["ImageId"],), newest.get("Name") or ""))
    return newest["ImageId"]


def resolve(settings: Any, describe: Describe) -> tuple[Any, list[Resolved]]:
    """Settings with every selector replaced by ids, and what each selector resolved to. A
    region-wide ('*') list is resolved for each configured region."""
    found: list[Resolved] = []

    def by_region(mapping: Mapping[str, tuple], what: str, op: str, key: str, id_key: str,
                  name_filter: str) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for region, values in mapping.items():
            if region == ANY_REGION and any(isinstance(v, Selector) for v in values):
                for r in settings.regions:           # selectors are regional: one list per region
                    if r not in mapping:
                        out[r] = _ids(r, f"ec2.{what}", values, describe, op, key, id_key, name_filter, found)
                continue
            out[region] = _ids(region, f"ec2.{what}.{region}" if region != ANY_REGION else f"ec2.{what}",
                               values, describe, op, key, id_key, name_filter, found)
        return out

    subnets = by_region(settings.subnets, "subnets", "describe_subnets", "Subnets", "SubnetId", "tag:Name")
    groups = by_region(settings.security_groups, "security_groups", "describe_security_groups",
                       "SecurityGroups", "GroupId", "group-name")
    images = {region: {slot: (_image(region, f"ec2.images.{region}.{slot}", v, describe, found)
                              if isinstance(v, Selector) else v) for slot, v in slots.items()}
              for region, slots in settings.images.items()}
    return dataclasses.replace(settings, subnets=subnets, security_groups=groups, images=images), found
