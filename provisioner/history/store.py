"""SQLite history store with a schema version and forward migrations from the first release.

Each record is kept whole as JSON (unknown fields survive export); a few columns are copied out of
it for indexing. Writes of one import happen in one transaction, so a killed import leaves all or
none of its records.

Every SQLite failure leaves as a StoreError naming the store: StoreBusy for what passes (another
writer holding the lock past the busy timeout, a full disk), the plain StoreError for a damaged or
foreign file. A store that this process cannot write (read-only file, directory or file system) is
opened read-only: it can be shown, exported and planned from. Creation and migration run under
SQLite's write lock and read the version again inside it, so processes opening a new store at
once do not race.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote

from provisioner import records
from provisioner.backoff import Backoff
from provisioner.errors import StoreError
from provisioner.sqlconn import connect

BUSY_TIMEOUT_S = 30.0  # how long a write waits for another writer's lock

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


class StoreBusy(StoreError):
    """A transient failure: the store is locked by another writer, or the disk is full."""


@dataclass
class ImportResult:
    added: int = 0
    present: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


class HistoryStore:
    """Usage records in SQLite. Open with `open_store`."""

    def __init__(self, conn: sqlite3.Connection, location: str, read_only: bool = False):
        self._conn = conn
        self.location = location
        self.read_only = read_only

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's errors as StoreErrors that name the store (one line, no traceback)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise store_error(self.location, exc, self.read_only) from None

    # -- writing -----------------------------------------------------------------------------
    def add(self, record: dict) -> bool:
        """Store one record; False when its key is already present (the first one is kept)."""
        r = records.normalise(record)
        with self._guard(), self._conn:
            return self._insert(r)

    def add_many(self, batch: Iterable[dict]) -> tuple[int, int]:
        """Store records in one transaction; returns (added, already present)."""
        added = present = 0
        with self._guard(), self._conn:
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
             records.dumps(r, separators=(",", ":"), sort_keys=False)))
        return cur.rowcount == 1

    # -- reading -----------------------------------------------------------------------------
    def runs(self, job: str, limit: int | None = None) -> list[dict]:
        """The job's records, oldest first (the newest `limit` when given)."""
        sql = "SELECT record FROM runs WHERE job = ? ORDER BY start DESC, run_id DESC"
        params: tuple = (job,)
        if limit:
            sql += " LIMIT ?"
            params += (limit,)
        with self._guard():
            rows = self._conn.execute(sql, params).fetchall()
            return [self._load(r[0]) for r in reversed(rows)]

    def recent(self, limit: int) -> list[dict]:
        """The site's newest `limit` records, every job's (newest first)."""
        with self._guard():
            rows = self._conn.execute("SELECT record FROM runs ORDER BY start DESC LIMIT ?", (limit,)).fetchall()
            return [self._load(r[0]) for r in rows]

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
        with self._guard():
            for (text,) in self._conn.execute(sql + " ORDER BY start, job, build, run_id", params):
                yield self._load(text)

    def _load(self, text: str) -> dict:
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise StoreError(f"{self.location} holds a damaged record ({exc}); "
                             "move the file away or point --history elsewhere") from None

    def jobs(self) -> list[str]:
        with self._guard():
            return [r[0] for r in self._conn.execute("SELECT DISTINCT job FROM runs ORDER BY job")]

    def count(self) -> int:
        with self._guard():
            return self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def schema_version(self) -> int:
        with self._guard():
            return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "HistoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def store_error(where: str, exc: sqlite3.Error, read_only: bool = False) -> StoreError:
    """The StoreError for an SQLite error at `where`: StoreBusy when it passes."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return StoreBusy(f"{where} is locked by another writer ({text}) for more than "
                         f"{BUSY_TIMEOUT_S:g} s")
    if "full" in low or (("i/o error" in low or "unable to open" in low) and _disk_full(where)):
        return StoreBusy(f"{where} cannot be written: the disk is full ({text})")
    if "i/o error" in low:
        return StoreBusy(f"{where} cannot be read or written now ({text})")
    if read_only or "readonly" in low or "read-only" in low:
        return StoreError(f"{where} is read-only here ({text})")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError) \
            or "malformed" in low or "not a database" in low:
        return StoreError(f"{where} is damaged ({text}); move it away or point --history elsewhere")
    return StoreError(f"{where}: history store error ({text})")


def open_store(location: str, *, create: bool = True) -> HistoryStore:
    """Open (creating and migrating as needed) the store at `location` (a SQLite path or postgresql:// URL).

    Records spooled beside the store by an earlier command (history/spool.py) are merged in."""
    if location.startswith(("postgresql://", "postgres://")):
        from provisioner.history.postgres import open_postgres_store  # psycopg only when asked for
        store = open_postgres_store(location, create=create)
    else:
        store = _open_sqlite(location, create)
    from provisioner.history.spool import merge_spool
    merge_spool(store)
    return store  # type: ignore[return-value]  # the PostgreSQL store has the same interface


def _open_sqlite(location: str, create: bool) -> HistoryStore:
    path = Path(location).expanduser()
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a history store")
    if not path.exists():
        if not create:
            raise StoreError(f"no history store at {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the history store {path}: {exc.strerror}") from None
    if path.exists() and not _writable(path):
        return _open_read_only(path)
    try:
        conn = connect(str(path), timeout_s=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the history store {path} ({exc})") from None
    try:
        _migrate_patiently(conn, str(path))
    except sqlite3.Error as exc:
        conn.close()
        raise _open_error(path, exc) from None
    except StoreError:
        conn.close()
        raise
    conn.isolation_level = ""  # implicit BEGIN for writes; `with conn` commits or rolls back
    return HistoryStore(conn, str(path))


def _disk_full(where: str) -> bool:
    try:
        stat = os.statvfs(Path(where).parent)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 64 * 1024  # less than a few pages left


def _writable(path: Path) -> bool:
    """Whether this process may write the store and its journal files (false on a read-only file
    system even for root)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _open_error(path: Path, exc: sqlite3.Error) -> StoreError:
    error = store_error(str(path), exc)
    if not isinstance(error, StoreBusy):
        return StoreError(f"{path} is not a usable history store ({exc}); "
                          "move it away or point --history elsewhere")
    return error


def _open_read_only(path: Path) -> HistoryStore:
    """A store this process cannot write: read it in place. `mode=ro` needs to create the WAL's
    shared-memory file; where even that is impossible (a read-only directory) `immutable=1`
    reads the file as it is, without locks."""
    last: sqlite3.Error | None = None
    for flags in ("mode=ro", "immutable=1"):
        try:
            conn = sqlite3.connect(f"file:{quote(str(path))}?{flags}", uri=True,
                                   timeout=BUSY_TIMEOUT_S, isolation_level=None)
            version = _check_ours(conn, str(path))
        except sqlite3.Error as exc:
            last = exc
            continue
        if version == 0:
            conn.close()
            raise StoreError(f"{path} is read-only here and holds no history yet")
        conn.isolation_level = ""
        return HistoryStore(conn, str(path), read_only=True)
    raise _open_error(path, last) from None  # type: ignore[arg-type]


def _check_ours(conn: sqlite3.Connection, where: str) -> int:
    """The schema version, after checking the file is a store of ours this version understands."""
    # one statement, one snapshot: read apart, another process's migration could commit between
    app_id, version, tables = conn.execute(
        "SELECT (SELECT application_id FROM pragma_application_id),"
        " (SELECT user_version FROM pragma_user_version), (SELECT COUNT(*) FROM sqlite_master)").fetchone()
    if app_id != APPLICATION_ID and (tables or version):
        raise StoreError(f"{where} is an SQLite file but not a provisioner history store")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{where} has schema version {version}, newer than this provisioner "
                         f"understands ({SCHEMA_VERSION}); upgrade provisioner")
    return version


# Opening a store that other processes are creating at the same moment: switching to WAL and the
# first read while another connection runs WAL recovery can answer SQLITE_BUSY at once, without the
# busy handler's wait (20 processes on 2 busy cores saw it). Retried within the busy timeout.
MIGRATE_BACKOFF = Backoff(base_s=0.02, cap_s=1.0, attempts=1_000, jitter="full")


def _migrate_patiently(conn: sqlite3.Connection, where: str) -> None:
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    retry = 0
    while True:
        try:
            return _migrate(conn, where)
        except sqlite3.OperationalError as exc:
            low = str(exc).lower()
            if not ("locked" in low or "busy" in low) or time.monotonic() >= deadline:
                raise
        time.sleep(min(MIGRATE_BACKOFF.delay(retry), max(0.0, deadline - time.monotonic())))
        retry += 1


def _migrate(conn: sqlite3.Connection, where: str) -> None:
    """Bring the store to SCHEMA_VERSION. The version is read again under the write lock (BEGIN
    IMMEDIATE): of processes creating one new store at once, one migrates and the others find it
    done. Each step and its version number commit together."""
    if _check_ours(conn, where) == SCHEMA_VERSION:
        return
    conn.execute("PRAGMA journal_mode=WAL")
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _check_ours(conn, where)
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return
            number = version + 1
            # statement by statement (executescript would commit first): the step, the version
            # and the application id land in this transaction together
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """The SQL statements of a migration script, one by one."""
    out, current = [], ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                out.append(current.strip())
            current = ""
    return out
