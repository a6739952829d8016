"""What the daemon keeps across restarts besides tags and nodes: attempt counters and its secret.

* Attempts per queue item (in the history store, SQLite or PostgreSQL, migration 2): a restarted daemon never reuses the
  node name or idempotency token of an earlier attempt whose instance is gone.
* The daemon secret (env PROVISIONER_DAEMON_SECRET, else a 0600 file in the state directory): agent
  report tokens are derived from it, `<node>.<HMAC(secret, node)>`, so a restarted daemon accepts
  the agents it launched before, and a token names its node without any table. Whether a token is
  still alive (its node or instance lives, or went away less than a grace ago) is `agents.AgentBook`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Iterable

from provisioner.daemon.agents import AgentBook
from provisioner.daemon.db import DaemonDb
from provisioner.daemon.model import ItemKey
from provisioner.errors import StoreError

SECRET_ENV = "PROVISIONER_DAEMON_SECRET"
SECRET_FILE = "daemon-secret"
MIN_SECRET_BYTES = 16


class Attempts:
    """Launch attempts per (queue id, inQueueSince) for one owner, in the history store."""

    def __init__(self, location: str, owner: str, db: DaemonDb | None = None):
        self.owner = owner
        self._own_db = db is None
        self.db = db or DaemonDb(location)

    def load(self) -> dict[ItemKey, int]:
        rows = self.db.query("SELECT queue_id, since, attempts FROM daemon_attempts WHERE owner = ?", (self.owner,))
        return {(int(q), int(s)): int(a) for q, s, a in rows}

    def record(self, key: ItemKey, attempt: int) -> None:
        """Persist an attempt before it acts (create node, launch): a crash after it skips the number."""
        self.db.execute(
            "INSERT INTO daemon_attempts (owner, queue_id, since, attempts, updated) VALUES (?,?,?,?,?) "
            f"ON CONFLICT (owner, queue_id, since) DO UPDATE SET attempts = "
            f"{self.db.greatest}(daemon_attempts.attempts, excluded.attempts), updated = excluded.updated",
            (self.owner, key[0], key[1], attempt, time.time()))

    def prune(self, live: Iterable[ItemKey], older_than_s: float = 86400) -> None:
        """Forget items no longer queued (after a day: the queue is restored with the same ids)."""
        keep = set(live)
        cutoff = time.time() - older_than_s
        rows = self.db.query("SELECT queue_id, since FROM daemon_attempts WHERE owner = ? AND updated < ?",
                             (self.owner, cutoff))
        gone = [(self.owner, q, s) for q, s in rows if (int(q), int(s)) not in keep]
        if gone:
            self.db.executemany("DELETE FROM daemon_attempts WHERE owner = ? AND queue_id = ? AND since = ?", gone)

    def close(self) -> None:
        if self._own_db:
            self.db.close()


def load_secret(state_dir: Path, environ: dict | None = None) -> bytes:
    """The daemon secret: from the environment, else a 0600 file created once in `state_dir`.

    The file appears whole or not at all (written aside, then linked into place), so a daemon
    killed while creating it, or a second one starting beside it, never reads a partial secret."""
    env = (environ if environ is not None else os.environ).get(SECRET_ENV, "").strip()
    if env:
        return env.encode()
    path = state_dir / SECRET_FILE
    value = _read_secret(path)
    if value is not None:
        return value
    state_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    tmp = state_dir / f".{SECRET_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(value.hex())
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)                      # fails if another daemon's secret is there already
    except FileExistsError:
        return load_secret(state_dir, environ)  # theirs, read as any restarted daemon reads it
    finally:
        tmp.unlink(missing_ok=True)
    return value


def _read_secret(path: Path) -> bytes | None:
    """The secret in `path`; None if there is no file. Anything but hex of 16 bytes or more (the
    daemon writes 32) is an error: a short or empty key would make agents' tokens guessable."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) < MIN_SECRET_BYTES:
        raise StoreError(f"{path}: not a daemon secret (expected at least {2 * MIN_SECRET_BYTES} hex "
                         f"digits, found {len(text)} characters); remove it to make a new one (agents "
                         f"running now then need relaunching), or set {SECRET_ENV}")
    return value


BUILD_MARK = "~"                 # node~N: the token of a reused agent's N-th build


class Tokens:
    """Per-agent report tokens derived from the daemon secret (never logged). `book` says which
    are alive (agents.AgentBook): a token is valid only while its node lives, plus a grace."""

    def __init__(self, secret: bytes, book: AgentBook | None = None):
        self._secret = secret
        self.book = book if book is not None else AgentBook()
        self._builds: dict[str, int] = {}       # reused agents: node -> the build whose token is valid
        self._next: dict[str, int] = {}         # node -> the build handed over, its token not used yet

    def __repr__(self) -> str:
        return "Tokens(***)"

    def for_node(self, node: str, build: int = 0) -> str:
        """The token of `node` (called when its agent's secret bundle is made: the node exists).
        A reused agent (daemon/reuse.py) gets a new token for its `build`-th build (1, 2, ...): once
        that one is used, the earlier ones are refused (until then the last build may still post its
        own usage record: on EC2 its watcher does so while the agent is recycled)."""
        self.book.minted(node)
        if build:
            self._next[node] = build
            name = f"{node}{BUILD_MARK}{build}"
            return f"{name}.{self._mac(name)}"
        return f"{node}.{self._mac(node)}"

    def node_of(self, token: str) -> str | None:
        """The node a token belongs to, or None when it is not one of ours (or an earlier build's)."""
        name, _, mac = token.rpartition(".")
        if not name or not mac or not hmac.compare_digest(mac, self._mac(name)):
            return None
        node, _, build = name.partition(BUILD_MARK)
        number = int(build) if build.isdigit() else 0
        if number and self._next.get(node) == number:          # the next build's first use
            self._builds[node] = self._next.pop(node)
        if self._builds.get(node, 0) != number:
            return None
        return node

    def _mac(self, node: str) -> str:
        return hmac.new(self._secret, node.encode(), hashlib.sha256).hexdigest()
