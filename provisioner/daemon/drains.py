"""Draining a node at most once, whoever asks.

Jenkins offers only a toggle (`toggleOffline`), and three callers drain: the tick's actions, the
drain poll between ticks, and the agent API when an agent reports (a usage record or a sample means
its build is running: draining then, before answering, closes the node to a second build however
short the first one is). Two callers acting on reads taken before each other's drain would toggle a
node back online, so every drain goes through one book under one lock.

A toggle whose answer was lost (a timeout, a controller restarting under it) may or may not have
landed: the node's state is read before it is toggled again. A read started after a drain completed
that shows the node not drained is believed (a controller that forgot the drain): the node can be
drained again.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

from provisioner.daemon.drain_rule import build_started
from provisioner.daemon.jenkins import JenkinsClient
from provisioner.daemon.model import DRAIN_MESSAGES, Node


class Drains:
    def __init__(self, client: JenkinsClient, on_observed: Callable[[list[Node]], None] | None = None,
                 clock=time.monotonic):
        self._client = client
        self._on_observed = on_observed     # the agent API's book: nodes alive, builds they run
        self._clock = clock
        self._lock = threading.Lock()
        self._drained: dict[str, float] = {}   # drained by us (when), or seen temporarily offline (0)
        self._known: set[str] = set()          # seen in a /computer read (their state is tracked)
        self._unsure: set[str] = set()         # a toggle failed: it may have landed all the same

    def observed(self, nodes: Iterable[Node], read_at: float | None = None) -> None:
        """Learn from a /computer read that started at `read_at` (this clock). A read may predate a
        drain made meanwhile, so it marks a node undrained only when it started after that drain
        (without `read_at`: never); it forgets deleted nodes."""
        nodes = list(nodes)
        names = {n.name for n in nodes}
        with self._lock:
            drained = {k: v for k, v in self._drained.items() if k in names}
            for n in nodes:
                if n.temporarily_offline:
                    drained.setdefault(n.name, 0.0)
                    self._unsure.discard(n.name)
                elif read_at is not None and n.name in drained and drained[n.name] < read_at:
                    del drained[n.name]            # the controller forgot it (or a toggle back)
                    self._unsure.discard(n.name)
            self._drained = drained
            self._known = names
            self._unsure &= names
        if self._on_observed is not None:
            self._on_observed(nodes)

    def drain(self, name: str, reason: str = "started") -> bool:
        """Toggle `name` offline unless already drained; True when this call drained it."""
        with self._lock:
            if name in self._drained:
                return False
            if name in self._unsure and self._client.temporarily_offline(name):
                self._mark(name)
                return False
            self._toggle(name, reason)
            return True

    def _toggle(self, name: str, reason: str) -> None:
        try:
            self._client.drain(name, DRAIN_MESSAGES[reason])
        except Exception:
            self._unsure.add(name)
            raise
        self._mark(name)

    def _mark(self, name: str) -> None:
        self._drained[name] = self._clock()
        self._unsure.discard(name)

    def undrain(self, name: str) -> bool:
        """Toggle a node we drained back online (a reused agent, daemon/reuse.py); True when done."""
        with self._lock:
            if name not in self._drained:
                return False
            self._client.drain(name, "")            # toggleOffline is a toggle
            del self._drained[name]
            return True

    def drain_reporting(self, name: str) -> bool:
        """An agent reported: its build runs. Drain it now, reading its state first when no /computer
        read has shown it yet (a daemon that just restarted must not toggle a drained node back)."""
        with self._lock:
            if not build_started(True, name in self._drained):    # a report means its build runs
                return False
            if (name not in self._known or name in self._unsure) and self._client.temporarily_offline(name):
                self._mark(name)
                return False
            self._toggle(name, "started")
            self._known.add(name)
            return True
