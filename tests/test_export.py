"""Warehouse export: one JSON object per record at PREFIX/dt=YYYY-MM-DD/<run_id>.json, against moto S3."""

from __future__ import annotations

import json

import pytest

from provisioner import aws
from provisioner.errors import UsageError
from provisioner.export import ExportError, export_records, object_key, parse_s3_url
from tests.factories import run


@pytest.fixture
def s3(moto_env):
    client = aws.client("s3")
    client.create_bucket(Bucket="usage")
    return client


def objects(client, bucket="usage", prefix="") -> dict[str, dict]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {k: json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys}


@pytest.mark.parametrize("url, expected", [
    ("s3://b/p/q/", ("b", "p/q")), ("s3://b", ("b", "")), ("s3://b/", ("b", "")),
], ids=["prefix", "bare", "slash"])
def test_parse_s3_url(url, expected):
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize("url", ["b/p", "s3:///p", "https://b.s3.amazonaws.com/p"])
def test_parse_s3_url_rejects(url):
    with pytest.raises(UsageError):
        parse_s3_url(url)


def test_object_key_uses_the_start_date_and_run_id():
    r = run(n=1) | {"start": "2026-03-04T23:59:59.5Z", "run_id": "0b6e1f3c-9d7e-4c1a-8f2b-1c2d3e4f5a6b"}
    assert object_key("usage/v1", r) == "usage/v1/dt=2026-03-04/0b6e1f3c-9d7e-4c1a-8f2b-1c2d3e4f5a6b.json"
    assert object_key("", r | {"run_id": "a/b c"}) == "dt=2026-03-04/a%2Fb%20c.json"


def test_export_writes_each_record_once_and_again_is_idempotent(s3):
    records = [run(n=i) | {"start": f"2026-01-0{1 + i % 3}T10:00:00Z", "x_extra": [i]} for i in range(10)]
    result = export_records(records, "s3://usage/runs/", client=s3, workers=4)
    assert result.written == 10
    stored = objects(s3, prefix="runs/")
    assert len(stored) == 10
    assert stored["runs/dt=2026-01-02/train-1.json"] == records[1]
    body = s3.get_object(Bucket="usage", Key="runs/dt=2026-01-02/train-1.json")["Body"].read()
    assert body.endswith(b"}\n") and body.count(b"\n") == 1  # one JSONL line
    assert export_records(records, "s3://usage/runs", client=s3).written == 10
    assert len(objects(s3, prefix="runs/")) == 10


def test_missing_bucket_is_a_clear_error(s3):
    with pytest.raises(ExportError, match="cannot export to s3://nope: no such bucket"):
        export_records([run()], "s3://nope/p", client=s3)


def test_failure_midway_names_how_far_it_got(s3):
    class Flaky:
        def __init__(self):
            self.calls = 0

        def head_bucket(self, **kw):
            return s3.head_bucket(**kw)

        def put_object(self, **kw):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("connection reset")
            return s3.put_object(**kw)
    with pytest.raises(ExportError, match=r"stopped after \d+ records: connection reset"):
        export_records([run(n=i) for i in range(5)], "s3://usage/p", client=Flaky(), workers=1)


def test_cli_export_to_s3_with_since_and_job(cli, moto_env, s3, tmp_path):
    hist = str(tmp_path / "h.sqlite3")
    records = [run("a", i) | {"start": f"2026-01-0{1 + i}T00:00:00Z"} for i in range(4)] + [run("b", 9)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cli("history", "import", str(tmp_path / "in.jsonl"), "--history", hist)
    out = cli("history", "export", "--history", hist, "--s3", "s3://usage/warehouse", "--since", "2026-01-02",
              "--job", "a")
    assert out.returncode == 0, out.stderr
    assert "exported 3 records" in out.stdout
    assert sorted(objects(s3)) == [f"warehouse/dt=2026-01-0{d}/a-{d - 1}.json" for d in (2, 3, 4)]
    missing = cli("history", "export", "--history", hist, "--s3", "s3://absent/x")
    assert missing.returncode == 1 and "no such bucket" in missing.stderr and "Traceback" not in missing.stderr
    bad = cli("history", "export", "--history", hist, "--s3", "usage/x")
    assert bad.returncode == 2 and "s3://BUCKET/PREFIX" in bad.stderr
