"""The lease: only one daemon acts for an owner id at a time (a row in the history store, SQLite
or PostgreSQL: with a team store on PostgreSQL it holds across hosts).

A holder takes the lease when there is none, when it has expired, or when its holder is a process
on this host that no longer runs (a SIGKILLed daemon restarted at once need not wait for expiry).
It renews the lease every tick and gives it back on exit. A second daemon waits and says so.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from typing import Callable

from provisioner.daemon.db import DaemonDb

log = logging.getLogger(__name__)


def make_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _dead_local(holder: str) -> bool:
    """Is the holder a process on this host that is gone?"""
    try:
        host, pid, _ = holder.rsplit(":", 2)
        pid_n = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname() or pid_n == os.getpid():
        return False
    try:
        os.kill(pid_n, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Lease:
    """The lease row for `owner` in the history store at `location` (SQLite path or PostgreSQL URL,
    migrated by open_store), or on a DaemonDb given as `db`."""

    def __init__(self, location: str, owner: str, holder: str | None = None, ttl_s: float = 30.0,
                 clock: Callable[[], float] = time.time, db: DaemonDb | None = None):
        self.owner = owner
        self.holder = holder or make_holder()
        self.ttl_s = ttl_s
        self._clock = clock
        self.held = False
        self._own_db = db is None
        self.db = db or DaemonDb(location)

    def try_acquire(self) -> bool:
        """Take or renew the lease; False when another live holder has it."""
        now = self._clock()
        with self.db.exclusive("daemon_lease") as tx:
            rows = tx.query("SELECT holder, expires FROM daemon_lease WHERE owner = ?", (self.owner,))
            row = rows[0] if rows else None
            ours = row is None or row[0] == self.holder or row[1] < now or _dead_local(row[0])
            if ours:
                tx.execute(
                    "INSERT INTO daemon_lease (owner, holder, expires, acquired) VALUES (?,?,?,?) "
                    "ON CONFLICT (owner) DO UPDATE SET holder = excluded.holder, expires = excluded.expires, "
                    "acquired = CASE WHEN daemon_lease.holder = excluded.holder THEN daemon_lease.acquired "
                    "ELSE excluded.acquired END", (self.owner, self.holder, now + self.ttl_s, now))
        if ours:
            if not self.held:
                log.info("%s", json.dumps({"event": "lease.acquired", "owner": self.owner,
                                           "holder": self.holder, "previous": row[0] if row else None}))
            self.held = True
            return True
        if self.held:
            log.error("%s", json.dumps({"event": "lease.lost", "owner": self.owner, "holder": self.holder,
                                        "taken_by": row[0]}))
        self.held = False
        return False

    def current(self) -> tuple[str, float] | None:
        rows = self.db.query("SELECT holder, expires FROM daemon_lease WHERE owner = ?", (self.owner,))
        return (rows[0][0], rows[0][1]) if rows else None

    def release(self) -> None:
        """Give the lease back (only if we hold it), so a successor starts at once."""
        self.db.execute("DELETE FROM daemon_lease WHERE owner = ? AND holder = ?", (self.owner, self.holder))
        self.held = False

    def wait(self, stop: Callable[[], bool], interval_s: float = 1.0,
             sleep: Callable[[float], None] = time.sleep) -> bool:
        """Block until the lease is ours (True) or `stop()` says to give up (False); log while waiting."""
        logged = 0.0
        while not stop():
            if self.try_acquire():
                return True
            now = self._clock()
            if now - logged >= 30:
                cur = self.current()
                log.warning("%s", json.dumps({"event": "lease.waiting", "owner": self.owner,
                                              "held_by": cur[0] if cur else None,
                                              "expires_in_s": round(cur[1] - now, 1) if cur else None}))
                logged = now
            sleep(interval_s)
        return False

    def close(self) -> None:
        if self._own_db:
            self.db.close()
