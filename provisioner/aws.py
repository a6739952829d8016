"""The one place that makes boto3 clients: standard retry mode, a region, timeouts, an endpoint override.

Every AWS-facing module takes a client in its constructor and, when given none, asks this factory,
so tests point everything at the moto server with one environment variable
(`PROVISIONER_AWS_ENDPOINT_URL`) or pass `endpoint_url=` directly.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

ENDPOINT_ENV = "PROVISIONER_AWS_ENDPOINT_URL"
MAX_ATTEMPTS_ENV = "PROVISIONER_AWS_MAX_ATTEMPTS"
DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_ATTEMPTS = 5       # botocore's standard mode default is 3; launches deserve a little more
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 60.0  # botocore's default; a hung endpoint cannot hold a thread longer


def resolve_endpoint(override: str | None = None) -> str | None:
    """The endpoint to use: the argument, else $PROVISIONER_AWS_ENDPOINT_URL, else None (AWS itself)."""
    return override or os.environ.get(ENDPOINT_ENV) or None


def resolve_region(region: str | None = None) -> str:
    """The argument, else $AWS_REGION / $AWS_DEFAULT_REGION, else us-east-1 (docs/contracts.md default)."""
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def _max_attempts(value: int | None) -> int:
    if value is not None:
        return max(1, value)
    env = os.environ.get(MAX_ATTEMPTS_ENV, "").strip()
    # Tests set this low: moto answers some faults with HTTP 500s that botocore would retry slowly.
    return max(1, int(env)) if env.isdigit() else DEFAULT_MAX_ATTEMPTS


def client_config(*, region: str | None = None, max_attempts: int | None = None,
                  connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                  read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
                  parameter_validation: bool = True) -> Config:
    """The botocore Config every client gets (standard retry mode, explicit timeouts)."""
    return Config(
        region_name=resolve_region(region),
        retries={"mode": "standard", "total_max_attempts": _max_attempts(max_attempts)},  # first try included
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        parameter_validation=parameter_validation,
    )


def client(service: str, *, region: str | None = None, endpoint_url: str | None = None,
           max_attempts: int | None = None, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
           read_timeout_s: float = DEFAULT_READ_TIMEOUT_S, parameter_validation: bool = True,
           session: boto3.session.Session | None = None) -> Any:
    """A boto3 client for `service`.

    `max_attempts` counts the first try (1 = no botocore retries; callers with their own retry loop,
    such as the CloudWatch sink, use that). Credentials come from the usual boto3 chain, or from
    `session` when given.
    """
    config = client_config(region=region, max_attempts=max_attempts,
                           connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s,
                           parameter_validation=parameter_validation)
    # A fresh Session per client: boto3's default session is not thread-safe to create clients from.
    maker = session or boto3.session.Session()
    return maker.client(service, config=config, endpoint_url=resolve_endpoint(endpoint_url))
