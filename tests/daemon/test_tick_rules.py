"""The loop's own decisions (daemon/tick_rules.py) on small frozen inputs: the drain poll, the drains
after a Jenkins restart, which bundles to delete, which agents get their bundle again."""

from __future__ import annotations

from provisioner.daemon import tick_rules as T
from provisioner.daemon.model import DeleteNode, Memory, Terminate
from tests.daemon.helpers import instance, meta, node

BUILD = ("http://jenkins/job/train/1/",)


def test_the_drain_poll_drains_nodes_running_a_build_not_yet_drained():
    running = node("prov-o-q1", meta(1), offline=False, idle=False, builds=BUILD)
    drained = node("prov-o-q2", meta(2), offline=True, temporarily_offline=True, idle=False, builds=BUILD)
    assigned = node("prov-o-q3", meta(3), offline=False, idle=False)       # an item, no build shown yet
    idle = node("prov-o-q4", meta(4), offline=False)
    assert T.started_nodes([running, drained, assigned, idle]) == [running]


def test_the_drain_poll_remembers_busy_and_connected_nodes():
    running = node("prov-o-q1", meta(1), offline=False, idle=False, builds=BUILD)
    online = node("prov-o-q2", meta(2), offline=False)
    booting = node("prov-o-q3", meta(3))
    mem = T.after_drain_poll(Memory(seen_busy=frozenset({"old"})), [running, online, booting], [running])
    assert mem.seen_busy == {"old", "prov-o-q1"}
    assert mem.seen_online == {"prov-o-q1", "prov-o-q2"}


def test_after_a_jenkins_restart_connected_agents_whose_item_no_longer_waits_are_drained():
    ran = node("prov-o-q1", meta(1))                      # seen busy before the restart: its build ended
    spare = node("prov-o-q2", meta(2), offline=False)     # connected, its item gone: no demand
    waits = node("prov-o-q3", meta(3), offline=False)     # its own item still waits: it will run it
    booting = node("prov-o-q4", meta(4))                  # never connected: nothing to drain
    drained = node("prov-o-q5", meta(5), offline=True, temporarily_offline=True)
    foreign = node("prov-o-q6", None, offline=False)      # no metadata: not ours to judge
    mem = Memory(seen_busy=frozenset({"prov-o-q1"}), seen_online=frozenset({"prov-o-q5"}))
    out = T.drains_after_restart([ran, spare, waits, booting, drained, foreign], mem, {meta(3).item_key})
    assert out == [("prov-o-q1", "started"), ("prov-o-q2", "no-demand")]


def test_a_seen_busy_agent_is_drained_after_a_restart_even_if_its_item_is_queued_again():
    n = node("prov-o-q1", meta(1))
    out = T.drains_after_restart([n], Memory(seen_busy=frozenset({"prov-o-q1"})), {meta(1).item_key})
    assert out == [("prov-o-q1", "started")]


def test_only_bundles_of_terminated_instances_whose_node_never_connected_are_deleted():
    a, b, c = instance("i-a", "prov-o-q1"), instance("i-b", "prov-o-q2"), instance("i-c", "prov-o-q3")
    nodes = {"prov-o-q1": node("prov-o-q1", meta(1)),                       # booting: may not have read it
             "prov-o-q2": node("prov-o-q2", meta(2), offline=False)}         # connected: it read it
    terms = [Terminate(("i-a",), "boot-timeout", "prov-o-q1"), Terminate(("i-b",), "finished", "prov-o-q2"),
             Terminate(("i-c",), "orphan", "prov-o-q3"),                     # node gone: unknown, delete
             Terminate(("i-unknown",), "orphan", "prov-o-q9")]               # neither observed nor in flight
    assert T.unread_bundles(terms, nodes, [a, b, c]) == [a, c]


def test_booting_agents_whose_bundle_was_not_put_get_it_unless_they_end_this_tick():
    nodes = {f"prov-o-q{k}": node(f"prov-o-q{k}", meta(k)) for k in range(1, 7)}
    nodes["prov-o-q2"] = node("prov-o-q2", meta(2), offline=False)          # connected: has it
    insts = [instance("i-1", "prov-o-q1"), instance("i-2", "prov-o-q2"), instance("i-3", "prov-o-q3"),
             instance("i-4", "prov-o-q4"), instance("i-5", "prov-o-q5"),
             instance("i-6", "prov-o-q6", state="stopping"), instance("i-7", "prov-o-q7"),   # no node
             instance("i-8", None)]
    actions = [Terminate(("i-4",), "boot-timeout", "prov-o-q4"), DeleteNode("prov-o-q5", "boot-timeout")]
    missing = T.missing_handovers(insts, nodes, actions, handed={"i-3"})
    assert [(n.name, i.id) for n, i in missing] == [("prov-o-q1", "i-1")]


def test_hand_overs_are_remembered_while_their_instance_is_observed_or_in_flight():
    assert T.handed_still_live({"i-1", "i-2", "i-3"}, ["i-1", "i-3", "i-9"]) == {"i-1", "i-3"}
