"""Hypothesis strategies for the agent API's request bodies (the fuzz test and bench/api_attack.py):
records and samples near the valid shape with any field swapped for any JSON value, arbitrary
JSON, and raw bytes."""

from __future__ import annotations

import json

from hypothesis import strategies as st

RECORD = {"job": "app", "build": "1", "run_id": "r-1", "start": "2026-01-01T00:00:00Z", "duration_s": 12.5,
          "exit_code": 0, "mem_max_bytes": 1024, "market": "spot", "kind": "run"}
SAMPLE = {"run_id": "r-1", "at": "2026-01-01T00:00:00Z", "cpu_pct": 10.0, "mem_bytes": 100, "gpu_util_pct": None}

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2 ** 62, max_value=2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
           | st.sampled_from(["", "app", "app/x", "victim", "build", "\ud800", "2026-01-01T00:00:00Z", "x" * 300]))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c,
                                                                                          max_size=4), max_leaves=12)


def near(base: dict) -> st.SearchStrategy[dict]:
    """`base` with a fresh run_id, another job or kind, some fields replaced by any value, some
    dropped, some added (often none: most bodies stay close to valid and reach the store)."""
    keys = sorted(base)
    return st.builds(
        lambda run, job, swaps, drops, extra: {**{k: v for k, v in base.items() if k not in drops},
                                               "run_id": run, **({"job": job} if "job" in base else {}),
                                               **swaps, **extra},
        st.text(min_size=1, max_size=20), st.sampled_from(["app", "app/x", "application", "victim", "app/"]),
        st.dictionaries(st.sampled_from(keys), json_values, max_size=2),
        st.sets(st.sampled_from(keys), max_size=1),
        st.dictionaries(st.text(max_size=12), json_values, max_size=1))


def _dump(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    near(RECORD).map(_dump), near(RECORD).map(_dump), near(SAMPLE).map(_dump), json_values.map(_dump),
    st.binary(max_size=300), st.integers(1, 3000).map(lambda n: b"[" * n), st.just(b""))
paths = st.sampled_from(["/v1/usage", "/v1/samples"])
ALLOWED = {200, 201, 204, 400, 403, 413, 429}
