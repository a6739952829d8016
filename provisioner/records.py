"""The usage record (CONTRACTS.md): one JSON object per run, the unit of the history store."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

REQUIRED = ("job", "run_id", "start", "duration_s", "exit_code")
_NUMBER = ("duration_s", "vcpu", "cpu_avg_pct", "cpu_max_pct", "mem_avg_bytes", "mem_max_bytes",
           "gpu_util_avg_pct", "gpu_util_max_pct", "gpu_mem_max_bytes", "price_usd_per_hour",
           "ondemand_usd_per_hour", "cost_usd", "requested_vcpu", "requested_mem_gib")
_INT = ("exit_code", "gpu_count")
_STRING = ("job", "run_id", "start", "build", "instance_type", "region", "image", "requested",
           "triggered_by", "team", "node", "queue_id")
_BOOL = ("timed_out", "oom_killed", "interrupted")
MARKETS = ("spot", "on-demand")
FIELDS = REQUIRED + tuple(f for f in _NUMBER + _INT + _STRING + _BOOL + ("market",) if f not in REQUIRED)


class RecordError(ValueError):
    """An invalid usage record; the message names the field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def utc_now_iso() -> str:
    return iso_utc(datetime.now(timezone.utc))


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def parse_iso_utc(text: str) -> datetime:
    """An ISO 8601 UTC time ending in Z ('2026-01-02T03:04:05Z', fractions allowed)."""
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError("must be an ISO 8601 UTC time ending in Z, e.g. 2026-01-02T03:04:05Z")
    return datetime.fromisoformat(text[:-1] + "+00:00")


def validate(record: Any) -> dict:
    """Check a usage record and return it (a dict); raise RecordError naming the first bad field."""
    if not isinstance(record, dict):
        raise RecordError("record", "must be a JSON object")
    for field in REQUIRED:
        if record.get(field) is None:
            raise RecordError(field, "is required")
    for field in _STRING:
        v = record.get(field)
        if v is not None and not isinstance(v, str):
            if field in ("build", "queue_id") and isinstance(v, int) and not isinstance(v, bool):
                continue  # Jenkins numbers; normalised by `normalise`
            raise RecordError(field, f"must be a string, not {type(v).__name__}")
    for field in ("job", "run_id"):
        if not record[field].strip():
            raise RecordError(field, "must not be empty")
    for field in _NUMBER + _INT:
        v = record.get(field)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RecordError(field, f"must be a number, not {v!r}")
        if field in _INT and v != int(v):
            raise RecordError(field, f"must be a whole number, not {v!r}")
        if field != "exit_code" and v < 0:
            raise RecordError(field, f"must not be negative ({v!r})")
    for field in _BOOL:
        v = record.get(field)
        if v is not None and not isinstance(v, bool):
            raise RecordError(field, f"must be true, false or null, not {v!r}")
    if record.get("market") not in (None,) + MARKETS:
        raise RecordError("market", f"must be 'spot', 'on-demand' or null, not {record['market']!r}")
    try:
        parse_iso_utc(record["start"])
    except ValueError as exc:
        raise RecordError("start", str(exc)) from None
    return record


def normalise(record: dict) -> dict:
    """A validated copy with Jenkins numbers (build, queue_id) as strings."""
    out = dict(validate(record))
    for field in ("build", "queue_id"):
        if isinstance(out.get(field), int):
            out[field] = str(out[field])
    out["exit_code"] = int(out["exit_code"])
    return out


def key(record: dict) -> tuple[str, str, str]:
    """The store's key: (job, build or '', run_id)."""
    return record["job"], record.get("build") or "", record["run_id"]


def succeeded(record: dict) -> bool:
    return (record.get("exit_code") == 0 and not record.get("timed_out")
            and not record.get("oom_killed") and not record.get("interrupted"))
