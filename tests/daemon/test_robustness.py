"""Robustness against the emulator with the fake process cloud: outages, cancellations, bursts,
subset labels taking another item's node, interruptions, boot timeouts."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import pytest
import requests

from tests.daemon.conftest import ADMIN, BOB, daemon_config, needs_jdk
from tests.daemon.fakes import ProcessCloud
from tests.daemon.test_loop_e2e import finished, ours

pytestmark = [needs_jdk, pytest.mark.slow]
LABEL = "ec2 && vcpu=2 && mem=4"


def cloud_for(emu, tmp_path, **kw) -> ProcessCloud:
    return ProcessCloud(tmp_path / "cloud", emu.url, emu.agent_jar(), **kw)


def sample(d, name, **labels):
    return d.daemon.metrics.registry.get_sample_value(name, labels) or 0.0


def test_jenkins_down_terminates_nothing_and_service_resumes(emu, tmp_path, start_daemon):
    """Emulator down for 30 s while a build runs: its agent is not touched, nothing is launched or
    terminated blind, and the queue is served again once the controller answers."""
    cloud = cloud_for(emu, tmp_path)
    d = start_daemon(daemon_config(emu.url), cloud, ADMIN[1])
    emu.create_job("long", label=LABEL, script="sleep 33")
    emu.schedule("long")
    emu.wait_for(lambda: emu.builds("long") and emu.builds("long")[0]["building"], timeout=30)
    [inst] = cloud.describe("t")
    emu.set_down(True)
    time.sleep(30)
    assert [i.id for i in cloud.describe("t")] == [inst.id]         # nothing terminated while blind
    assert sample(d, "provisioner_failures_total", action="observe", code="connection") >= 20
    assert not any(sample(d, "provisioner_agents_retired_total", reason=r)
                   for r in ("interrupted", "item-gone", "lost", "finished"))
    emu.set_down(False)
    emu.create_job("after", label=LABEL, script="true")
    emu.schedule("after")
    emu.wait_for(lambda: finished(emu, "long") and finished(emu, "after"), timeout=40)
    assert emu.builds("long")[0]["result"] == "SUCCESS" and emu.builds("after")[0]["result"] == "SUCCESS"
    emu.wait_for(lambda: not ours(emu) and not cloud.describe("t"), timeout=20)


def test_cancelled_item_its_instance_is_gone(emu, tmp_path, start_daemon):
    cloud = cloud_for(emu, tmp_path, start_agents=False)            # the agent never connects
    d = start_daemon(daemon_config(emu.url, BOB[0]), cloud, BOB[1])
    emu.create_job("train", label=LABEL, script="true")
    qid = emu.schedule("train")
    emu.wait_for(lambda: cloud.describe("t"), timeout=20)
    assert emu.cancel(qid) == "cancelled"
    emu.wait_for(lambda: not cloud.describe("t") and not ours(emu), timeout=20)
    emu.wait_for(lambda: sample(d, "provisioner_agents_retired_total", reason="item-gone") == 1, timeout=5)


def test_burst_of_100_items_respects_the_cap_and_the_budget(emu, tmp_path, start_daemon):
    cloud = cloud_for(emu, tmp_path, start_agents=False)
    # c5.large is 0.085 USD/h: a 0.6 USD/h budget allows 7 agents, below the cap of 10
    d = start_daemon(daemon_config(emu.url, max_agents=10, budget_usd_per_hour=0.6, max_per_job=60), cloud, ADMIN[1])
    for i in range(100):
        emu.create_job(f"burst{i}", label=LABEL, script="true")
        emu.schedule(f"burst{i}")
    peak, deadline = 0, time.monotonic() + 8
    while time.monotonic() < deadline:
        peak = max(peak, len(cloud.describe("t")))
        time.sleep(0.05)
    assert peak == 7 and len(cloud.launch_log()) == 7
    assert sample(d, "provisioner_queue_held_items", reason="budget") == 93
    assert sample(d, "provisioner_budget_headroom_usd_per_hour") == pytest.approx(0.6 - 7 * 0.085)
    assert sample(d, "provisioner_queue_waiting_items", label="ec2&&vcpu=2&&mem=4") == 100
    for rec in cloud.records():                                     # let them boot: builds run, more launch
        cloud.start_agent(rec["id"])
    cloud.start_agents = True
    emu.wait_for(lambda: sum(1 for i in range(20) if finished(emu, f"burst{i}")) >= 20, timeout=60)


def test_a_subset_label_item_that_takes_another_items_node_both_are_served(emu, tmp_path, start_daemon):
    cloud = cloud_for(emu, tmp_path, start_agents=False)
    start_daemon(daemon_config(emu.url), cloud, ADMIN[1])
    emu.create_job("any", label="ec2", script="sleep 1")            # older, and satisfied by the big node
    emu.create_job("big", label=LABEL, script="sleep 1")
    q_any = emu.schedule("any")
    q_big = emu.schedule("big")
    emu.wait_for(lambda: cloud.by_node(f"prov-t-q{q_big}") and cloud.by_node(f"prov-t-q{q_any}"), timeout=20)
    cloud.start_agent(cloud.by_node(f"prov-t-q{q_big}")["id"])     # only the big node boots
    emu.wait_for(lambda: emu.builds("any"), timeout=20)
    assert emu.builds("any")[0]["node"] == f"prov-t-q{q_big}"       # 'any' took big's node
    cloud.start_agents = True                                       # later launches boot normally
    emu.wait_for(lambda: finished(emu, "any") and finished(emu, "big"), timeout=40)
    assert emu.builds("big")[0]["result"] == "SUCCESS" and emu.builds("any")[0]["result"] == "SUCCESS"
    assert emu.builds("big")[0]["node"] == f"prov-t-q{q_big}-2"      # a new plan for the item left waiting
    emu.wait_for(lambda: not ours(emu) and not cloud.describe("t"), timeout=20)


def test_interrupted_agent_node_is_removed_and_counted(emu, tmp_path, start_daemon):
    cloud = cloud_for(emu, tmp_path)
    d = start_daemon(daemon_config(emu.url), cloud, ADMIN[1])
    emu.create_job("spotty", label=LABEL, script="sleep 20")
    emu.schedule("spotty")
    emu.wait_for(lambda: emu.builds("spotty") and emu.builds("spotty")[0]["building"], timeout=30)
    [inst] = cloud.describe("t")
    cloud.interrupt(inst.id)                                        # the machine vanishes mid-build
    emu.wait_for(lambda: not ours(emu), timeout=20)
    emu.wait_for(lambda: finished(emu, "spotty"), timeout=20)
    assert emu.builds("spotty")[0]["result"] in ("FAILURE", "ABORTED")   # Jenkins' retry() takes over
    emu.wait_for(lambda: sample(d, "provisioner_interruptions_total", instance_type="c5.large",
                                market="on-demand") == 1, timeout=5)
    assert d.daemon.interrupted_jobs["spotty"] == 1


def test_boot_timeout_blocks_the_offer_and_the_next_candidate_boots(emu, tmp_path, start_daemon):
    cloud = cloud_for(emu, tmp_path, start_agents=False)
    d = start_daemon(daemon_config(emu.url, boot_timeout_s=1.5), cloud, ADMIN[1])
    emu.create_job("slow", label=LABEL, script="true")
    qid = emu.schedule("slow")
    emu.wait_for(lambda: cloud.by_node(f"prov-t-q{qid}"), timeout=20)
    assert cloud.by_node(f"prov-t-q{qid}")["type"] == "c5.large"
    second = emu.wait_for(lambda: cloud.by_node(f"prov-t-q{qid}-2"), timeout=20)   # after 1.5 s
    assert second["type"] != "c5.large"                              # the blocked offer is skipped
    cloud.start_agent(second["id"])
    emu.wait_for(lambda: finished(emu, "slow"), timeout=30)
    build = emu.builds("slow")[0]
    assert build["result"] == "SUCCESS" and build["node"] == f"prov-t-q{qid}-2"
    types = [r["node"] for r in cloud.launch_log()]
    assert types == [f"prov-t-q{qid}", f"prov-t-q{qid}-2"]
    emu.wait_for(lambda: sample(d, "provisioner_agents_retired_total", reason="boot-timeout") == 1, timeout=5)
    assert ("c5.large", "us-east-1", "on-demand") in d.daemon.blocked.current()


def test_agents_that_start_their_build_are_drained_between_ticks(emu, tmp_path, start_daemon):
    """A build shorter than the interval: without the drain poll Jenkins would hand the finished agent
    the next waiting item before the next tick retires it."""
    cloud = cloud_for(emu, tmp_path)
    start_daemon(daemon_config(emu.url, interval_s=3, drain_poll_s=0.2), cloud, ADMIN[1])
    emu.create_job("short", label=LABEL, script="sleep 1", concurrent=True)
    emu.schedule("short", params={"N": "1"})
    emu.wait_for(lambda: emu.builds("short") and emu.builds("short")[0]["building"], timeout=30)
    emu.schedule("short", params={"N": "2"})                      # waits while the first one runs
    emu.wait_for(lambda: finished(emu, "short", 2), timeout=40)
    nodes = [b["node"] for b in emu.builds("short")]
    assert len(set(nodes)) == 2, nodes                            # one build per agent
    emu.wait_for(lambda: not ours(emu) and not cloud.describe("t"), timeout=20)


# Labels that made every tick raise (issue 13): each is refused, the others are served.
POISON = {
    "nan": ("ec2 && vcpu=nan", "invalid-value"),
    "inf": ("ec2 && vcpu=inf", "invalid-value"),
    # ~165 levels sit at the recursive parser's edge (it depends on the caller's stack): 400 is past it
    "nested-400": ("ec2 && " + "(" * 400 + "vcpu=3" + ")" * 400, "label-too-complex"),
    "chain-1000": (" && ".join(["ec2"] + [f"a{i}" for i in range(999)]), "label-too-complex"),
}


def test_poisoned_queue_items_are_rejected_once_and_the_others_are_served_in_the_same_tick(emu, tmp_path):
    """The daemon runs as its own process (the default recursion limit, as in production); this
    process holds the emulator, whose recursive label parser stands for Jenkins' (ANTLR on a JVM
    stack, which takes these labels) and gets a deeper Python stack."""
    from tests.daemon.test_kill_restart import DaemonProcess, write_config
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)
    try:
        _poisoned(emu, tmp_path, DaemonProcess, write_config)
    finally:
        sys.setrecursionlimit(limit)


def _poisoned(emu, tmp_path, DaemonProcess, write_config) -> None:
    write_config(tmp_path, emu)
    cloud = cloud_for(emu, tmp_path)
    bad = {}
    for name, (label, reason) in POISON.items():
        emu.create_job(f"bad-{name}", label=label, script="true")
        bad[emu.schedule(f"bad-{name}")] = reason
    good = {}
    for job in ("good0", "good1"):
        emu.create_job(job, label=LABEL, script="true")
        good[job] = emu.schedule(job)
    emu.wait_for(lambda: len(emu.queue_items()) == len(POISON) + 2, timeout=10)
    once = DaemonProcess(tmp_path, emu, "once")
    once.cmd.append("--once")
    once.start()
    assert once.proc.wait(timeout=60) == 0, once.text()       # observed, and no tick failed
    # the one tick launched for both good items, with the plan a clean queue gets
    assert sorted(r["node"] for r in cloud.launch_log()) == sorted(f"prov-t-q{q}" for q in good.values())
    assert {r["type"] for r in cloud.records()} == {"c5.large"}
    assert '"tick.failed"' not in once.text()
    daemon = DaemonProcess(tmp_path, emu, "d").start()        # serves the builds; rejects again, once
    try:
        emu.wait_for(lambda: finished(emu, "good0") and finished(emu, "good1"), timeout=60)
        assert [emu.builds(j)[0]["result"] for j in good] == ["SUCCESS", "SUCCESS"]
        url = emu.wait_for(lambda: _listening(daemon.text()), timeout=10)
        emu.wait_for(lambda: daemon.text().count('"item.rejected"') == len(POISON), timeout=20)
        text = requests.get(url + "/metrics", timeout=5).text
        counts = Counter(bad.values())
        for reason, n in counts.items():
            assert f'provisioner_items_rejected_total{{reason="{reason}"}} {float(n)}' in text, text
    finally:
        daemon.kill()
        cloud.kill_all()
    for log in (once.text().split("--- daemon.start")[-1], daemon.text()):
        rejected = [json.loads(line[line.index("{"):]) for line in log.splitlines() if '"item.rejected"' in line]
        assert sorted((r["queue_id"], r["reason"]) for r in rejected) == sorted(bad.items()), rejected
    assert len(cloud.launch_log()) == 2                       # nothing for the poisoned items
    assert all(emu.builds(f"bad-{n}") == [] for n in POISON)


def _listening(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("listening "):
            return line.split()[1]
    return None


def test_after_a_jenkins_restart_an_agent_whose_build_was_lost_never_gets_a_second(emu, tmp_path, start_daemon):
    """A Jenkins restart during a build, and the agent process restarts too: on reconnecting it lists
    no builds, so the build is lost, and its node comes back not drained (the restart came before the
    drain, or the controller forgot it: simulated by un-draining the node while it is down). Jenkins
    would hand the idle agent the waiting item at once. That agent has had its build: it is drained
    before it is back, then retired, and the waiting item gets an agent of its own."""
    cloud = cloud_for(emu, tmp_path)
    start_daemon(daemon_config(emu.url, interval_s=1, drain_poll_s=0.2), cloud, ADMIN[1])
    emu.create_job("first", label=LABEL, script="sleep 30")
    emu.create_job("second", label=LABEL, script="true")
    emu.schedule("first")
    emu.wait_for(lambda: emu.builds("first") and emu.builds("first")[0]["building"], timeout=30)
    node = emu.builds("first")[0]["node"]
    emu.wait_for(lambda: emu.node(node).temp_offline, timeout=10)          # drained as its build started
    emu.schedule("second")
    emu.set_down(True)
    emu.set_temporarily_offline(node, False)              # it comes back from the restart not drained
    emu.hold_agent(node)                                  # its reconnect waits for the daemon's first read:
    cloud.restart_agent(cloud.by_node(node)["id"])        # ordered, not raced against the agent's 1 s retry
    emu.restart(down_for=2.1)
    emu.wait_for(lambda: emu.node(node).temp_offline, timeout=30)          # drained from the first read
    emu.hold_agent(node, False)
    emu.wait_for(lambda: finished(emu, "first"), timeout=30)
    assert emu.builds("first")[0]["result"] == "FAILURE"                  # the restart lost it
    emu.wait_for(lambda: finished(emu, "second"), timeout=60)
    second = emu.builds("second")[0]
    assert second["node"] != node and second["result"] == "SUCCESS", second
    emu.wait_for(lambda: not ours(emu) and not cloud.describe("t"), timeout=30)
