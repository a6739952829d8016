"""`provisioner run --usage-s3` puts the usage record where a warehouse reads it (moto S3)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.docker
@pytest.mark.moto
def test_usage_record_lands_in_s3_under_its_date_and_run_id(prun, busybox, moto_env):
    from provisioner import aws
    s3 = aws.client("s3", region="us-east-1")
    s3.create_bucket(Bucket="usage")
    result = prun("--image", busybox, "--usage-s3", "s3://usage/runs/", "--", "true")
    assert result.returncode == 0, result.stderr
    record = prun.summary_json()
    key = f"runs/dt={record['start'][:10]}/{record['run_id']}.json"
    body = json.loads(s3.get_object(Bucket="usage", Key=key)["Body"].read())
    assert body["run_id"] == record["run_id"] and body["job"] == prun.job


@pytest.mark.docker
@pytest.mark.moto
def test_an_s3_failure_is_a_warning_and_keeps_the_exit_code(prun, busybox, moto_env):
    result = prun("--image", busybox, "--usage-s3", "s3://no-such-bucket/x", "--", "sh", "-c", "exit 4")
    assert result.returncode == 4
    assert "usage record not written to S3" in result.stderr


def test_a_bad_s3_url_is_exit_2(prun):
    result = prun("--usage-s3", "bucket/prefix", "--", "true")
    assert result.returncode == 2 and "s3://BUCKET/PREFIX" in result.stderr
