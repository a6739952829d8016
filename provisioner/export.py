"""Warehouse export: each usage record as one JSON object in S3 (docs/contracts.md 'Where things live').

Key layout: `s3://BUCKET/PREFIX/dt=YYYY-MM-DD/<run_id>.json`, `dt` the UTC date of the run's start,
so Athena (partition projection on `dt`) and Snowflake (Snowpipe over the prefix) read it as a
partitioned JSON table; docs/warehouse.md has the DDL. The body is the record exactly as the store
keeps it (extra fields included) plus a newline, i.e. a one-line JSONL file.

Keys are a function of the record, so exporting again overwrites each object with the same bytes:
re-running after a failure, or over an overlapping period, is safe.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import quote

from provisioner.errors import ProvisionerError, UsageError

DEFAULT_WORKERS = 16   # PutObject is latency-bound: a few requests in flight fill the pipe
MAX_IN_FLIGHT = 256    # bounded queue: a 1M-record export does not hold 1M futures


class ExportError(ProvisionerError):
    """The export could not finish (no bucket, no credentials, endpoint down). Exit 1."""


@dataclass
class ExportResult:
    written: int = 0
    bytes: int = 0


def parse_s3_url(url: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix/' -> ('bucket', 'some/prefix'); the prefix may be empty."""
    if not url.startswith("s3://"):
        raise UsageError(f"--s3 {url!r}: must be s3://BUCKET/PREFIX")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise UsageError(f"--s3 {url!r}: names no bucket (s3://BUCKET/PREFIX)")
    return bucket, prefix.strip("/")


def object_key(prefix: str, record: dict) -> str:
    """PREFIX/dt=YYYY-MM-DD/<run_id>.json (run ids are UUIDs; anything else is %-quoted)."""
    name = f"dt={record['start'][:10]}/{quote(record['run_id'], safe='-_.')}.json"
    return f"{prefix}/{name}" if prefix else name


def object_body(record: dict) -> bytes:
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def _describe(exc: Exception) -> str:
    """A one-line reason from botocore's errors (ClientError keeps the AWS error code)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def export_records(records: Iterable[dict], url: str, *, client: Any = None,
                   workers: int = DEFAULT_WORKERS) -> ExportResult:
    """Put every record at its key under `url`; raise ExportError at the first failure.

    `client` is an S3 client (made by provisioner.aws when None, so PROVISIONER_AWS_ENDPOINT_URL
    points it at moto in tests).
    """
    bucket, prefix = parse_s3_url(url)
    if client is None:
        from provisioner import aws
        client = aws.client("s3")
    _check_bucket(client, bucket)
    result = ExportResult()
    lock = threading.Lock()

    def put(record: dict) -> None:
        body = object_body(record)
        client.put_object(Bucket=bucket, Key=object_key(prefix, record), Body=body,
                          ContentType="application/json")
        with lock:
            result.written += 1
            result.bytes += len(body)

    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="s3-export") as pool:
        try:
            for record in records:
                pending.append(pool.submit(put, record))
                if len(pending) >= MAX_IN_FLIGHT:
                    pending.popleft().result()  # back-pressure, and the first error surfaces here
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()
        except Exception as exc:  # botocore's many error classes: one clean message
            for future in pending:
                future.cancel()
            raise ExportError(f"export to {url} stopped after {result.written} records: "
                              f"{_describe(exc)} (exporting again is safe: keys are per run)") from None
    return result


def _check_bucket(client: Any, bucket: str) -> None:
    """Fail before the first record when the bucket is missing or unreachable (a clearer message)."""
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:  # ClientError 404/403, NoCredentialsError, EndpointConnectionError
        code = _describe(exc)
        if code.startswith(("404", "NoSuchBucket", "Not Found")):
            code = "no such bucket"
        raise ExportError(f"cannot export to s3://{bucket}: {code}") from None
