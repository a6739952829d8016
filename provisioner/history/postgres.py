"""The history store on PostgreSQL (a team store behind a `postgresql://` URL), through psycopg 3.

Same interface and behaviour as the SQLite store (`store.HistoryStore`): records kept whole as JSON
text (the `json` type keeps the text as given, so extra fields and key order survive), the key
(job, build or '', run_id) with the first record kept, `add_many` in one transaction, a schema
version with forward migrations. Text columns use the "C" collation so ordering and `since`
comparisons are byte order, as in SQLite, whatever the database's locale.

PG_MIGRATIONS mirrors store.MIGRATIONS entry for entry (a test checks both create the same tables):
append to both together. The version lives in `provisioner_meta`; migrations run under a
transaction-scoped advisory lock, so two processes opening a fresh database do not race.
"""

from __future__ import annotations

import json
import re
from typing import Iterable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from provisioner import records
from provisioner.errors import StoreError
from provisioner.sqlconn import connect, is_postgres

URL_PREFIXES = ("postgresql://", "postgres://")
LOCK_ID = 0x50525653  # 'PRVS', as the SQLite store's application_id
APPLICATION = "provisioner"
CONNECT_TIMEOUT_S = 10

# Migration N brings the database from schema version N-1 to N. Never edit a released entry: append,
# together with the SQLite migration of the same number.
PG_MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        job TEXT COLLATE "C" NOT NULL,
        build TEXT COLLATE "C" NOT NULL,
        run_id TEXT COLLATE "C" NOT NULL,
        start TEXT COLLATE "C" NOT NULL,
        duration_s DOUBLE PRECISION NOT NULL,
        exit_code INTEGER NOT NULL,
        instance_type TEXT,
        market TEXT,
        cost_usd DOUBLE PRECISION,
        record JSON NOT NULL,
        PRIMARY KEY (job, build, run_id)
    );
    CREATE INDEX runs_by_job_start ON runs (job, start);
    CREATE INDEX runs_by_start ON runs (start);
    """,
    # 2: the daemon's lease and launch attempts (store.py migration 2; times are epoch seconds).
    """
    CREATE TABLE daemon_lease (
        owner TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires DOUBLE PRECISION NOT NULL,
        acquired DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE daemon_attempts (
        owner TEXT NOT NULL,
        queue_id BIGINT NOT NULL,
        since BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        updated DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (owner, queue_id, since)
    );
    """,
]
SCHEMA_VERSION = len(PG_MIGRATIONS)

_COLUMNS = "job, build, run_id, start, duration_s, exit_code, instance_type, market, cost_usd, record"


def is_postgres_url(location: str) -> bool:
    return is_postgres(location)


def redact(location: str) -> str:
    """The location with any password replaced by '***' (safe to print and log)."""
    if not is_postgres_url(location):
        return location
    try:
        parts = urlsplit(location)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
        query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)])
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return re.sub(r"//[^@/]*@", "//***@", location)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresStore:
    """Usage records in PostgreSQL. Open with `open_postgres_store` (or `open_store` with a URL)."""

    def __init__(self, conn, location: str):
        self._conn = conn            # autocommit; every write is in an explicit transaction
        self.location = location     # redacted: printable

    # -- writing -----------------------------------------------------------------------------
    def add(self, record: dict) -> bool:
        """Store one record; False when its key is already present (the first one is kept)."""
        r = records.normalise(record)
        with self._errors(), self._conn.transaction():
            cur = self._conn.execute(
                f"INSERT INTO runs ({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT DO NOTHING", _row(r))
            return cur.rowcount == 1

    def add_many(self, batch: Iterable[dict]) -> tuple[int, int]:
        """Store records in one transaction; returns (added, already present).

        The batch streams through COPY into a temporary table, then one INSERT ... ON CONFLICT DO
        NOTHING moves it across: a 100k-record import is one round trip's worth of statements.
        A record that fails validation rolls the whole batch back, as in SQLite.
        """
        with self._errors(), self._conn.transaction():
            self._conn.execute(
                "CREATE TEMP TABLE runs_incoming (seq BIGINT, job TEXT COLLATE \"C\", build TEXT COLLATE \"C\","
                " run_id TEXT COLLATE \"C\", start TEXT, duration_s DOUBLE PRECISION, exit_code INTEGER,"
                " instance_type TEXT, market TEXT, cost_usd DOUBLE PRECISION, record TEXT) ON COMMIT DROP")
            n = 0
            with self._conn.cursor().copy(f"COPY runs_incoming (seq, {_COLUMNS}) FROM STDIN") as copy:
                for n, record in enumerate(batch, 1):
                    copy.write_row((n,) + _row(records.normalise(record)))
            # DISTINCT ON ... ORDER BY seq: of two records with one key in the batch, the first wins.
            cur = self._conn.execute(
                f"INSERT INTO runs ({_COLUMNS}) SELECT {_COLUMNS.replace('record', 'record::json')} FROM ("
                " SELECT DISTINCT ON (job, build, run_id) * FROM runs_incoming"
                " ORDER BY job, build, run_id, seq) AS firsts ON CONFLICT DO NOTHING")
            added = cur.rowcount
        return added, n - added

    # -- reading -----------------------------------------------------------------------------
    def runs(self, job: str, limit: int | None = None) -> list[dict]:
        """The job's records, oldest first (the newest `limit` when given)."""
        sql = "SELECT record::text FROM runs WHERE job = %s ORDER BY start DESC, run_id DESC, build DESC"
        params: tuple = (job,)
        if limit:
            sql += " LIMIT %s"
            params += (limit,)
        with self._errors():
            rows = self._conn.execute(sql, params).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]

    def recent(self, limit: int) -> list[dict]:
        """The site's newest `limit` records, every job's (newest first)."""
        with self._errors():
            rows = self._conn.execute("SELECT record::text FROM runs ORDER BY start DESC LIMIT %s", (limit,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def records(self, since: str | None = None, job: str | None = None) -> Iterator[dict]:
        """Every record (optionally from `since`, an ISO time, and for one job), oldest first.

        Streams through a server-side cursor, so a large store is not held in memory at once.
        """
        where, params = [], []
        if since:
            where.append("start >= %s")
            params.append(since)
        if job:
            where.append("job = %s")
            params.append(job)
        sql = "SELECT record::text FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY start, job, build, run_id"
        with self._errors(), self._conn.transaction():
            with self._conn.cursor(name="provisioner_records") as cur:
                cur.itersize = 5000
                cur.execute(sql, params)
                for (text,) in cur:
                    yield json.loads(text)

    def jobs(self) -> list[str]:
        with self._errors():
            return [r[0] for r in self._conn.execute("SELECT DISTINCT job FROM runs ORDER BY job")]

    def count(self) -> int:
        with self._errors():
            return self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def schema_version(self) -> int:
        with self._errors():
            return _version(self._conn) or 0

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "PostgresStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _errors(self):
        return _map_errors(self.location)


class _map_errors:
    """Turn psycopg's errors into StoreError (a lost connection mid-command included)."""

    def __init__(self, location: str):
        self.location = location

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        import psycopg
        if exc is not None and isinstance(exc, psycopg.Error):
            raise StoreError(f"PostgreSQL history {self.location}: {_first_line(exc)}") from None
        return False


def _row(r: dict) -> tuple:
    job, build, run_id = records.key(r)
    return (job, build, run_id, r["start"], float(r["duration_s"]), r["exit_code"], r.get("instance_type"),
            r.get("market"), r.get("cost_usd"), json.dumps(r, separators=(",", ":")))


def _version(conn) -> int | None:
    """The schema version; None when the database has no provisioner_meta table."""
    if conn.execute("SELECT to_regclass('provisioner_meta')").fetchone()[0] is None:
        return None
    rows = dict(conn.execute("SELECT key, value FROM provisioner_meta").fetchall())
    if rows.get("application") != APPLICATION:
        raise StoreError("its provisioner_meta table is not provisioner's")
    return int(rows.get("schema_version", 0))


def _migrate(conn, where: str, create: bool) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        try:
            version = _version(conn)
        except StoreError as exc:
            raise StoreError(f"{where}: {exc}; not a provisioner history store") from None
        if version is None:
            if conn.execute("SELECT to_regclass('runs')").fetchone()[0] is not None:
                raise StoreError(f"{where} has a 'runs' table that is not a provisioner history store; "
                                 "use another database or schema (options=-csearch_path=...)")
            if not create:
                raise StoreError(f"{where} holds no provisioner history yet")
            conn.execute("CREATE TABLE provisioner_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT INTO provisioner_meta VALUES ('application', %s), ('schema_version', '0')",
                         (APPLICATION,))
            version = 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"{where} has schema version {version}, newer than this provisioner "
                             f"understands ({SCHEMA_VERSION}); upgrade provisioner")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute(PG_MIGRATIONS[number - 1])  # no parameters: several statements are allowed
            conn.execute("UPDATE provisioner_meta SET value = %s WHERE key = 'schema_version'", (str(number),))


def open_postgres_store(url: str, *, create: bool = True) -> PostgresStore:
    """Connect to `url`, create or migrate the schema, and return the store.

    Errors (unreachable server, bad credentials, a foreign or newer database) are StoreError with the
    URL's password hidden; psycopg is imported only here, so SQLite users need not install it.
    """
    where = redact(url)
    try:
        import psycopg
    except ImportError:
        raise StoreError(f"{where}: PostgreSQL history needs psycopg: pip install 'psycopg[binary]'") from None
    try:
        conn = connect(url, timeout_s=CONNECT_TIMEOUT_S, application_name=APPLICATION)
    except (psycopg.Error, ValueError) as exc:
        raise StoreError(f"cannot connect to PostgreSQL at {where}: {_first_line(exc)}") from None
    try:
        with _map_errors(where):
            _migrate(conn, where, create)
    except BaseException:
        conn.close()
        raise
    return PostgresStore(conn, where)
