"""Draining a node at most once, whoever asks.

Jenkins offers only a toggle (`toggleOffline`), and three callers drain: the tick's actions, the
drain poll between ticks, and the agent API when an agent reports (a usage record or a sample means
its build is running: draining then, before answering, closes the node to a second build however
short the first one is). Two callers acting on reads taken before each other's drain would toggle a
node back online, so every drain goes through one book under one lock.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from provisioner.daemon.jenkins import JenkinsClient
from provisioner.daemon.model import DRAIN_MESSAGES, Node


class Drains:
    def __init__(self, client: JenkinsClient, on_observed: Callable[[list[Node]], None] | None = None):
        self._client = client
        self._on_observed = on_observed     # the agent API's book: nodes alive, builds they run
        self._lock = threading.Lock()
        self._drained: set[str] = set()     # drained by us, or seen temporarily offline
        self._known: set[str] = set()       # seen in a /computer read (their state is tracked)

    def observed(self, nodes: Iterable[Node]) -> None:
        """Learn from a /computer read. A read may predate a drain made meanwhile, so it only adds
        drained nodes and forgets deleted ones; it never marks a node undrained."""
        nodes = list(nodes)
        names = {n.name for n in nodes}
        with self._lock:
            self._drained = (self._drained | {n.name for n in nodes if n.temporarily_offline}) & names
            self._known = names
        if self._on_observed is not None:
            self._on_observed(nodes)

    def drain(self, name: str, reason: str = "started") -> bool:
        """Toggle `name` offline unless already drained; True when this call drained it."""
        with self._lock:
            if name in self._drained:
                return False
            self._client.drain(name, DRAIN_MESSAGES[reason])
            self._drained.add(name)
            return True

    def drain_reporting(self, name: str) -> bool:
        """An agent reported: its build runs. Drain it now, reading its state first when no /computer
        read has shown it yet (a daemon that just restarted must not toggle a drained node back)."""
        with self._lock:
            if name in self._drained:
                return False
            if name not in self._known and self._client.temporarily_offline(name):
                self._drained.add(name)
                return False
            self._client.drain(name, DRAIN_MESSAGES["started"])
            self._drained.add(name)
            self._known.add(name)
            return True
