"""What the agent API may believe about an agent: is its token alive, which build runs there, and
may it post again now. The daemon's loop tells this book what it observes; the HTTP threads ask.

* A token names one node (`<node>.<HMAC>`, see state.Tokens). Node names are unique per launch
  attempt and a node has at most one instance, so a token belongs to one (node, instance). It is
  alive while the node is in Jenkins' /computer read or an instance tagged with it is live, and for
  `grace_s` after both are gone (a record spooled by the runner and sent late still lands). A
  token minted by this process counts as seen at its minting (its node was created just before).
  A token whose node the daemon never saw, or lost longer than the grace ago, is refused (401).
  Before the loop's first full observation a restarted daemon cannot tell: it answers 503 and the
  agent retries.
* The builds of a node come from /computer (the URL of each executor's current build), never
  from an agent's body. They are kept for the node's lifetime, so a record sent after its build
  ended is still matched to it.
* Posts are rate-limited per node and kind (token buckets: `per_min` a minute, bursts of as many).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import unquote, urlsplit

MAX_BUILDS_PER_NODE = 8              # a one-build agent runs one; a Jenkins restart may add one or two
LIVE_STATES = ("pending", "running", "created", "restarting", "booting")


@dataclass(frozen=True)
class Build:
    job: str                          # full name, folders joined by '/' (as JOB_NAME)
    number: str

    def covers(self, job: str) -> bool:
        """A run record for `job` may come from this build: the build's own job or one under it."""
        return job == self.job or job.startswith(self.job + "/")


def build_of_url(url: str) -> Build | None:
    """The job and number of a Jenkins build URL (`…/job/a/job/b/12/`), or None."""
    if not isinstance(url, str):
        return None
    parts = [unquote(p) for p in urlsplit(url).path.split("/") if p]
    if len(parts) < 3 or not parts[-1].isdigit():
        return None
    names, i = [], 0
    body = parts[:-1]
    while i < len(body):
        if body[i] == "job" and i + 1 < len(body):
            names.append(body[i + 1])
            i += 2
        else:
            if names:                   # 'job/x/other/12': not a build URL
                return None
            i += 1                      # a context path before the first /job/ (e.g. /jenkins)
    return Build("/".join(names), parts[-1]) if names else None


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float):
        self.tokens, self.at = tokens, at


class AgentBook:
    def __init__(self, grace_s: float = 900.0, clock: Callable[[], float] = time.monotonic):
        self.grace_s = grace_s
        self.clock = clock
        self._lock = threading.Lock()
        self._alive_at: dict[str, float] = {}        # node -> last time it was seen alive
        self._present: set[str] = set()              # in the latest observation (Jenkins or cloud)
        self._nodes_now: set[str] = set()
        self._instances_now: set[str] = set()
        self._builds: dict[str, list[Build]] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.ready = False                           # one full observation made (nodes and instances)
        self._seen_nodes = False

    # -- what the loop tells ----------------------------------------------------------------------
    def minted(self, node: str) -> None:
        """A token for `node` was just made (its node exists in Jenkins already)."""
        with self._lock:
            self._alive_at[node] = self.clock()

    def nodes_seen(self, nodes: Iterable) -> None:
        """A /computer read (our nodes): each is alive, and its executors' builds are noted."""
        now = self.clock()
        nodes = list(nodes)
        with self._lock:
            self._nodes_now = {n.name for n in nodes}
            for n in nodes:
                self._alive_at[n.name] = now
                for url in getattr(n, "builds", ()) or ():
                    b = build_of_url(url)
                    seen = self._builds.setdefault(n.name, [])
                    if b is not None and b not in seen:
                        seen.append(b)
                        del seen[:-MAX_BUILDS_PER_NODE]
            self._seen_nodes = True
            self._refresh(now)

    def instances_seen(self, instances: Iterable) -> None:
        """A describe of the cloud: the node of each live instance is alive."""
        now = self.clock()
        with self._lock:
            self._instances_now = {node for i in instances if (node := _node_tag(i))
                                   and getattr(i, "state", "running") in LIVE_STATES}
            for node in self._instances_now:
                self._alive_at[node] = now
            self.ready = self._seen_nodes
            self._refresh(now)

    def _refresh(self, now: float) -> None:
        present = self._nodes_now | self._instances_now
        for gone in self._present - present:          # gone since the last look: the grace starts now
            self._alive_at[gone] = now
        self._present = present
        stale = [n for n, at in self._alive_at.items() if n not in self._present and now - at > self.grace_s]
        for n in stale:
            del self._alive_at[n]
            self._builds.pop(n, None)
        for key in [k for k in self._buckets if k[0] not in self._alive_at]:
            del self._buckets[key]

    # -- what the API asks ----------------------------------------------------------------------
    def alive(self, node: str) -> bool | None:
        """True while the token of `node` is valid, False when not, None when it cannot tell yet."""
        with self._lock:
            if node in self._present:
                return True
            at = self._alive_at.get(node)
            if at is not None and self.clock() - at <= self.grace_s:
                return True
            return False if self.ready else None

    def builds(self, node: str) -> list[Build]:
        with self._lock:
            return list(self._builds.get(node, ()))

    def note_builds(self, node: str, urls: Iterable[str]) -> None:
        """Builds read for one node on demand (an agent posted before the loop's next read)."""
        with self._lock:
            if node not in self._alive_at:
                return
            seen = self._builds.setdefault(node, [])
            for url in urls:
                b = build_of_url(url)
                if b is not None and b not in seen:
                    seen.append(b)
            del seen[:-MAX_BUILDS_PER_NODE]

    def allow(self, node: str, kind: str, per_min: float) -> bool:
        """Take one post of `kind` from the bucket of `node`; False when it is empty (429)."""
        if per_min <= 0:
            return True
        now = self.clock()
        with self._lock:
            b = self._buckets.get((node, kind))
            if b is None:
                b = self._buckets[(node, kind)] = _Bucket(float(per_min), now)
            b.tokens = min(float(per_min), b.tokens + (now - b.at) * per_min / 60.0)
            b.at = now
            if b.tokens < 1.0:
                return False
            b.tokens -= 1.0
            return True


def _node_tag(instance) -> str | None:
    tag = getattr(instance, "tag", None)
    return tag("node") if callable(tag) else None
