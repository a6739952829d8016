"""reconcile(): every rule on small frozen inputs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioner.daemon.model import (DRAIN_MESSAGES, Block, DeleteNode, Drain, Hold, Memory, NoPlan, PlanKey,
                                      Provision, Terminate, client_token, node_name)
from provisioner.daemon.reconcile import plan_key, plan_keys, reconcile, remember, after_actions
from tests.daemon.helpers import (LABEL, NOW, OWNER, SETTINGS, SPOT, flying, instance, item, meta,
                                  node, observed, plan)


def kinds(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def test_a_new_demand_item_gets_one_node_named_after_its_queue_id():
    acts = reconcile(observed([item(7)]), SETTINGS, NOW)
    [p] = kinds(acts, Provision)
    assert (p.node, p.attempt, p.create_node) == ("prov-o-q7", 1, True)
    assert p.token == client_token(OWNER, "prov-o-q7", 1007, 1)
    assert p.plan.chosen.offer.instance_type == "m5.large"
    assert acts == [p]


@pytest.mark.parametrize("it", [
    item(1, label="linux"), item(1, label="ec2 || linux"), item(1, label="!ec2"), item(1, label=None),
    item(1, pending=True), item(1, blocked=True, buildable=False), item(1, buildable=False),
], ids=["other-label", "disjunction", "negated", "no-label", "pending", "blocked", "quiet-period"])
def test_items_that_are_not_demand_launch_nothing(it):
    assert reconcile(observed([it]), SETTINGS, NOW) == []


def test_restart_between_node_creation_and_launch_launches_once_for_the_same_node():
    """Empty memory (a restarted daemon); the node exists, no instance: same name, attempt, token."""
    n = node("prov-o-q7", meta(7))
    [p] = kinds(reconcile(observed([item(7)], [n]), SETTINGS, NOW), Provision)
    assert (p.node, p.attempt, p.create_node) == ("prov-o-q7", 1, False)
    assert p.token == client_token(OWNER, "prov-o-q7", 1007, 1)


def test_restart_with_node_and_booting_instance_does_nothing():
    acts = reconcile(observed([item(7)], [node("prov-o-q7", meta(7))], [instance("i-1", "prov-o-q7")]),
                     SETTINGS, NOW)
    assert acts == []


def test_a_launch_in_flight_but_not_yet_described_is_not_repeated():
    inst = instance("i-1", "prov-o-q7")
    mem = Memory(in_flight={"prov-o-q7": flying(inst)})
    assert reconcile(observed([item(7)], [node("prov-o-q7", meta(7))], memory=mem), SETTINGS, NOW) == []


def test_global_cap_counts_running_and_in_flight_instances():
    s = replace(SETTINGS, max_agents=3)
    running = instance("i-1", "prov-o-q1")
    mem = Memory(in_flight={"prov-o-q2": flying(instance("i-2", "prov-o-q2"))})
    nodes = [node("prov-o-q1", meta(1)), node("prov-o-q2", meta(2))]
    items = [item(i) for i in range(1, 6)]
    acts = reconcile(observed(items, nodes, [running], memory=mem), s, NOW)
    assert [p.item.id for p in kinds(acts, Provision)] == [3]          # oldest first
    assert [(h.item[0], h.reason) for h in kinds(acts, Hold)] == [(4, "cap:global"), (5, "cap:global")]


def test_caps_per_label_and_per_job():
    plans = {PlanKey(LABEL, "a"): plan(), PlanKey(LABEL, "b"): plan(),
             PlanKey("ec2 && mem=4", "a"): plan(node_labels=("ec2", "mem=4"))}
    items = [item(1, job="a"), item(2, job="a"), item(3, job="b"), item(4, job="a", label="ec2 && mem=4")]
    per_label = reconcile(observed(items, plans=plans), replace(SETTINGS, max_per_label=1), NOW)
    assert [p.item.id for p in kinds(per_label, Provision)] == [1, 4]
    per_job = reconcile(observed(items, plans=plans), replace(SETTINGS, max_per_job=1), NOW)
    assert [p.item.id for p in kinds(per_job, Provision)] == [1, 3]
    assert {h.reason for h in kinds(per_job, Hold)} == {"cap:job"}


def test_budget_counts_running_in_flight_and_this_ticks_launches():
    s = replace(SETTINGS, budget_usd_per_hour=1.0)
    plans = {PlanKey(LABEL, "train"): plan(price=0.3)}
    running = instance("i-1", "prov-o-q1")
    mem = Memory(in_flight={"prov-o-q2": flying(instance("i-2", "prov-o-q2"), price=0.3)})
    nodes = [node("prov-o-q1", meta(1)), node("prov-o-q2", meta(2))]
    items = [item(i) for i in range(1, 6)]
    acts = reconcile(observed(items, nodes, [running], plans=plans, memory=mem, prices={"i-1": 0.3}), s, NOW)
    assert [p.item.id for p in kinds(acts, Provision)] == [3]          # 0.3 + 0.3 + 0.3 <= 1.0
    assert {h.reason for h in kinds(acts, Hold)} == {"budget"}


def test_boot_timeout_retires_blocks_the_offer_and_replans_next_tick():
    n = node("prov-o-q7", meta(7))
    slow = instance("i-1", "prov-o-q7", launched=NOW - 601, market=SPOT)
    acts = reconcile(observed([item(7)], [n], [slow]), SETTINGS, NOW)
    assert DeleteNode("prov-o-q7", "boot-timeout") in acts
    assert Terminate(("i-1",), "boot-timeout", "prov-o-q7") in acts
    assert Block(("m5.large", "us-east-1", SPOT), "boot-timeout") in acts
    assert kinds(acts, Hold)[0].reason == "replan" and not kinds(acts, Provision)
    # next tick: node and instance gone, the attempt counter persisted -> a second attempt
    [p] = kinds(reconcile(observed([item(7)], attempts={(7, 1007): 1}), SETTINGS, NOW + 5), Provision)
    assert (p.node, p.attempt) == ("prov-o-q7-2", 2)
    assert p.token != client_token(OWNER, "prov-o-q7", 1007, 1)


def test_within_boot_timeout_nothing_happens():
    acts = reconcile(observed([item(7)], [node("prov-o-q7", meta(7))],
                              [instance("i-1", "prov-o-q7", launched=NOW - 599)]), SETTINGS, NOW)
    assert acts == []


def test_item_gone_before_its_agent_connected_terminates_and_deletes():
    acts = reconcile(observed([], [node("prov-o-q7", meta(7))], [instance("i-1", "prov-o-q7")]), SETTINGS, NOW)
    assert acts == [DeleteNode("prov-o-q7", "item-gone"), Terminate(("i-1",), "item-gone", "prov-o-q7")]


def test_cancelled_item_node_without_instance_is_deleted():
    assert reconcile(observed([], [node("prov-o-q7", meta(7))]), SETTINGS, NOW) == \
        [DeleteNode("prov-o-q7", "item-gone")]


def test_busy_node_is_drained_once_then_retired_when_idle():
    busy = node("prov-o-q7", meta(7), offline=False, idle=False, builds=("http://j/job/train/1/",))
    inst = instance("i-1", "prov-o-q7")
    assert reconcile(observed([], [busy], [inst]), SETTINGS, NOW) == [Drain("prov-o-q7")]
    drained = replace(busy, offline=True, temporarily_offline=True)
    assert reconcile(observed([], [drained], [inst]), SETTINGS, NOW) == []
    done = replace(drained, idle=True, builds=())
    assert reconcile(observed([], [done], [inst]), SETTINGS, NOW) == \
        [DeleteNode("prov-o-q7", "finished"), Terminate(("i-1",), "finished", "prov-o-q7")]


def test_node_seen_busy_before_and_idle_but_not_drained_is_drained_then_finished():
    """Its build was aborted before the drain (a Jenkins restart): deleting it at once could kill a
    second build Jenkins hands it meanwhile, so it is drained first and retired once seen drained.
    (Before issue 13 it was deleted at once.)"""
    idle = node("prov-o-q7", meta(7), offline=False)
    mem = Memory(seen_busy=frozenset({"prov-o-q7"}))
    acts = reconcile(observed([item(8)], [idle], [instance("i-1", "prov-o-q7")], memory=mem), SETTINGS, NOW)
    assert Drain("prov-o-q7") in acts and not kinds(acts, DeleteNode)    # never reused for item 8
    assert [p.node for p in kinds(acts, Provision)] == ["prov-o-q8"]
    drained = node("prov-o-q7", meta(7), offline=True, temporarily_offline=True)
    acts = reconcile(observed([item(8)], [drained], [instance("i-1", "prov-o-q7")], memory=mem), SETTINGS, NOW)
    assert DeleteNode("prov-o-q7", "finished") in acts


def test_node_seen_busy_before_whose_agent_is_gone_is_retired_at_once():
    gone = node("prov-o-q7", meta(7), offline=True)                      # nothing can be scheduled on it
    mem = Memory(seen_busy=frozenset({"prov-o-q7"}))
    acts = reconcile(observed([], [gone], [instance("i-1", "prov-o-q7")], memory=mem), SETTINGS, NOW)
    assert DeleteNode("prov-o-q7", "finished") in acts


def test_interrupted_agent_node_is_removed_once_its_machine_is_missing_twice_in_a_row():
    n = node("prov-o-q7", meta(7), offline=True, temporarily_offline=True, idle=False, builds=("u",))
    stopping = instance("i-1", "prov-o-q7", state="shutting-down")
    once = remember(Memory(), [n], [stopping], NOW)
    assert reconcile(observed([], [n], [stopping], memory=once), SETTINGS, NOW) == []   # one miss: wait
    twice = remember(once, [n], [], NOW + 5)
    assert twice.lost_seen == {"prov-o-q7": 2}
    assert reconcile(observed([], [n], [], memory=twice), SETTINGS, NOW + 5) == [DeleteNode("prov-o-q7", "interrupted")]


def test_a_busy_node_is_not_lost_while_its_machine_is_described_or_in_flight_or_its_agent_online():
    drained = node("prov-o-q7", meta(7), offline=True, temporarily_offline=True, idle=False, builds=("u",))
    online = node("prov-o-q8", meta(8), offline=False, idle=False, builds=("v",))
    m = remember(Memory(lost_seen={"prov-o-q7": 1, "prov-o-q8": 1}), [drained, online],
                 [instance("i-7", "prov-o-q7")], NOW)
    assert m.lost_seen == {}                                         # seen again: the count starts over
    m = remember(Memory(in_flight={"prov-o-q7": flying(instance("i-7", "prov-o-q7"))}), [drained], [], NOW)
    assert m.lost_seen == {}


def test_repeatedly_interrupted_job_gets_the_interrupted_plan_key():
    # whether that plan is on demand is the intent's market rule (tests/daemon/test_plan_cache.py):
    # reconcile no longer reads the label for market atoms
    s = replace(SETTINGS, ondemand_after_interruptions=2)
    assert plan_key(item(1), s, {"train": 2}) == PlanKey(LABEL, "train", True)
    assert plan_key(item(1), s, {"train": 1}) == PlanKey(LABEL, "train", False)
    assert plan_key(item(1, label="ec2 && spot"), s, {"train": 5}).ondemand is True
    assert plan_key(item(1), replace(s, ondemand_after_interruptions=0), {"train": 5}).ondemand is False
    od = {PlanKey(LABEL, "train", True): plan(market="on-demand")}
    [p] = kinds(reconcile(observed([item(1)], plans=od, interruptions={"train": 3}), s, NOW), Provision)
    assert p.plan.chosen.offer.market == "on-demand"
    assert plan_keys([item(1), item(2), item(3, label="linux")], s, {"train": 2}) == {PlanKey(LABEL, "train", True)}


def test_instance_without_node_is_terminated_after_the_grace_period():
    young = instance("i-1", "prov-o-q1", launched=NOW - 100)
    old = instance("i-2", "prov-o-q2", launched=NOW - 301)
    untagged = instance("i-3", None, launched=NOW - 301)
    acts = reconcile(observed([], [], [young, old, untagged]), SETTINGS, NOW)
    assert acts == [Terminate(("i-2",), "orphan", "prov-o-q2"), Terminate(("i-3",), "orphan")]


def test_instance_of_a_node_we_retired_goes_at_once():
    mem = Memory(retired=frozenset({"prov-o-q1"}))
    acts = reconcile(observed([], [], [instance("i-1", "prov-o-q1", launched=NOW - 5)], memory=mem), SETTINGS, NOW)
    assert acts == [Terminate(("i-1",), "retired", "prov-o-q1")]


def test_duplicate_instances_for_one_node_keep_the_oldest():
    a, b = instance("i-a", "prov-o-q1", launched=NOW - 20), instance("i-b", "prov-o-q1", launched=NOW - 10)
    acts = reconcile(observed([item(1)], [node("prov-o-q1", meta(1))], [b, a]), SETTINGS, NOW)
    assert acts == [Terminate(("i-b",), "duplicate", "prov-o-q1")]


def test_subset_label_item_that_took_another_node_rebinds_the_waiting_item_to_a_booting_spare():
    """Item 2 (label ec2) ran on item 1's node; item 1 waits; item 2's own node is still booting."""
    taken = node("prov-o-q1", meta(1), offline=True, temporarily_offline=True, idle=False, builds=("u",))
    spare = node("prov-o-q2", meta(2, label="ec2"))
    insts = [instance("i-1", "prov-o-q1"), instance("i-2", "prov-o-q2")]
    acts = reconcile(observed([item(1)], [taken, spare], insts), SETTINGS, NOW)
    assert acts == []                                  # item 1 will run on node q2: nothing to launch or retire


def test_an_online_node_whose_item_left_is_never_given_a_second_item():
    """Its item may have run on it between two polls: one build per agent, so it is retired. It is
    drained first (Jenkins may be assigning it a build as we read), and retired once seen idle."""
    spare = node("prov-o-q2", meta(2, label="ec2"), offline=False)
    insts = [instance("i-2", "prov-o-q2")]
    acts = reconcile(observed([item(1)], [spare], insts), SETTINGS, NOW)
    assert acts[0] == Drain("prov-o-q2", "no-demand")
    assert not kinds(acts, DeleteNode) and not kinds(acts, Terminate)
    assert [p.node for p in kinds(acts, Provision)] == ["prov-o-q1"]
    drained = replace(spare, temporarily_offline=True, offline=True, offline_reason=DRAIN_MESSAGES["no-demand"])
    acts = reconcile(observed([], [drained], insts), SETTINGS, NOW + 5)
    assert acts == [DeleteNode("prov-o-q2", "no-demand"), Terminate(("i-2",), "no-demand", "prov-o-q2")]


def test_a_drained_spare_that_got_a_build_meanwhile_runs_it_to_the_end():
    """Jenkins assigned it a build between our read and the drain: it is busy now, so it stays."""
    got_one = node("prov-o-q2", meta(2, label="ec2"), offline=True, temporarily_offline=True, idle=False,
                   builds=("u",))
    assert reconcile(observed([], [got_one], [instance("i-2", "prov-o-q2")]), SETTINGS, NOW) == []


def test_item_left_waiting_without_a_spare_node_gets_a_new_plan_once_confirmed():
    """Seen once, it may be the two reads straddling Jenkins assigning the item: held one tick."""
    taken = node("prov-o-q1", meta(1), offline=True, temporarily_offline=True, idle=False, builds=("u",))
    obs = observed([item(1)], [taken], [instance("i-1", "prov-o-q1")])
    first = reconcile(obs, SETTINGS, NOW)
    assert first == [Hold((1, 1001), LABEL, "settling")]
    mem = after_actions(obs.memory, first, [], {})
    [p] = kinds(reconcile(replace(obs, memory=mem), SETTINGS, NOW + 5), Provision)
    assert (p.node, p.attempt) == ("prov-o-q1-2", 2)


def test_node_assigned_but_not_started_is_not_drained():
    pending = node("prov-o-q1", meta(1), offline=False, idle=False)          # busy, no build yet
    assert reconcile(observed([], [pending], [instance("i-1", "prov-o-q1")]), SETTINGS, NOW) == []


def test_spare_node_whose_labels_do_not_satisfy_the_item_is_not_rebound():
    spare = node("prov-o-q2", meta(2, label="ec2 && gpu=1"), labels=("ec2", "gpu=1"), offline=False)
    acts = reconcile(observed([item(1)], [spare], [instance("i-2", "prov-o-q2")]), SETTINGS, NOW)
    assert Drain("prov-o-q2", "no-demand") in acts and not kinds(acts, DeleteNode)
    assert [p.node for p in kinds(acts, Provision)] == ["prov-o-q1"]


def test_pending_item_keeps_the_online_node_it_is_about_to_run_on():
    n = node("prov-o-q1", meta(1), offline=False)
    assert reconcile(observed([item(1, pending=True)], [n], [instance("i-1", "prov-o-q1")]), SETTINGS, NOW) == []


def test_blocked_item_keeps_its_own_node_but_never_launches_one():
    booting = node("prov-o-q1", meta(1))
    blocked = item(1, blocked=True, buildable=False)
    assert reconcile(observed([blocked], [booting], [instance("i-1", "prov-o-q1")]), SETTINGS, NOW) == []
    assert reconcile(observed([blocked], [booting]), SETTINGS, NOW) == []


def test_node_whose_instance_vanished_before_connecting_is_replaced():
    mem = Memory(had_instance=frozenset({"prov-o-q1"}))
    acts = reconcile(observed([item(1)], [node("prov-o-q1", meta(1))], memory=mem), SETTINGS, NOW)
    assert DeleteNode("prov-o-q1", "lost") in acts
    [p] = kinds(acts, Provision)
    assert (p.node, p.attempt, p.create_node) == ("prov-o-q1-2", 2, True)


def test_existing_node_with_labels_of_another_plan_is_replaced():
    n = node("prov-o-q1", meta(1), labels=("ec2", "vcpu=2", "spot"))
    acts = reconcile(observed([item(1)], [n]), SETTINGS, NOW)
    assert acts[0] == DeleteNode("prov-o-q1", "relabel")
    assert kinds(acts, Provision)[0].node == "prov-o-q1-2"


def test_no_offer_holds_the_item():
    acts = reconcile(observed([item(1)], plans={PlanKey(LABEL, "train"): NoPlan("no gpu")}), SETTINGS, NOW)
    assert acts == [Hold((1, 1001), LABEL, "no-offer")]


def test_a_reused_queue_id_never_reuses_a_node_name():
    """After a controller crash ids repeat: item (7, later) must not take the old item's node name."""
    old = node("prov-o-q7", meta(7, since=5, label="ec2 && gpu=1"), labels=("ec2", "gpu=1"))
    acts = reconcile(observed([item(7, since=9)], [old]), SETTINGS, NOW)
    assert DeleteNode("prov-o-q7", "item-gone") in acts
    [p] = kinds(acts, Provision)
    assert p.node == "prov-o-q7-2" and p.create_node


def test_a_spare_node_without_instance_launches_with_its_own_token():
    """Rebinding a node to another item keeps the node's token: a launch before a crash is not repeated."""
    old = node("prov-o-q7", meta(7, since=5))
    [p] = kinds(reconcile(observed([item(7, since=9)], [old]), SETTINGS, NOW), Provision)
    assert (p.node, p.create_node, p.token) == ("prov-o-q7", False, client_token(OWNER, "prov-o-q7", 5, 1))


def test_node_names_are_jenkins_safe():
    assert node_name("Team A/gpu.x", 3, 1) == "prov-team-a-gpu-x-q3"
    assert node_name("o", 3, 4) == "prov-o-q3-4"


def test_a_node_drained_the_moment_its_build_started_counts_as_connected():
    """Drained on its first report, it reads offline before any tick saw it online."""
    drained = node("prov-o-q1", meta(1), offline=True, temporarily_offline=True, idle=False, builds=("u",))
    never = node("prov-o-q2", meta(2))
    m = remember(Memory(), [drained, never], [], NOW)
    assert m.seen_online == {"prov-o-q1"}


def test_memory_folds_observations_and_forgets_gone_nodes():
    busy = node("prov-o-q1", meta(1), offline=False, idle=False, builds=("u",))
    inst = instance("i-1", "prov-o-q1")
    m = remember(Memory(seen_busy=frozenset({"prov-o-q9"})), [busy], [inst], NOW)
    assert m.seen_busy == {"prov-o-q1"} and m.seen_online == {"prov-o-q1"}
    assert m.had_instance == {"prov-o-q1"} and m.first_seen == {"prov-o-q1": NOW}
    m2 = after_actions(m, [], ["prov-o-q1"], {"prov-o-q2": flying(instance("i-2", "prov-o-q2"))})
    assert "prov-o-q1" in m2.retired and "prov-o-q2" in m2.in_flight
    m3 = remember(m2, [], [instance("i-2", "prov-o-q2")], NOW + 5)
    assert m3.in_flight == {} and m3.seen_busy == frozenset()    # described now: no longer in flight


def test_reconcile_is_deterministic_and_does_not_mutate_its_input():
    obs = observed([item(i) for i in range(1, 30)], [node("prov-o-q3", meta(3))],
                   [instance("i-3", "prov-o-q3")])
    assert reconcile(obs, SETTINGS, NOW) == reconcile(obs, SETTINGS, NOW)


@pytest.mark.parametrize("label,reason", [
    ("ec2 && vcpu=2", None), ("linux && docker", None), (None, None),
    ("ec2 && vcpu=nan", "invalid-value"), ("ec2 && vcpu=inf", "invalid-value"),
    ("ec2 && " + "(" * 400 + "vcpu=2" + ")" * 400, "label-too-complex"),
    (" && ".join(["ec2"] + [f"a{i}" for i in range(999)]), "label-too-complex"),
], ids=["ok", "not-ours", "no-label", "nan", "inf", "nested-400", "chain-1000"])
def test_label_problem_names_why_an_item_is_refused_and_never_raises(label, reason):
    from provisioner.daemon.reconcile import label_problem
    assert label_problem(label, "ec2") == reason


def test_rejection_reason_keeps_a_named_reason_and_maps_known_error_kinds():
    from provisioner.daemon.reconcile import rejection_reason
    from provisioner.errors import UsageError
    named = UsageError("too deep")
    named.reason = "label-too-complex"
    assert rejection_reason(named, "unparseable") == "label-too-complex"
    assert rejection_reason(UsageError("bad"), "unparseable") == "unparseable"
    assert rejection_reason(RecursionError(), "unparseable") == "label-too-complex"
    assert rejection_reason(OverflowError(), "unparseable") == "invalid-value"
    assert rejection_reason(KeyError("x"), "unparseable") == "internal-error"
