"""Usage record validation: every bad field is named."""

from __future__ import annotations

import pytest

from provisioner import records
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


# ---- build records (kind, result, parent_run_id) ---------------------------------------------------
@pytest.mark.parametrize("result,code", list(records.RESULT_EXIT_CODES.items()))
def test_a_build_records_exit_code_follows_its_jenkins_result(result, code):
    base = {"kind": "build", "job": "j", "run_id": "b", "start": "2026-01-01T00:00:00Z", "duration_s": 1.0}
    assert records.validate({**base, "result": result, "exit_code": code})["exit_code"] == code
    with pytest.raises(records.RecordError, match="exit_code"):
        records.validate({**base, "result": result, "exit_code": code + 2})


def test_kind_result_and_parent_are_checked():
    base = {"job": "j", "run_id": "r", "start": "2026-01-01T00:00:00Z", "duration_s": 1.0, "exit_code": 0}
    assert records.validate({**base, "kind": "run", "parent_run_id": "b-1"})["parent_run_id"] == "b-1"
    for bad, field in (({"kind": "step"}, "kind"), ({"result": "success"}, "result"),
                       ({"parent_run_id": ["b"]}, "parent_run_id")):
        with pytest.raises(records.RecordError) as err:
            records.validate({**base, **bad})
        assert err.value.field == field
