"""SQLite history store with a schema version and forward migrations from the first release.

Each record is kept whole as JSON (unknown fields survive export); a few columns are copied out of
it for indexing. Writes of one import happen in one transaction, so a killed import leaves all or
none of its records.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from provisioner import records
from provisioner.errors import StoreError

# 'PRVS' as a big-endian int: marks the file as ours (PRAGMA application_id).
APPLICATION_ID = 0x50525653

# Migration N brings a store from schema version N-1 to N. Never edit a released entry: append.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        job TEXT NOT NULL,
        build TEXT NOT NULL,
        run_id TEXT NOT NULL,
        start TEXT NOT NULL,
        duration_s REAL NOT NULL,
        exit_code INTEGER NOT NULL,
        instance_type TEXT,
        market TEXT,
        cost_usd REAL,
        record TEXT NOT NULL,
        PRIMARY KEY (job, build, run_id)
    );
    CREATE INDEX runs_by_job_start ON runs (job, start);
    CREATE INDEX runs_by_start ON runs (start);
    """,
    # 2: the daemon's lease (one daemon acts per owner id) and its launch attempts per queue item
    # (a restarted daemon never reuses an attempt's node name or idempotency token).
    """
    CREATE TABLE daemon_lease (
        owner TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires REAL NOT NULL,
        acquired REAL NOT NULL
    );
    CREATE TABLE daemon_attempts (
        owner TEXT NOT NULL,
        queue_id INTEGER NOT NULL,
        since INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (owner, queue_id, since)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class ImportResult:
    added: int = 0
    present: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


class HistoryStore:
    """Usage records in SQLite. Open with `open_store`."""

    def __init__(self, conn: sqlite3.Connection, location: str):
        self._conn = conn
        self.location = location

    # -- writing -----------------------------------------------------------------------------
    def add(self, record: dict) -> bool:
        """Store one record; False when its key is already present (the first one is kept)."""
        with self._conn:
            return self._insert(records.normalise(record))

    def add_many(self, batch: Iterable[dict]) -> tuple[int, int]:
        """Store records in one transaction; returns (added, already present)."""
        added = present = 0
        with self._conn:
            for record in batch:
                if self._insert(records.normalise(record)):
                    added += 1
                else:
                    present += 1
        return added, present

    def _insert(self, r: dict) -> bool:
        job, build, run_id = records.key(r)
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO runs (job, build, run_id, start, duration_s, exit_code,"
            " instance_type, market, cost_usd, record) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (job, build, run_id, r["start"], float(r["duration_s"]), r["exit_code"],
             r.get("instance_type"), r.get("market"), r.get("cost_usd"),
             json.dumps(r, separators=(",", ":"), sort_keys=False)))
        return cur.rowcount == 1

    # -- reading -----------------------------------------------------------------------------
    def runs(self, job: str, limit: int | None = None) -> list[dict]:
        """The job's records, oldest first (the newest `limit` when given)."""
        sql = "SELECT record FROM runs WHERE job = ? ORDER BY start DESC, run_id DESC"
        params: tuple = (job,)
        if limit:
            sql += " LIMIT ?"
            params += (limit,)
        rows = self._conn.execute(sql, params).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]

    def records(self, since: str | None = None, job: str | None = None) -> Iterator[dict]:
        """Every record (optionally from `since`, an ISO time, and for one job), oldest first."""
        sql, params = "SELECT record FROM runs", []
        where = []
        if since:
            where.append("start >= ?")
            params.append(since)
        if job:
            where.append("job = ?")
            params.append(job)
        if where:
            sql += " WHERE " + " AND ".join(where)
        for (text,) in self._conn.execute(sql + " ORDER BY start, job, build, run_id", params):
            yield json.loads(text)

    def jobs(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT DISTINCT job FROM runs ORDER BY job")]

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "HistoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(location: str, *, create: bool = True) -> HistoryStore:
    """Open (creating and migrating as needed) the store at `location` (a SQLite path or postgresql:// URL)."""
    if location.startswith(("postgresql://", "postgres://")):
        from provisioner.history.postgres import open_postgres_store  # psycopg only when asked for
        return open_postgres_store(location, create=create)  # type: ignore[return-value]  # same interface
    path = Path(location).expanduser()
    if not path.exists():
        if not create:
            raise StoreError(f"no history store at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        conn.isolation_level = ""  # implicit BEGIN for writes; `with conn` commits or rolls back
        _migrate(conn, str(path))
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a usable history store ({exc}); "
                         "move it away or point --history elsewhere") from None
    return HistoryStore(conn, str(path))


def _migrate(conn: sqlite3.Connection, where: str) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
    if app_id != APPLICATION_ID and (tables or version):
        raise StoreError(f"{where} is an SQLite file but not a provisioner history store")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{where} has schema version {version}, newer than this provisioner "
                         f"understands ({SCHEMA_VERSION}); upgrade provisioner")
    if version == SCHEMA_VERSION:
        return
    conn.execute("PRAGMA journal_mode=WAL")
    for number in range(version + 1, SCHEMA_VERSION + 1):
        # executescript commits first; wrap each step so a crash leaves the previous version intact
        conn.executescript(f"BEGIN; {MIGRATIONS[number - 1]}; PRAGMA user_version = {number}; "
                           f"PRAGMA application_id = {APPLICATION_ID}; COMMIT;")
