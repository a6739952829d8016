"""Dedup and rate-limit state of alerts, kept in the history store (SQLite file or PostgreSQL).

One table, `alert_state (key, last_sent, suppressed)`, beside the store's own tables in the same
file or database. Event keys ("timeout:job:build:run") are claimed once; group keys ("timeout:job")
hold when the group last sent and how many alerts the rate limit has held back since. Each check is
one transaction, so the daemon and a standalone `run` (or two `alerts check` passes) never both send.

The table is created here (IF NOT EXISTS) rather than by a numbered store migration, so alerts stay
an optional feature with no schema step for stores that never use them.
"""

from __future__ import annotations

import sqlite3
import time

from provisioner.errors import StoreError
from provisioner.history.postgres import is_postgres_url, redact
from provisioner.sqlconn import connect

_TABLE = ("CREATE TABLE IF NOT EXISTS alert_state (key TEXT PRIMARY KEY, last_sent DOUBLE PRECISION NOT NULL,"
          " suppressed INTEGER NOT NULL DEFAULT 0)")
KEEP_S = 90 * 86400  # event keys older than this are forgotten (a rerun of such old records is moot)


class AlertState:
    """Open with `open_alert_state(location)`; `location` is the history store's."""

    def __init__(self, conn, postgres: bool, location: str):
        self._conn, self._pg, self.location = conn, postgres, location
        self._p = "%s" if postgres else "?"

    def _tx(self):
        if self._pg:
            return self._conn.transaction()
        return _SqliteImmediate(self._conn)

    def _q(self, sql: str) -> str:
        return sql.replace("?", self._p)

    def claim(self, key: str, now: float | None = None) -> bool:
        """True the first time `key` is seen (the caller announces it), False after."""
        now = time.time() if now is None else now
        with self._tx():
            cur = self._conn.execute(self._q("INSERT INTO alert_state (key, last_sent) VALUES (?, ?) "
                                             "ON CONFLICT (key) DO NOTHING"), (key, now))
            return cur.rowcount == 1

    def release(self, key: str) -> None:
        """Forget a claim (delivery failed everywhere: a later pass may try again)."""
        with self._tx():
            self._conn.execute(self._q("DELETE FROM alert_state WHERE key = ?"), (key,))

    def admit(self, group: str, limit_s: float, now: float | None = None) -> tuple[bool, int]:
        """(send?, held back since the last message). Not admitted: the held-back count grows."""
        now = time.time() if now is None else now
        key = "group:" + group
        with self._tx():
            self._conn.execute(self._q("INSERT INTO alert_state (key, last_sent, suppressed) VALUES (?, ?, 0) "
                                       "ON CONFLICT (key) DO NOTHING"), (key, -1e18))
            lock = " FOR UPDATE" if self._pg else ""
            last, held = self._conn.execute(self._q(f"SELECT last_sent, suppressed FROM alert_state WHERE key = ?{lock}"),
                                            (key,)).fetchone()
            if limit_s > 0 and now - last < limit_s:
                self._conn.execute(self._q("UPDATE alert_state SET suppressed = suppressed + 1 WHERE key = ?"), (key,))
                return False, held + 1
            self._conn.execute(self._q("UPDATE alert_state SET last_sent = ?, suppressed = 0 WHERE key = ?"),
                               (now, key))
            return True, held

    def prune(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._tx():
            cur = self._conn.execute(self._q("DELETE FROM alert_state WHERE key NOT LIKE 'group:%' AND last_sent < ?"),
                                     (now - KEEP_S,))
            return cur.rowcount

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "AlertState":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _SqliteImmediate:
    """BEGIN IMMEDIATE ... COMMIT: the write lock is taken before the read, so check-then-set is atomic."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, exc, tb) -> bool:
        self._conn.execute("COMMIT" if kind is None else "ROLLBACK")
        return False


def open_alert_state(location: str) -> AlertState:
    """The alert state beside the history store at `location` (which is opened, and so migrated, first)."""
    from provisioner.history import open_store
    open_store(location).close()  # a foreign, corrupt or newer store fails here with its clear message
    if is_postgres_url(location):
        import psycopg
        try:
            conn = connect(location, timeout_s=10)
            conn.execute(_TABLE)
        except psycopg.Error as exc:
            raise StoreError(f"alert state in {redact(location)}: {str(exc).strip().splitlines()[0]}") from None
        return AlertState(conn, True, redact(location))
    try:
        conn = connect(location, timeout_s=30)
        conn.execute(_TABLE.replace("DOUBLE PRECISION", "REAL"))
    except sqlite3.Error as exc:
        raise StoreError(f"alert state in {location}: {exc}") from None
    return AlertState(conn, False, location)
