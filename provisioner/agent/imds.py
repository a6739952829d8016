"""A small IMDSv2 client: session token (PUT /latest/api/token), then GETs that carry it.

IMDSv2 is required on our instances (hop limit 1), so every read needs the token; a 401 means the
token expired (or the metadata service restarted) and is answered by fetching a new one once.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping

DEFAULT_URL = "http://169.254.169.254"
URL_ENV = "PROVISIONER_IMDS_URL"
TOKEN_TTL_S = 21600                 # the most IMDS grants; renewed a minute before it runs out


class ImdsError(OSError):
    """The metadata service did not answer as expected."""


def resolve_url(environ: Mapping[str, str], on_ec2: Callable[[], bool]) -> str | None:
    """$PROVISIONER_IMDS_URL when set (empty: no metadata service, as on the docker cloud); else
    the link-local address, but only on EC2 hardware: nothing else may be sent there."""
    if URL_ENV in environ:
        return environ[URL_ENV].strip().rstrip("/") or None
    return DEFAULT_URL if on_ec2() else None


class Imds:
    def __init__(self, base_url: str, *, timeout_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._clock = clock
        self._token: str | None = None
        self._token_until = 0.0

    def _open(self, request: Any) -> tuple[int, bytes]:
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ImdsError(f"instance metadata at {self.base_url} did not answer: {exc}") from None

    def token(self, renew: bool = False) -> str:
        import urllib.request                   # ~0.1 s to import: only where there is metadata
        if renew or self._token is None or self._clock() >= self._token_until:
            request = urllib.request.Request(f"{self.base_url}/latest/api/token", method="PUT",
                                             headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
            status, body = self._open(request)
            if status != 200 or not body:
                raise ImdsError(f"IMDSv2 token request answered HTTP {status}")
            self._token = body.decode().strip()
            self._token_until = self._clock() + TOKEN_TTL_S - 60
        return self._token

    def get(self, path: str) -> str | None:
        """The text at /latest/meta-data/PATH; None when it does not exist (404)."""
        import urllib.request
        for attempt in range(2):
            request = urllib.request.Request(f"{self.base_url}/latest/meta-data/{path}",
                                             headers={"X-aws-ec2-metadata-token": self.token(renew=attempt > 0)})
            status, body = self._open(request)
            if status == 200:
                return body.decode()
            if status == 404:
                return None
            if status != 401:
                raise ImdsError(f"GET meta-data/{path} answered HTTP {status}")
        raise ImdsError(f"GET meta-data/{path}: the metadata service refused a fresh token (401)")

    def spot_action(self) -> dict | None:
        """The spot interruption notice ({"action": "terminate"|"stop"|"hibernate", "time": ...}),
        or None while there is none (the path is absent until a notice is given)."""
        text = self.get("spot/instance-action")
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return {"action": "unknown", "time": None, "raw": text[:200]}
        return value if isinstance(value, dict) else {"action": "unknown", "time": None}
