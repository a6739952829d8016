"""The loop's decisions that are not reconcile's (pure; daemon/loop.py carries them out): which
nodes a drain poll drains, which agents are drained after a Jenkins restart, which bundles of
terminated instances to delete, and which booting agents get their secret bundle again.

Reconcile decides what to launch, drain, delete and terminate from one observation; these decide
the loop's own follow-ups (the drain poll between ticks, the secret hand-over of clouds that need
one), from the same facts plus what the loop remembers."""

from __future__ import annotations

from dataclasses import replace
from typing import Collection, Iterable, Mapping, Sequence

from provisioner.clouds.base import Instance
from provisioner.daemon.drain_rule import build_started
from provisioner.daemon.model import DeleteNode, ItemKey, Memory, Node, Terminate


def started_nodes(nodes: Iterable[Node]) -> list[Node]:
    """The nodes a drain poll drains: a build shows on them and they are not drained yet."""
    return [n for n in nodes if build_started(n.builds, n.temporarily_offline)]


def after_drain_poll(memory: Memory, nodes: Sequence[Node], started: Sequence[Node]) -> Memory:
    """What a drain poll's read of /computer adds to the loop's memory: the nodes seen busy and
    the nodes seen connected."""
    return replace(memory, seen_busy=memory.seen_busy | {n.name for n in started},
                   seen_online=memory.seen_online | {n.name for n in nodes if n.has_connected})


def drains_after_restart(nodes: Iterable[Node], memory: Memory, waiting: Collection[ItemKey]
                         ) -> list[tuple[str, str]]:
    """(node, reason) to drain after Jenkins restarted: every agent of ours that has connected and
    whose own item is not waiting (it ran, or lost, its build: `started`; or it is a spare:
    `no-demand`). Jenkins would hand it the next matching item the moment it reconnects idle."""
    out = []
    for n in nodes:
        connected = n.has_connected or n.name in memory.seen_online or n.name in memory.seen_busy
        if not connected or n.temporarily_offline or n.meta is None:
            continue
        if n.name not in memory.seen_busy and n.meta.item_key in waiting:
            continue                                    # its own item still waits: it runs it
        out.append((n.name, "started" if n.name in memory.seen_busy or n.busy else "no-demand"))
    return out


def unread_bundles(terms: Sequence[Terminate], nodes: Mapping[str, Node],
                   known: Iterable[Instance]) -> list[Instance]:
    """The terminated instances that may never have read their secret bundle (their node never
    connected), among `known` (observed or in flight): their bundles are deleted. An agent whose node
    has connected has read its bundle, so the usual end of a build costs no call."""
    by_id = {i.id: i for i in known}
    return [by_id[i] for a in terms for i in a.instance_ids if i in by_id
            and not (a.node in nodes and nodes[a.node].has_connected)]


def missing_handovers(instances: Sequence[Instance], nodes: Mapping[str, Node], actions: Sequence[object],
                      handed: Collection[str]) -> list[tuple[Node, Instance]]:
    """(node, instance) of each booting agent whose bundle this process has not put (`handed`: the
    instance ids it has; it restarted between a launch and the hand-over, or the hand-over failed).
    Not those this tick terminates or whose node it deletes, nor those whose node has connected."""
    ending = ({i for a in actions if isinstance(a, Terminate) for i in a.instance_ids}
              | {a.node for a in actions if isinstance(a, DeleteNode)})
    return [(nodes[n], inst) for inst in instances if (n := inst.tag("node") or "") in nodes
            and not nodes[n].has_connected and inst.id not in handed and inst.id not in ending
            and n not in ending and inst.state in ("pending", "running")]


def handed_still_live(handed: Collection[str], live: Iterable[str]) -> set[str]:
    """The hand-overs worth remembering: those of instances still observed or in flight."""
    return set(handed) & set(live)
