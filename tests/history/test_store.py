"""The SQLite history store: keys, migrations, foreign and corrupt files, extra fields."""

from __future__ import annotations

import sqlite3

import pytest

from provisioner.errors import StoreError
from provisioner.history import open_store
from provisioner.history.store import SCHEMA_VERSION
from tests.factories import run


def test_add_is_idempotent_on_the_key_and_keeps_the_first(tmp_path):
    with open_store(str(tmp_path / "h.sqlite3")) as store:
        assert store.add(run(n=1, duration=10))
        assert not store.add(run(n=1, duration=99))
        assert store.add(run(n=1, duration=5) | {"build": "2"})  # another build: another key
        assert [r["duration_s"] for r in store.runs("train")] == [10, 5]


def test_extra_fields_survive_and_numbers_normalise(tmp_path):
    with open_store(str(tmp_path / "h.sqlite3")) as store:
        store.add(run(n=1) | {"build": 7, "queue_id": 42, "x_custom": {"a": [1, 2]}})
        (r,) = store.records()
        assert r["build"] == "7" and r["queue_id"] == "42" and r["x_custom"] == {"a": [1, 2]}


def test_schema_version_and_reopen(tmp_path):
    path = str(tmp_path / "h.sqlite3")
    with open_store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        store.add(run())
    with open_store(path) as store:
        assert store.count() == 1


def test_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "h.sqlite3")
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this provisioner"):
        open_store(path)


def test_foreign_sqlite_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(StoreError, match="not a provisioner history store"):
        open_store(str(path))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable history store"):
        open_store(str(path))
    assert path.read_bytes().startswith(b"this is not")


def test_records_filter_by_since_and_job(tmp_path):
    with open_store(str(tmp_path / "h.sqlite3")) as store:
        store.add_many([run(n=1), run(n=5), run("other", n=3)])
        assert [r["run_id"] for r in store.records(since="2026-01-01T00:03:00Z")] == ["other-3", "train-5"]
        assert [r["run_id"] for r in store.records(job="other")] == ["other-3"]
        assert store.jobs() == ["other", "train"]
        assert [r["run_id"] for r in store.runs("train", limit=1)] == ["train-5"]


def test_recent_is_the_sites_newest_runs_of_every_job(tmp_path):
    with open_store(str(tmp_path / "h.sqlite3")) as store:
        store.add_many([run("a", n) for n in range(5)] + [run("b", n) for n in range(3)])
        newest = store.recent(4)
        assert [r["start"] for r in newest] == sorted((r["start"] for r in newest), reverse=True)
        assert [r["run_id"] for r in newest[:2]] == ["a-4", "a-3"]
        assert {r["run_id"] for r in newest[2:]} == {"a-2", "b-2"}     # the same start: either order
        assert len(store.recent(100)) == 8
