"""The agent -> daemon API as its clients see it (docs/contracts.md 'Agent -> daemon'): where to post,
with what, and which answers are worth another try. Plain constants and pure functions, no imports
beyond the standard library: the instance-side build-start signal (agent/buildstart.py, urllib) and
the runner's usage-report client (runner/daemon_client.py, requests) both build on this one module."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

URL_ENV = "PROVISIONER_REPORT_URL"       # the daemon's agent API base URL, set by the bootstrap
TOKEN_ENV = "PROVISIONER_REPORT_TOKEN"   # this agent's bearer token (never logged)
RUN_ID_ENV = "PROVISIONER_RUN_ID"
USAGE_PATH = "/v1/usage"
SAMPLES_PATH = "/v1/samples"
# Worth another try later (and every 5xx): the daemon is away, overloaded, or behind a proxy that is.
RETRYABLE_STATUS = frozenset({404, 408, 429})


def retryable(status: int) -> bool:
    """Whether an HTTP answer means: try again later (else it is final)."""
    return status >= 500 or status in RETRYABLE_STATUS


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for an agent's token."""
    return {"Authorization": f"Bearer {token}"}


def safe_url(url: str) -> str:
    """`url` without any user:password part, query or fragment, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
