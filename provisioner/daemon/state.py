"""What the daemon keeps across restarts besides tags and nodes: attempt counters and its secret.

* Attempts per queue item (in the history store, migration 2): a restarted daemon never reuses the
  node name or idempotency token of an earlier attempt whose instance is gone.
* The daemon secret (env PROVISIONER_DAEMON_SECRET, else a 0600 file in the state directory): agent
  report tokens are derived from it, `<node>.<HMAC(secret, node)>`, so a restarted daemon accepts
  the agents it launched before, and a token names its node without any table.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Iterable

from provisioner.daemon.model import ItemKey

SECRET_ENV = "PROVISIONER_DAEMON_SECRET"


class Attempts:
    """Launch attempts per (queue id, inQueueSince) for one owner, in the SQLite file at `path`."""

    def __init__(self, path: str, owner: str):
        self.owner = owner
        self._conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)

    def load(self) -> dict[ItemKey, int]:
        rows = self._conn.execute("SELECT queue_id, since, attempts FROM daemon_attempts WHERE owner = ?",
                                  (self.owner,))
        return {(q, s): a for q, s, a in rows}

    def record(self, key: ItemKey, attempt: int) -> None:
        """Persist an attempt before it acts (create node, launch): a crash after it skips the number."""
        self._conn.execute(
            "INSERT INTO daemon_attempts (owner, queue_id, since, attempts, updated) VALUES (?,?,?,?,?) "
            "ON CONFLICT(owner, queue_id, since) DO UPDATE SET attempts = max(attempts, excluded.attempts), "
            "updated = excluded.updated", (self.owner, key[0], key[1], attempt, time.time()))

    def prune(self, live: Iterable[ItemKey], older_than_s: float = 86400) -> None:
        """Forget items no longer queued (after a day: the queue is restored with the same ids)."""
        keep = set(live)
        cutoff = time.time() - older_than_s
        rows = self._conn.execute("SELECT queue_id, since FROM daemon_attempts WHERE owner = ? AND updated < ?",
                                  (self.owner, cutoff)).fetchall()
        gone = [(self.owner, q, s) for q, s in rows if (q, s) not in keep]
        if gone:
            self._conn.executemany("DELETE FROM daemon_attempts WHERE owner = ? AND queue_id = ? AND since = ?", gone)

    def close(self) -> None:
        self._conn.close()


def load_secret(state_dir: Path, environ: dict | None = None) -> bytes:
    """The daemon secret: from the environment, else a 0600 file created once in `state_dir`."""
    env = (environ if environ is not None else os.environ).get(SECRET_ENV, "").strip()
    if env:
        return env.encode()
    path = state_dir / "daemon-secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:                  # another daemon created it a moment ago
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(value.hex())
    return value


class Tokens:
    """Per-agent report tokens derived from the daemon secret (never logged)."""

    def __init__(self, secret: bytes):
        self._secret = secret

    def __repr__(self) -> str:
        return "Tokens(***)"

    def for_node(self, node: str) -> str:
        return f"{node}.{self._mac(node)}"

    def node_of(self, token: str) -> str | None:
        """The node a token belongs to, or None when it is not one of ours."""
        node, _, mac = token.rpartition(".")
        if not node or not mac or not hmac.compare_digest(mac, self._mac(node)):
            return None
        return node

    def _mac(self, node: str) -> str:
        return hmac.new(self._secret, node.encode(), hashlib.sha256).hexdigest()
