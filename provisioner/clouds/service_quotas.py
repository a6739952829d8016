"""Reads the account's EC2 vCPU quotas from Service Quotas (GetServiceQuota), once at the daemon's start.

One call per (region, quota code) of provisioner/quotas.py's table. A quota the account has never
changed may be answered with NoSuchResourceException on some accounts: the AWS default is asked for
then (GetAWSDefaultServiceQuota). A quota that cannot be read (no permission, throttled, endpoint
away) is left out and reported in `problems`: the daemon then plans without it (the configured caps
still hold), never refuses to start for it. When a region's first quota cannot be read, the rest of
that region is not asked (the same endpoint or permission would fail them all).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from provisioner.quotas import QUOTA_CODES

log = logging.getLogger(__name__)
SERVICE_CODE = "ec2"


@dataclass(frozen=True)
class AccountQuotas:
    """vCPUs per (region, class, market), and what could not be read."""

    limits: dict[tuple[str, str, str], float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__)


def read_quotas(client_for: Callable[[str], Any], regions: Iterable[str]) -> AccountQuotas:
    """The vCPU quotas of every class in every region; `client_for(region)` gives a service-quotas client."""
    limits: dict[tuple[str, str, str], float] = {}
    problems: list[str] = []
    for region in regions:
        try:
            client = client_for(region)
        except Exception as exc:            # noqa: BLE001 - no credentials or region: plan without quotas
            problems.append(f"{region}: no Service Quotas client ({_code(exc)})")
            continue
        for n, ((cls, market), code) in enumerate(QUOTA_CODES.items()):
            value = _one(client, code, region, problems)
            if value is not None:
                limits[(region, cls, market)] = value
            elif n == 0:            # the endpoint or the permission fails for all: do not ask 17 more times
                problems[-1] += "; the other classes were not asked"
                break
    if problems:
        log.warning("service quotas not read (planning without them): %s", "; ".join(problems)[:2000])
    return AccountQuotas(limits, tuple(problems))


def _one(client: Any, code: str, region: str, problems: list[str]) -> float | None:
    try:
        answer = client.get_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=code)
    except Exception as exc:                # noqa: BLE001 - botocore ClientError or a connection error
        if _code(exc) != "NoSuchResourceException":
            problems.append(f"{region} {code}: {_code(exc)}")
            return None
        try:
            answer = client.get_aws_default_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=code)
        except Exception as exc2:           # noqa: BLE001
            problems.append(f"{region} {code}: {_code(exc2)}")
            return None
    try:
        return float(answer["Quota"]["Value"])
    except (KeyError, TypeError, ValueError):
        problems.append(f"{region} {code}: an answer without Quota.Value")
        return None
