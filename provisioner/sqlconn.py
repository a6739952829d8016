"""The one way the product opens an SQL connection: SQLite for a path, PostgreSQL for a URL.

The history store (history/store.py, history/postgres.py), the daemon's own tables (daemon/db.py)
and the alert state (alerts/state.py) all open theirs here, in autocommit mode (they begin their own
transactions), and write their SQL with `?` placeholders that `dialect` turns into PostgreSQL's `%s`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

URL_PREFIXES = ("postgresql://", "postgres://")


def is_postgres(location: str) -> bool:
    return location.startswith(URL_PREFIXES)


def connect(location: str, *, timeout_s: float, application_name: str = "provisioner",
            check_same_thread: bool = True, **sqlite_kwargs: Any) -> Any:
    """An autocommit connection to `location`: psycopg for a postgresql:// URL (its errors and a
    missing psycopg propagate: the caller words them), else sqlite3 (sqlite3.Error propagates)."""
    if is_postgres(location):
        import psycopg
        return psycopg.connect(location, autocommit=True, connect_timeout=max(1, int(timeout_s)),
                               application_name=application_name)
    return sqlite3.connect(location, timeout=timeout_s, isolation_level=None,
                           check_same_thread=check_same_thread, **sqlite_kwargs)


def dialect(sql: str, postgres: bool) -> str:
    """SQL written with `?` placeholders, in the connection's parameter style."""
    return sql.replace("?", "%s") if postgres else sql
