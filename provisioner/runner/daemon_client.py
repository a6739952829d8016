"""Runner -> daemon report client (docs/contracts.md 'Agent -> daemon').

`Reporter.report(record)` POSTs the final usage record to `{URL}/v1/usage`; when the daemon is away
(connection errors, 5xx) it retries with backoff within a bounded time (`deadline_s`), then spools the
record to disk and sends it on the next use. `sample(...)` hands a live sample to a background thread
that POSTs it to `/v1/samples` once, best effort, so the runner's loop never waits on the daemon.
Neither ever raises: a report failure is a warning and never changes the job's exit code.
The token goes only into the Authorization header; it is never logged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from provisioner import paths
from provisioner.backoff import UNCAPPED, Backoff
from provisioner.daemon_api import (RETRYABLE_STATUS, SAMPLES_PATH, TOKEN_ENV, URL_ENV, USAGE_PATH,  # noqa: F401
                                    retryable, safe_url)
from provisioner.records import iso_utc

LOG = logging.getLogger(__name__)



def default_spool_dir() -> Path:
    return paths.state_dir() / "spool"


class _BearerAuth(requests.auth.AuthBase):
    """Explicit auth also keeps requests from replacing the header with ~/.netrc credentials."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:  # never show the token, even in a debugger or a traceback
        return "_BearerAuth(***)"


class Reporter:
    """Sends usage records and samples of one agent to the daemon."""

    def __init__(self, url: str, token: str, *, spool_dir: Path | None = None,
                 timeout_s: float = 5.0, attempts: int = 4, backoff_s: float = 0.5,
                 deadline_s: float = 12.0, sample_timeout_s: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url.rstrip("/")
        self._auth = _BearerAuth(token)
        self.spool_dir = spool_dir or default_spool_dir()
        self._timeout = timeout_s
        self._attempts = max(1, attempts)
        self._backoff = backoff_s
        self._deadline = deadline_s  # report() never holds the job's exit longer than this
        self._sample_timeout = sample_timeout_s
        self._sleep = sleep
        self._sample_failures = 0
        self._spool_checked = False
        self._spool_lock = threading.Lock()
        # Live samples: the latest one waiting for the sender thread (started on the first sample).
        self._sample_lock = threading.Lock()
        self._sample_next: dict | None = None
        self._sample_wake = threading.Event()
        self._sample_idle = threading.Event()
        self._sample_idle.set()
        self._sample_thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **kwargs: Any) -> Reporter | None:
        """A Reporter when PROVISIONER_REPORT_URL and PROVISIONER_REPORT_TOKEN are both set."""
        url, token = environ.get(URL_ENV, "").strip(), environ.get(TOKEN_ENV, "").strip()
        return cls(url, token, **kwargs) if url and token else None

    # -- usage records --

    def report(self, record: dict) -> None:
        """Send the final usage record (retry, else spool), then re-send spooled ones. Never raises."""
        try:
            outcome, detail = self._send_with_retries(record)
            if outcome == "retry":
                LOG.warning("usage report for run %s: daemon at %s unavailable (%s)",
                            record.get("run_id"), safe_url(self.url), detail)
                self._spool(record)
            elif outcome == "sent":
                self.send_spooled()
        except Exception:  # a bug here must not change the job's exit code
            LOG.warning("usage report failed", exc_info=True)

    def _send_with_retries(self, record: dict) -> tuple[str, str]:
        end = time.monotonic() + self._deadline
        detail = "no time left"
        for attempt in range(self._attempts):
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            outcome, detail = self._post_usage(record, timeout_s=min(self._timeout, remaining))
            if outcome != "retry":
                return outcome, detail
            delay = Backoff(self._backoff, UNCAPPED, jitter="spread").delay(attempt)  # no agents in step
            if attempt + 1 == self._attempts or time.monotonic() + delay >= end:
                break
            LOG.debug("usage report: %s; retrying in %.1f s", detail, delay)
            self._sleep(delay)
        return "retry", detail

    def _post_usage(self, record: dict, timeout_s: float | None = None) -> tuple[str, str]:
        """One POST -> (outcome, detail): 'sent', 'rejected' / 'unauthorized' (retrying cannot
        help; logged here) or 'retry' (the daemon is away)."""
        try:
            response = requests.post(self.url + USAGE_PATH, data=_json(record), auth=self._auth,
                                     headers={"Content-Type": "application/json"},
                                     timeout=timeout_s or self._timeout)
        except requests.RequestException as err:
            return "retry", type(err).__name__
        status = response.status_code
        if status in (200, 201):
            return "sent", str(status)
        if retryable(status):
            return "retry", f"HTTP {status}"
        reason = "the token was refused" if status == 401 else "the record was refused"
        LOG.warning("usage report for run %s: %s (HTTP %d): %s", record.get("run_id"), reason,
                    status, _message(response))
        return ("unauthorized" if status == 401 else "rejected"), f"HTTP {status}"

    # -- the spool: records the daemon did not take yet --

    def _spool(self, record: dict) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        name = f"{record.get('run_id') or uuid.uuid4()}.json".replace(os.sep, "_")
        target = self.spool_dir / name
        temp = target.with_suffix(".tmp")
        temp.write_text(_json(record))
        temp.replace(target)  # atomic: a crash never leaves half a record to re-send
        LOG.warning("usage record for run %s spooled to %s; it is sent on the next report",
                    record.get("run_id"), target)

    def spooled(self) -> list[Path]:
        """Spooled record files, oldest first."""
        if not self.spool_dir.is_dir():
            return []
        return sorted(self.spool_dir.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))

    def send_spooled(self) -> int:
        """Send spooled records once each (no backoff); stop when the daemon is away. Never raises.

        Returns how many were sent. A record the daemon refuses as invalid is kept aside as
        `*.json.rejected` (it would never pass); one refused for the token stays for a later try.
        """
        sent = 0
        if not self._spool_lock.acquire(blocking=False):
            return 0  # another thread (report or sample) is sending them right now
        try:
            for path in self.spooled():
                try:
                    record = json.loads(path.read_text())
                except (OSError, ValueError):
                    path.replace(path.with_name(path.name + ".rejected"))
                    continue
                outcome, _ = self._post_usage(record)
                if outcome == "sent":
                    path.unlink(missing_ok=True)
                    sent += 1
                elif outcome == "rejected":
                    path.replace(path.with_name(path.name + ".rejected"))
                else:
                    break
        except Exception:
            LOG.warning("re-sending spooled usage records failed", exc_info=True)
        finally:
            self._spool_lock.release()
        if sent:
            LOG.info("sent %d spooled usage record(s) to %s", sent, safe_url(self.url))
        return sent

    # -- live samples --

    def sample(self, run_id: str | Mapping[str, Any], at: float | datetime | str | None = None,
               cpu_pct: float | None = None, mem_bytes: int | None = None,
               gpu_util_pct: float | None = None) -> None:
        """Queue one live sample for /v1/samples and return at once; never raises.

        Takes the fields, or the whole body as one dict (`{run_id, at, cpu_pct, mem_bytes,
        gpu_util_pct}`, what the runner's loop builds). A sample not yet sent when the next one comes
        is replaced by it: only the latest utilisation is worth sending.
        """
        try:
            if isinstance(run_id, Mapping):
                body = dict(run_id)
            else:
                body = {"run_id": run_id, "cpu_pct": cpu_pct, "mem_bytes": mem_bytes,
                        "gpu_util_pct": gpu_util_pct, "at": at if at is not None else time.time()}
            body["at"] = _iso(body.get("at") if body.get("at") is not None else time.time())
            with self._sample_lock:
                self._sample_next = body
                self._sample_idle.clear()
                if self._sample_thread is None:
                    self._sample_thread = threading.Thread(target=self._sample_loop, daemon=True,
                                                           name="provisioner-samples")
                    self._sample_thread.start()
            self._sample_wake.set()
        except Exception:
            LOG.debug("usage sample not queued", exc_info=True)

    def close(self, timeout_s: float = 2.0) -> bool:
        """Wait up to `timeout_s` for the last queued sample to be sent; True when nothing is left."""
        return self._sample_idle.wait(timeout_s)

    def _sample_loop(self) -> None:
        while True:
            self._sample_wake.wait()
            self._sample_wake.clear()
            with self._sample_lock:
                body, self._sample_next = self._sample_next, None
            if body is not None:
                self._post_sample(body)
            with self._sample_lock:
                if self._sample_next is None:
                    self._sample_idle.set()

    def _post_sample(self, body: dict) -> None:
        try:
            response = requests.post(self.url + SAMPLES_PATH, data=_json(body), auth=self._auth,
                                     headers={"Content-Type": "application/json"},
                                     timeout=self._sample_timeout)
            ok = response.status_code in (200, 201, 204)
            problem = f"HTTP {response.status_code}"
        except Exception as err:  # a failed sample only costs that sample
            ok, problem = False, type(err).__name__
        if ok:
            self._sample_failures = 0
            if not self._spool_checked:  # the daemon is back: hand over what an earlier run spooled
                self._spool_checked = True
                self.send_spooled()
            return
        self._sample_failures += 1
        # Once per outage at warning level: a sample every 15 s must not flood the console.
        (LOG.warning if self._sample_failures == 1 else LOG.debug)(
            "usage sample to %s failed (%s)", safe_url(self.url), problem)


def reporter_from_env(environ: Mapping[str, str] = os.environ, **kwargs: Any) -> Reporter | None:
    """The runner's entry point: a Reporter when both PROVISIONER_REPORT_* variables are set."""
    return Reporter.from_env(environ, **kwargs)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def _iso(at: float | datetime | str) -> str:
    if isinstance(at, str):
        return at
    if isinstance(at, datetime):
        return iso_utc(at)
    return iso_utc(datetime.fromtimestamp(at, timezone.utc))


def _message(response: requests.Response) -> str:
    """The daemon's error message (JSON 'error' or 'message', else the text), kept short."""
    try:
        body = response.json()
        text = body.get("error") or body.get("message") or response.text
    except ValueError:
        text = response.text
    return str(text).strip()[:500]
