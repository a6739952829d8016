"""The build queue: scheduling, `maintain()`, and `BuildableItem#getCauseOfBlockage` (section 1.3).

`cause_of_blockage` is a line-by-line port of Jenkins' own algorithm; `maintain` is the
emulator's simplified `Queue#maintain` (stage transitions, task-level blocks, JobOffers and
the transient causes the composite `why` is built from). Callers hold `State.lock`.
"""

from __future__ import annotations

import time

from . import labels as L
from .messages import Message, time_span
from .model import Executor, Job, Node, QueueItem, State, Task, now_ms

LEFT_TTL_S = 300.0          # Queue.leftItems: expireAfterWrite 5 minutes


def schedule(state: State, task: Task, params: list[tuple[str, str]], cause: dict,
             quiet_period_ms: int) -> QueueItem:
    """Queue#schedule2: a new WaitingItem, or the existing identical one (ScheduleResult.Existing)."""
    for item in state.items.values():
        if item.task is task and item.params == params:
            return item
    state.counter += 1
    t = now_ms()
    item = QueueItem(state.counter, task, t, t + quiet_period_ms, cause, list(params))
    state.items[item.id] = item
    return item


def cancel(state: State, qid: int) -> str:
    """Queue#doCancelItem's outcome: 'cancelled', 'not-found', or 'failed' (pending and left items)."""
    item = state.find_item(qid)
    if item is None:
        return 'not-found'
    if item.state == 'left' or item.pending:
        return 'failed'
    leave(state, item, cancelled=True)
    return 'cancelled'


def leave(state: State, item: QueueItem, cancelled: bool = False, executable=None) -> None:
    state.items.pop(item.id, None)
    item.state, item.cancelled, item.executable = 'left', cancelled, executable
    item.executor, item.transient_causes = None, None
    item.left_at = time.monotonic()
    state.left[item.id] = item


def unassign(item: QueueItem) -> None:
    """A pending item whose executor went away goes back to plain buildable (lostPendings)."""
    if item.executor is not None:
        item.executor.item = None
    item.executor, item.executor_node = None, None


# ---- why ------------------------------------------------------------------------------------------
class Memo:
    """Per-request (or per-pass) caches: the state does not change while the lock is held, and
    /queue with a thousand items must not match every item against every node from scratch."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.computers = state.computers()
        self.has_agents = bool(state.agents())
        self._nodes: dict[L.Label, list[Node]] = {}
        self._refusals: dict[L.Label | None, dict[str, Message | None]] = {}

    def nodes(self, label: L.Label) -> list[Node]:
        """Label#getNodes: every node whose labels satisfy `label`, the built-in included."""
        if label not in self._nodes:
            self._nodes[label] = [n for n in self.state.nodes.values() if label.matches(n.labels)]
        return self._nodes[label]

    def refusals(self, label: L.Label | None) -> dict[str, Message | None]:
        """Node#canTake per computer for this label."""
        if label not in self._refusals:
            self._refusals[label] = {n.name: n.can_take(label) for n in self.computers}
        return self._refusals[label]


def _idle(nodes: list[Node]) -> int:
    # Label#getIdleExecutors / ComputerSet#getIdleExecutors: online computers accepting tasks.
    return sum(n.idle_executors() for n in nodes if n.has_computer and not n.offline)


def _label_offline(nodes: list[Node]) -> bool:
    return not any(n.has_computer and not n.offline for n in nodes)


def cause_of_blockage(state: State, item: QueueItem, memo: Memo | None = None) -> Message | None:
    """Item#getCauseOfBlockage for every stage; the BuildableItem branch is section 1.3 verbatim."""
    if item.state == 'left':
        return None
    if item.state == 'waiting':
        left = item.timestamp - now_ms()
        return ('Queue.InQuietPeriod', (time_span(left),)) if left > 0 else ('Queue.FinishedWaiting', ())
    if item.state == 'blocked':
        return item.block_cause
    if state.quieting_down:                  # no emulated task is a NonBlockingTask
        return ('Queue.HudsonIsAboutToShutDown', ())
    memo = memo or Memo(state)
    label = item.task.assigned_label
    if not memo.has_agents:                  # jenkins.getNodes() excludes the built-in
        label = None
    causes = item.transient_causes
    if label is not None:
        nodes = memo.nodes(label)
        if _label_offline(nodes):
            if len(nodes) != 1:
                key = 'Queue.LabelHasNoNodes' if not nodes else 'Queue.AllNodesOffline'
                return (key, (label.display_name,))
            return ('Queue.NodeOffline', (nodes[0].display_name,))
        if causes and _idle(nodes) > 0:
            return composite(causes)
        if len(nodes) != 1:
            return ('Queue.WaitingForNextAvailableExecutorOn', (label.display_name,))
        return ('Queue.WaitingForNextAvailableExecutorOn', (nodes[0].display_name,))
    if causes and _idle(list(state.nodes.values())) > 0:
        return composite(causes)
    return ('Queue.WaitingForNextAvailableExecutor', ())


def composite(causes: list[Message]) -> Message:
    """CompositeCauseOfBlockage; sorting and de-duplication happen at format time (per locale)."""
    return ('Composite', tuple(causes))


def is_stuck(state: State, item: QueueItem, memo: Memo | None = None) -> bool:
    """BuildableItem#isStuck (waiting and blocked items are never stuck)."""
    if item.state != 'buildable':
        return False
    label = item.task.assigned_label
    if label is not None and _label_offline((memo or Memo(state)).nodes(label)):
        return True
    d = item.task.estimated_duration() if isinstance(item.task, Job) else -1
    elapsed = now_ms() - (item.buildable_since or now_ms())
    if d >= 0:
        return elapsed > max(d, 60_000) * 10
    return elapsed > 24 * 3_600_000


# ---- maintain -------------------------------------------------------------------------------------
def task_block(state: State, item: QueueItem) -> Message | None:
    """getCauseOfBlockageForItem: a non-concurrent job already building, or already queued as buildable."""
    task = item.task
    if not isinstance(task, Job) or task.concurrent or task.flyweight:
        return None
    running = [b for b in task.builds if b.building]
    if running:
        eta: object = ''
        est = task.estimated_duration()
        if est > 0:
            eta = ('BlockedBecauseOfBuildInProgress.ETA', (time_span(est - (now_ms() - running[-1].timestamp)),))
        return ('BlockedBecauseOfBuildInProgress', (running[-1].number, eta))
    if item.state != 'buildable' and any(o.task is task and o.state == 'buildable' for o in state.items.values()):
        return ('Queue.InProgress', ())
    return None


def _offers(memo: Memo, item: QueueItem) -> tuple[list[tuple[Node, Executor]], list[Message]]:
    """Parked executors (idle ones, offline computers included) and the per-node refusal reasons."""
    refusals = memo.refusals(item.task.assigned_label)
    ok: list[tuple[Node, Executor]] = []
    reasons: list[Message] = []
    for node in memo.computers:
        idle = [e for e in node.executors if e.idle]
        if not idle:
            continue
        reason = refusals[node.name]
        if reason is None and node.offline:
            reason = ('Queue.NodeOffline', (node.display_name,))
        if reason is None:
            ok.extend((node, e) for e in idle)
        else:
            reasons.append(reason)
    return ok, reasons


def maintain(state: State, start_build, start_flyweight) -> None:
    """One Queue#maintain pass. `start_build(item, node, executor)` starts an assigned (pending)
    item; `start_flyweight(item)` runs a pipeline's WorkflowRun on the controller."""
    mono = time.monotonic()
    for qid, item in list(state.left.items()):
        if mono - item.left_at > LEFT_TTL_S:
            del state.left[qid]
    # Pending items from the previous pass start now, so `pending:true` is observable for a tick.
    for item in [i for i in state.items.values() if i.pending]:
        node = state.nodes.get(item.executor_node or '')
        if node is None or node.offline or state.quieting_down:
            unassign(item)
        else:
            start_build(item, node, item.executor)
    t = now_ms()
    for item in sorted((i for i in state.items.values() if i.state in ('waiting', 'blocked')),
                       key=lambda i: (i.timestamp, i.id)):
        if item.state == 'waiting' and item.timestamp > t:
            continue
        block = task_block(state, item)
        if item.buildable_since is None:
            item.buildable_since = t
        item.state, item.block_cause = ('blocked', block) if block else ('buildable', None)
    memo = Memo(state)
    offers: dict[L.Label | None, tuple[list[tuple[Node, Executor]], list[Message]]] = {}
    for item in sorted((i for i in state.items.values() if i.state == 'buildable' and not i.pending),
                       key=lambda i: (i.buildable_since or 0, i.id)):
        if state.quieting_down:
            continue
        if item.task.flyweight:
            start_flyweight(item)
            continue
        label = item.task.assigned_label
        if label not in offers:               # items with one label see the same offers...
            offers[label] = _offers(memo, item)
        ok, reasons = offers[label]
        if ok:
            node, executor = ok[0]           # liberty: first by node name, not consistent hashing
            executor.item, item.executor, item.executor_node = item, executor, node.name
            item.transient_causes = None
            offers.clear()                    # ...until an executor is taken
        else:
            item.transient_causes = reasons or None
