"""The PostgreSQL history store against a real Debian PostgreSQL, and `history migrate`.

One throwaway cluster per test module (initdb in a temp dir, a free 127.0.0.1 port, trust auth, run
as the `postgres` user when root; stopped and removed at the end); each test gets a fresh database.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from provisioner.errors import StoreError
from provisioner.history import open_store
from provisioner.history import postgres, store as sqlite_store
from provisioner.history.postgres import redact
from provisioner.records import RecordError
from tests.factories import run

psycopg = pytest.importorskip("psycopg")


def pg_bin_dir() -> Path | None:
    """Where initdb and pg_ctl live, or None when PostgreSQL is not installed."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                    key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgCluster:
    def __init__(self) -> None:
        self.bin = pg_bin_dir()
        self.dir: Path | None = None
        self.port: int | None = None
        self._user: str | None = None

    @property
    def base_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def url(self, db: str = "postgres") -> str:
        return f"{self.base_url}/{db}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), user=self._user, capture_output=True, text=True, timeout=120,
                              cwd="/", check=False)

    def start(self) -> "PgCluster":
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="provisioner-pg-"))
        if os.geteuid() == 0:
            self._user = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = self.dir / "data"
        done = self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                         "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        for _ in range(3):  # another process may take the free port first
            self.port = _free_port()
            opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off")
            done = self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"),
                             "-o", opts, "-w", "-t", "60", "start")
            if done.returncode == 0:
                atexit.register(self.stop)
                return self
        log = (self.dir / "log").read_text(errors="replace") if (self.dir / "log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {done.stderr}\n{log[-2000:]}")

    def create_database(self, name: str) -> str:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.dir is None:
            return
        directory, self.dir = self.dir, None
        if (directory / "data" / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(directory / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(directory, ignore_errors=True)


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg() -> PgCluster:
    if pg_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (scripts/lib.sh ensure_postgres installs it)")
    cluster = PgCluster().start()
    yield cluster
    cluster.stop()


_db_counter = iter(range(10 ** 6))


@pytest.fixture
def pg_url(pg: PgCluster) -> str:
    return pg.create_database(f"t{next(_db_counter)}")


# -- the store -------------------------------------------------------------------------------------

def test_add_is_idempotent_on_the_key_and_keeps_the_first(pg_url):
    with open_store(pg_url) as store:
        assert isinstance(store, postgres.PostgresStore)
        assert store.add(run(n=1, duration=10))
        assert not store.add(run(n=1, duration=99))
        assert store.add(run(n=1, duration=5) | {"build": "2"})
        assert [r["duration_s"] for r in store.runs("train")] == [10, 5]
        assert store.schema_version() == postgres.SCHEMA_VERSION


def test_extra_fields_and_key_order_survive(pg_url):
    record = run(n=1) | {"build": 7, "queue_id": 42, "x_custom": {"b": 1, "a": [1, 2]}}
    with open_store(pg_url) as store:
        store.add(record)
        (r,) = store.records()
    assert r["build"] == "7" and r["queue_id"] == "42" and r["x_custom"] == {"b": 1, "a": [1, 2]}
    assert list(r) == list(record)  # the json type keeps the text: export looks like the import


def test_add_many_counts_present_keeps_first_in_batch_and_filters(pg_url):
    with open_store(pg_url) as store:
        store.add(run(n=1))
        added, present = store.add_many([run(n=1), run(n=5), run("other", n=3),
                                         run(n=5, duration=1), run(n=6)])
        assert (added, present) == (3, 2)
        assert [r["duration_s"] for r in store.runs("train")] == [3600, 3600, 3600]
        assert [r["run_id"] for r in store.records(since="2026-01-01T00:03:00Z")] == \
            ["other-3", "train-5", "train-6"]
        assert [r["run_id"] for r in store.records(job="other")] == ["other-3"]
        assert store.jobs() == ["other", "train"] and store.count() == 4
        assert [r["run_id"] for r in store.runs("train", limit=1)] == ["train-6"]


def test_add_many_is_all_or_none(pg_url):
    with open_store(pg_url) as store:
        with pytest.raises(RecordError):
            store.add_many([run(n=1), run(n=2), {"job": "x"}])
        assert store.count() == 0
        assert store.add_many(iter([run(n=1), run(n=2)])) == (2, 0)  # the connection is still usable


def test_same_ordering_as_sqlite(pg_url, tmp_path):
    # Byte order, whatever the database locale: upper case before lower, '.5Z' before 'Z'.
    batch = [run("b", n=1), run("B", n=1), run("a", n=1) | {"start": "2026-01-01T00:01:00.5Z"},
             run("_x", n=2), run("Z", n=0)]
    with open_store(pg_url) as pgs, open_store(str(tmp_path / "h.sqlite3")) as lite:
        pgs.add_many(batch)
        lite.add_many(batch)
        assert [r["run_id"] for r in pgs.records()] == [r["run_id"] for r in lite.records()]
        assert pgs.jobs() == lite.jobs()
        assert [r["start"] for r in pgs.recent(3)] == [r["start"] for r in lite.recent(3)]


def test_concurrent_first_opens_migrate_once(pg_url):
    errors: list[BaseException] = []

    def opener():
        try:
            open_store(pg_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with open_store(pg_url) as store:
        assert store.schema_version() == postgres.SCHEMA_VERSION


def test_newer_schema_and_foreign_database_are_refused(pg, pg_url):
    open_store(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE provisioner_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer than this provisioner"):
        open_store(pg_url)
    foreign = pg.create_database("foreign")
    with psycopg.connect(foreign, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (x int)")
    with pytest.raises(StoreError, match="not a provisioner history store"):
        open_store(foreign)


def test_create_false_on_an_empty_database(pg_url):
    with pytest.raises(StoreError, match="holds no provisioner history yet"):
        open_store(pg_url, create=False)


def test_unreachable_server_and_bad_database_are_clear_errors_with_password_hidden(pg):
    port = _free_port()
    url = f"postgresql://alice:s3cret@127.0.0.1:{port}/team"
    with pytest.raises(StoreError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "cannot connect to PostgreSQL at postgresql://alice:***@127.0.0.1" in message
    assert "s3cret" not in message
    with pytest.raises(StoreError, match="cannot connect"):
        open_store(pg.url("no_such_db"))


def test_redact():
    assert redact("postgresql://u:p@h:5/db?sslmode=require&password=x") == \
        "postgresql://u:***@h:5/db?sslmode=require&password=%2A%2A%2A"
    assert redact("postgresql://h/db") == "postgresql://h/db"
    assert redact("/tmp/h.sqlite3") == "/tmp/h.sqlite3"


def _tables(sql: str) -> list[str]:
    return re.findall(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", sql, re.IGNORECASE)


def test_every_sqlite_migration_has_its_postgres_twin():
    # Another engineer appending to store.MIGRATIONS must append here too: same number, same tables.
    assert len(postgres.PG_MIGRATIONS) == len(sqlite_store.MIGRATIONS)
    for number, (lite, pgm) in enumerate(zip(sqlite_store.MIGRATIONS, postgres.PG_MIGRATIONS), 1):
        assert _tables(lite) == _tables(pgm), f"migration {number}"


# -- the command line ------------------------------------------------------------------------------

def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_migrate_copies_sqlite_into_postgres_idempotently(cli, tmp_path, pg_url):
    hist = str(tmp_path / "h.sqlite3")
    records = [run(n=i, cost_usd=0.1 * i) | {"x_extra": i} for i in range(30)] + [run("other", n=3)]
    assert cli("history", "import", str(_jsonl(tmp_path / "in.jsonl", records)), "--history", hist).returncode == 0
    first = cli("history", "migrate", "--to", pg_url, "--history", hist)
    assert first.returncode == 0, first.stderr
    assert "copied 31, already present 0" in first.stdout
    again = cli("history", "migrate", "--to", pg_url, "--history", hist)
    assert again.returncode == 0 and "copied 0, already present 31" in again.stdout
    lite = cli("history", "export", "--history", hist).stdout
    team = cli("history", "export", "--history", pg_url).stdout
    assert lite == team and len(team.splitlines()) == 31
    report = cli("report", "--history", pg_url, "--format", "json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["totals"]["runs"] == 31


def test_migrate_errors_are_clear(cli, tmp_path, pg):
    hist = str(tmp_path / "h.sqlite3")
    cli("history", "import", str(_jsonl(tmp_path / "in.jsonl", [run(n=1)])), "--history", hist)
    down = cli("history", "migrate", "--to", f"postgresql://u:pw@127.0.0.1:{_free_port()}/x", "--history", hist)
    assert down.returncode == 1 and "cannot connect to PostgreSQL" in down.stderr
    assert "Traceback" not in down.stderr and ":pw@" not in down.stderr
    missing = cli("history", "migrate", "--to", pg.url(), "--history", str(tmp_path / "none.sqlite3"))
    assert missing.returncode == 1 and "no history store at" in missing.stderr
    same = cli("history", "migrate", "--to", hist, "--history", hist)
    assert same.returncode == 2 and "same store" in same.stderr


def test_an_older_database_migrates_forward_and_keeps_its_runs(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:  # what the first release created
        conn.execute("CREATE TABLE provisioner_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO provisioner_meta VALUES ('application', 'provisioner'), ('schema_version', '1')")
        conn.execute(postgres.PG_MIGRATIONS[0])
    with open_store(pg_url) as store:
        store.add(run(n=1))
    with open_store(pg_url) as store:
        assert store.schema_version() == postgres.SCHEMA_VERSION and store.count() == 1
    with psycopg.connect(pg_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    expected = {t for sql in postgres.PG_MIGRATIONS for t in _tables(sql)} | {"provisioner_meta"}
    assert tables == expected


def test_alert_state_in_postgres_dedups_and_rate_limits(pg_url):
    from provisioner.alerts.state import open_alert_state
    with open_alert_state(pg_url) as state, open_alert_state(pg_url) as other:  # two processes' worth
        assert state.claim("oom:train:1:r1", 100.0)
        assert not other.claim("oom:train:1:r1", 100.0)
        assert state.admit("oom:train", 600, 100.0) == (True, 0)
        assert other.admit("oom:train", 600, 200.0) == (False, 1)
        assert state.admit("oom:train", 600, 701.0) == (True, 1)
        state.release("oom:train:1:r1")
        assert other.claim("oom:train:1:r1", 800.0)
    with open_store(pg_url) as store:  # the store itself is untouched by the extra table
        assert store.schema_version() == postgres.SCHEMA_VERSION
