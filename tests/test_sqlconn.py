"""The one SQL connection helper (provisioner.sqlconn): SQLite for a path, PostgreSQL for a URL."""

import sqlite3

from provisioner.sqlconn import connect, dialect, is_postgres


def test_a_path_is_sqlite_in_autocommit(tmp_path):
    conn = connect(str(tmp_path / "x.sqlite3"), timeout_s=5)
    assert isinstance(conn, sqlite3.Connection) and conn.isolation_level is None
    conn.execute("CREATE TABLE t (a)")
    conn.execute(dialect("INSERT INTO t VALUES (?)", postgres=False), (1,))
    assert sqlite3.connect(str(tmp_path / "x.sqlite3")).execute("SELECT a FROM t").fetchall() == [(1,)]


def test_urls_and_placeholders():
    assert is_postgres("postgresql://u@h/db") and is_postgres("postgres://h/db") and not is_postgres("/x.sqlite3")
    assert dialect("SELECT ? WHERE a = ?", postgres=True) == "SELECT %s WHERE a = %s"
