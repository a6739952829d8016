"""One small connection for the daemon's own tables (lease, attempts) in the history store.

The history store may be SQLite (a path) or PostgreSQL (a URL); both carry the `daemon_lease` and
`daemon_attempts` tables (migration 2). This wraps either with the two differences the daemon meets:
the parameter style, and how a read-then-write is made exclusive (SQLite `BEGIN IMMEDIATE`,
PostgreSQL a table lock), so the lease works across hosts when the team store is PostgreSQL.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

from provisioner.sqlconn import connect, dialect, is_postgres


class DaemonDb:
    def __init__(self, location: str):
        self.location = location
        self.postgres = is_postgres(location)
        self._lock = threading.Lock()          # the loop and the drain poll share it
        self._conn: Any = connect(location, timeout_s=10, application_name="provisioner-daemon",
                                  check_same_thread=False)

    def _sql(self, sql: str) -> str:
        return dialect(sql, self.postgres)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return list(self._conn.execute(self._sql(sql), params).fetchall())

    def execute(self, sql: str, params: tuple = ()) -> None:
        with self._lock:
            self._conn.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        with self._lock:
            if self.postgres:
                with self._conn.cursor() as cur:
                    cur.executemany(self._sql(sql), rows)
            else:
                self._conn.executemany(sql, rows)

    @contextmanager
    def exclusive(self, table: str) -> Iterator["DaemonDb"]:
        """A transaction that no other daemon can interleave with (read, decide, write)."""
        with self._lock:
            if self.postgres:
                with self._conn.transaction():
                    self._conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
                    yield _Unlocked(self)
            else:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _Unlocked(self)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")

    @property
    def greatest(self) -> str:
        return "GREATEST" if self.postgres else "max"

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _Unlocked:
    """The same connection inside `exclusive` (whose lock is already held)."""

    def __init__(self, db: DaemonDb):
        self._db = db

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return list(self._db._conn.execute(self._db._sql(sql), params).fetchall())

    def execute(self, sql: str, params: tuple = ()) -> None:
        self._db._conn.execute(self._db._sql(sql), params)
