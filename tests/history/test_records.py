"""Usage record validation: every bad field is named."""

from __future__ import annotations

import pytest

from provisioner.records import RecordError, normalise, validate
from tests.factories import run


@pytest.mark.parametrize("change,field", [
    ({"job": None}, "job"), ({"run_id": ""}, "run_id"), ({"start": "2026-01-01 00:00"}, "start"),
    ({"duration_s": "long"}, "duration_s"), ({"duration_s": -1}, "duration_s"),
    ({"exit_code": 1.5}, "exit_code"), ({"market": "reserved"}, "market"),
    ({"oom_killed": "yes"}, "oom_killed"), ({"cpu_avg_pct": float("nan")}, "cpu_avg_pct"),
    ({"instance_type": 5}, "instance_type"), ({"mem_max_bytes": True}, "mem_max_bytes"),
])
def test_bad_fields_are_named(change, field):
    with pytest.raises(RecordError) as info:
        validate(run() | change)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_not_an_object():
    with pytest.raises(RecordError, match="JSON object"):
        validate([1, 2])


def test_good_record_with_negative_exit_code_and_nulls():
    r = normalise(run(exit_code=-9, market=None, instance_type=None, build=12))
    assert r["build"] == "12" and r["exit_code"] == -9
