"""The usage record (docs/contracts.md): one JSON object per run, the unit of the history store."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

REQUIRED = ("job", "run_id", "start", "duration_s", "exit_code")
_NUMBER = ("duration_s", "vcpu", "cpu_avg_pct", "cpu_max_pct", "mem_avg_bytes", "mem_max_bytes",
           "gpu_util_avg_pct", "gpu_util_max_pct", "gpu_mem_max_bytes", "price_usd_per_hour",
           "ondemand_usd_per_hour", "cost_usd", "requested_vcpu", "requested_mem_gib")
_INT = ("exit_code", "gpu_count")
_STRING = ("job", "run_id", "start", "build", "instance_type", "region", "image", "requested",
           "triggered_by", "team", "node", "queue_id", "parent_run_id")
_BOOL = ("timed_out", "oom_killed", "interrupted")
MARKETS = ("spot", "on-demand")
INT32 = 2 ** 31         # exit_code and gpu_count fit a 32-bit column (SQLite and PostgreSQL alike)
BIG = 2 ** 63           # a larger whole number in a numeric field is not a measurement
MAX_DEPTH = 32          # nesting of an extra field's value (a record is flat; this bounds hostility)
KINDS = ("run", "build")
# A build record's exit code from Jenkins' result word (ABORTED also sets `interrupted`).
RESULT_EXIT_CODES = {"SUCCESS": 0, "UNSTABLE": 0, "FAILURE": 1, "ABORTED": 130, "NOT_BUILT": 125}
FIELDS = REQUIRED + tuple(f for f in _NUMBER + _INT + _STRING + _BOOL + ("market", "kind", "result")
                          if f not in REQUIRED)


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
        if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                (isinstance(v, float) and not math.isfinite(v)) or (isinstance(v, int) and abs(v) >= BIG):
            raise RecordError(field, f"must be a number, not {_shown(v)}")
        if field in _INT and (v != int(v) or not -INT32 <= v < INT32):
            raise RecordError(field, f"must be a whole number from {-INT32} to {INT32 - 1}, not {_shown(v)}")
        if field != "exit_code" and v < 0:
            raise RecordError(field, f"must not be negative ({v!r})")
    for field in _BOOL:
        v = record.get(field)
        if v is not None and not isinstance(v, bool):
            raise RecordError(field, f"must be true, false or null, not {v!r}")
    if record.get("kind") not in (None,) + KINDS:
        raise RecordError("kind", f"must be 'run', 'build' or null, not {_shown(record['kind'])}")
    result = record.get("result")
    if result is not None and result not in RESULT_EXIT_CODES:
        raise RecordError("result", f"must be one of {', '.join(RESULT_EXIT_CODES)} or null, not {_shown(result)}")
    if record.get("kind") == "build" and result is not None and record["exit_code"] != RESULT_EXIT_CODES[result]:
        raise RecordError("exit_code", f"must be {RESULT_EXIT_CODES[result]} for a build whose result is {result}")
    if record.get("market") not in (None,) + MARKETS:
        raise RecordError("market", f"must be 'spot', 'on-demand' or null, not {record['market']!r}")
    try:
        parse_iso_utc(record["start"])
    except ValueError as exc:
        raise RecordError("start", str(exc)) from None
    _check_values(record)
    return record


def _shown(v: Any) -> str:
    text = repr(v) if not isinstance(v, int) or abs(v) < 10 ** 30 else f"a {len(str(abs(v)))}-digit number"
    return text if len(text) <= 60 else text[:57] + "..."


def _check_values(record: dict) -> None:
    """Every value, extra fields included: text that is valid Unicode (no lone surrogates, which
    no UTF-8 store can hold), finite numbers (strict JSON has no NaN), nesting of at most
    MAX_DEPTH. Iterative: a hostile depth cannot exhaust the recursion limit."""
    stack: list[tuple[str, Any, int]] = [(k, v, 1) for k, v in record.items()]
    for k in record:
        _check_text(str(k), k)
    while stack:
        field, v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RecordError(field, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(v, str):
            _check_text(field, v)
        elif isinstance(v, float) and not math.isfinite(v):
            raise RecordError(field, f"must be a finite number, not {v!r}")
        elif isinstance(v, dict):
            for k, item in v.items():
                _check_text(field, k)
                stack.append((field, item, depth + 1))
        elif isinstance(v, list):
            stack.extend((field, item, depth + 1) for item in v)


def _check_text(field: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RecordError(field.encode("utf-8", "backslashreplace").decode(),
                          f"not valid Unicode text (lone surrogate at character {exc.start})") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not strict JSON")


def loads(text: str | bytes) -> Any:
    """One JSON value, strictly: NaN and Infinity refused; ValueError for any bad text, also for
    nesting too deep for the parser (RecursionError) or a number too long to convert."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def dumps(record: Any, **kwargs: Any) -> str:
    """Strict JSON text: a non-finite number (kept by an older version) is written as null."""
    try:
        return json.dumps(record, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(_finite(record), allow_nan=False, **kwargs)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


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


def is_build(record: dict) -> bool:
    return record.get("kind") == "build"


def count_once(batch: list[dict]) -> list[dict]:
    """Each Jenkins build once: its build records where there are any, else its run records.

    A run record is dropped when its `parent_run_id` names a build record of `batch`, or when a build
    record has the same job and build (a `provisioner run` inside it that did not name its parent).
    Order is kept. Pure: the planner, `history show` and reports call it on what they read."""
    builds = [r for r in batch if is_build(r)]
    if not builds:
        return batch
    ids = {r["run_id"] for r in builds}
    keys = {(r["job"], r.get("build") or "") for r in builds if r.get("build")}
    return [r for r in batch if is_build(r) or not (
        r.get("parent_run_id") in ids or (r.get("build") and (r["job"], r["build"]) in keys))]
