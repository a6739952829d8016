"""Drains: one toggle per node whoever asks, never a toggle back online."""

from __future__ import annotations

import threading

from provisioner.daemon.drains import Drains
from provisioner.daemon.model import DRAIN_MESSAGES
from tests.daemon.helpers import node


class Client:
    def __init__(self, offline=()):
        self.toggles: list[tuple[str, str]] = []
        self.reads: list[str] = []
        self.offline = set(offline)

    def drain(self, name, message):
        self.toggles.append((name, message))

    def temporarily_offline(self, name):
        self.reads.append(name)
        return name in self.offline


def test_the_loop_and_the_agent_api_drain_a_node_once():
    c = Client()
    d = Drains(c)
    d.observed([node("prov-o-q1", offline=False)])
    assert d.drain_reporting("prov-o-q1") is True
    assert d.drain("prov-o-q1") is False               # the tick acting on its older read
    d.observed([node("prov-o-q1", offline=False)])      # a read taken before the drain
    assert d.drain("prov-o-q1") is False
    assert c.toggles == [("prov-o-q1", DRAIN_MESSAGES["started"])] and c.reads == []


def test_a_node_seen_drained_is_never_toggled():
    c = Client()
    d = Drains(c)
    d.observed([node("prov-o-q1", offline=True, temporarily_offline=True)])
    assert d.drain("prov-o-q1", "no-demand") is False and d.drain_reporting("prov-o-q1") is False
    assert c.toggles == []


def test_after_a_restart_the_agent_api_reads_the_node_before_toggling():
    c = Client(offline={"prov-o-q1"})
    d = Drains(c)                                       # no /computer read yet
    assert d.drain_reporting("prov-o-q1") is False and d.drain_reporting("prov-o-q2") is True
    assert c.reads == ["prov-o-q1", "prov-o-q2"] and c.toggles == [("prov-o-q2", DRAIN_MESSAGES["started"])]


def test_deleted_nodes_are_forgotten_and_spares_carry_their_reason():
    c = Client()
    d = Drains(c)
    d.observed([node("prov-o-q1", offline=False)])
    assert d.drain("prov-o-q1", "no-demand")
    d.observed([])
    d.observed([node("prov-o-q1", offline=False)])      # a new node under the same name
    assert d.drain("prov-o-q1")
    assert c.toggles == [("prov-o-q1", DRAIN_MESSAGES["no-demand"]), ("prov-o-q1", DRAIN_MESSAGES["started"])]


def test_concurrent_callers_toggle_once():
    c = Client()
    d = Drains(c)
    d.observed([node("prov-o-q1", offline=False)])
    threads = [threading.Thread(target=d.drain_reporting if i % 2 else d.drain, args=("prov-o-q1",))
               for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(c.toggles) == 1


def test_a_toggle_whose_answer_was_lost_is_read_before_toggling_again():
    """The controller restarted under the toggle: it may have landed. Toggling blindly again would
    put the node back online."""
    class Flaky(Client):
        def drain(self, name, message):
            super().drain(name, message)
            self.offline.add(name)
            raise ConnectionError("connection dropped before the answer")
    c = Flaky()
    d = Drains(c)
    d.observed([node("prov-o-q1", offline=False)])
    try:
        d.drain("prov-o-q1")
    except ConnectionError:
        pass
    assert d.drain("prov-o-q1") is False and d.drain_reporting("prov-o-q1") is False
    assert len(c.toggles) == 1 and c.reads == ["prov-o-q1"]


def test_a_read_started_after_the_drain_that_shows_it_undrained_is_believed():
    now = [10.0]
    c = Client()
    d = Drains(c, clock=lambda: now[0])
    d.observed([node("prov-o-q1", offline=False)], read_at=9.0)
    assert d.drain("prov-o-q1")                                  # drained at 10
    d.observed([node("prov-o-q1", offline=False)], read_at=9.5)  # started before: not believed
    assert d.drain("prov-o-q1") is False
    d.observed([node("prov-o-q1", offline=False)], read_at=11.0)  # after: the controller forgot it
    assert d.drain("prov-o-q1") is True and len(c.toggles) == 2
