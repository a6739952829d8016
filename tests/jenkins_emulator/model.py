"""The emulator's state: nodes and executors, jobs, builds and queue items.

Everything here is plain data guarded by `State.lock` (one RLock for the whole controller, so a
request sees one consistent snapshot, as Jenkins' lock-free queue snapshot does).
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import labels as L
from .messages import Message

BUILT_IN = ''                     # the built-in node's name (Jenkins: "")
BUILT_IN_DISPLAY = 'Built-In Node'
PLACEHOLDER_CLS = 'org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution$PlaceholderTask'
FREESTYLE_CLS = 'hudson.model.FreeStyleProject'
WORKFLOW_JOB_CLS = 'org.jenkinsci.plugins.workflow.job.WorkflowJob'
FOLDER_CLS = 'com.cloudbees.hudson.plugins.folder.Folder'


def now_ms() -> int:
    return int(time.time() * 1000)


@functools.lru_cache(maxsize=4096)
def _node_labels(label_string: str, self_label: str) -> frozenset[str]:
    # Cached: why/stuck evaluate every item against every node on each /queue request.
    return frozenset(L.split_label_string(label_string)) | {self_label}


@functools.lru_cache(maxsize=4096)
def cached_label(expr: str | None) -> L.Label | None:
    return L.get_label(expr) if expr and expr.strip() else None


class Channel(Protocol):
    """What the model needs from a connected stand-in agent (agents.AgentSession)."""
    def send(self, message: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


@dataclass
class User:
    name: str
    token: str
    admin: bool
    password: str | None = None


@dataclass
class Executor:
    number: int
    item: 'QueueItem | None' = None          # assigned, build not started yet (the item is pending)
    build: 'Build | None' = None             # running

    @property
    def idle(self) -> bool:
        return self.item is None and self.build is None


@dataclass
class Node:
    name: str
    num_executors: int = 1
    remote_fs: str = '/var/lib/jenkins'
    label_string: str = ''
    mode: str = 'NORMAL'                     # or EXCLUSIVE
    description: str | None = None
    launcher: str = 'hudson.slaves.JNLPLauncher'
    websocket: bool = False                  # JNLPLauncher.webSocket: adds -webSocket to the .jnlp
    executors: list[Executor] = field(default_factory=list)
    channel: Channel | None = None
    temp_offline: bool = False
    offline_message: str = ''
    offline_cause: str | None = None         # OfflineCause class name, when one is set

    def __post_init__(self) -> None:
        self.resize(self.num_executors)

    def resize(self, n: int) -> None:
        self.num_executors = n
        self.executors = [Executor(i) for i in range(n)]

    @property
    def builtin(self) -> bool:
        return self.name == BUILT_IN

    @property
    def display_name(self) -> str:
        return BUILT_IN_DISPLAY if self.builtin else self.name

    @property
    def self_label(self) -> str:
        return 'built-in' if self.builtin else self.name

    @property
    def labels(self) -> frozenset[str]:
        """Node#getAssignedLabels: labelString split on whitespace (quotes kept) plus the own name."""
        return _node_labels(self.label_string, self.self_label)

    @property
    def has_computer(self) -> bool:
        # AbstractCIBase: a node with 0 executors gets no Computer, except the built-in.
        return self.builtin or self.num_executors > 0

    @property
    def connected(self) -> bool:
        return self.builtin or self.channel is not None

    @property
    def offline(self) -> bool:
        """Computer#isOffline: temporarily offline or no channel."""
        return self.temp_offline or not self.connected

    def idle_executors(self) -> int:
        return sum(1 for e in self.executors if e.idle)

    def can_take(self, label: L.Label | None) -> Message | None:
        """Node#canTake for an item with this label: None when it may run here."""
        if label is not None and not label.matches(self.labels):
            return ('Node.LabelMissing', (self.display_name, label))     # formatted lazily
        if label is None and self.mode == 'EXCLUSIVE':
            return ('Node.BecauseNodeIsReserved', (self.display_name,))
        return None


@dataclass
class Job:
    full_name: str
    kind: str = 'freestyle'                  # freestyle | pipeline
    label: str | None = None                 # assignedNode (freestyle) or the node('...') argument
    steps: list[tuple[str, Any]] = field(default_factory=list)
    concurrent: bool = False
    description: str = ''
    next_build_number: int = 1
    builds: list['Build'] = field(default_factory=list)
    # A pipeline's node(label) { steps } blocks, run one after the other (the first is label/steps).
    blocks: list[tuple[str | None, list[tuple[str, Any]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.blocks:
            self.blocks = [(self.label, self.steps)]

    @property
    def name(self) -> str:
        return self.full_name.rsplit('/', 1)[-1]

    @property
    def cls(self) -> str:
        return FREESTYLE_CLS if self.kind == 'freestyle' else WORKFLOW_JOB_CLS

    @property
    def rel_url(self) -> str:
        return ''.join(f'job/{seg}/' for seg in self.full_name.split('/'))

    @property
    def full_display_name(self) -> str:
        return ' » '.join(self.full_name.split('/'))

    @property
    def flyweight(self) -> bool:
        return self.kind == 'pipeline'      # a WorkflowRun runs on the controller, never on an agent

    @property
    def assigned_label(self) -> L.Label | None:
        # WorkflowJob: SubTask#getAssignedLabel is null; its node() steps have their own items.
        return cached_label(self.label) if self.kind == 'freestyle' else None

    def building(self) -> bool:
        return any(b.building for b in self.builds)

    def color(self) -> str:
        done = [b for b in self.builds if not b.building]
        base = 'notbuilt' if not done else {'SUCCESS': 'blue', 'UNSTABLE': 'yellow', 'FAILURE': 'red',
                                             'ABORTED': 'aborted'}.get(done[-1].result or '', 'notbuilt')
        return base + '_anime' if self.building() else base

    def estimated_duration(self) -> int:
        ok = [b.duration for b in self.builds if b.result == 'SUCCESS'][-3:]
        return sum(ok) // len(ok) if ok else -1


@dataclass
class Placeholder:
    """A pipeline node() block waiting for (or running on) an executor."""
    run: 'Build'
    label: str | None

    flyweight = False
    concurrent = True

    @property
    def cls(self) -> str:
        return PLACEHOLDER_CLS

    @property
    def name(self) -> str:
        return f'part of {self.run.job.full_display_name} #{self.run.number}'

    full_display_name = name

    @property
    def rel_url(self) -> str:
        return self.run.rel_url

    @property
    def assigned_label(self) -> L.Label | None:
        return cached_label(self.label)


Task = Job | Placeholder


@dataclass
class Build:
    job: Job
    number: int
    queue_id: int
    timestamp: int
    cause: dict[str, Any]
    params: list[tuple[str, str]] = field(default_factory=list)
    result: str | None = None
    duration: int = 0
    building: bool = True
    built_on: str | None = None              # freestyle only ('' = built-in)
    node: str | None = None                  # where the steps run(/ran), also for pipelines
    executor: Executor | None = None
    console: list[str] = field(default_factory=list)
    log_seq: int = 0                         # next expected agent log chunk
    placeholder_item: 'QueueItem | None' = None
    disconnected_at: float | None = None     # agent lost while running (monotonic)
    channel: Channel | None = None           # the agent session the steps were sent on
    block: int = 0                           # pipeline: the node() block running or waiting

    @property
    def rel_url(self) -> str:
        return f'{self.job.rel_url}{self.number}/'

    @property
    def key(self) -> str:
        """What the agent knows this build (a pipeline: this node() body) by."""
        return f'{self.job.full_name}#{self.number}' + (f'/{self.block}' if self.block else '')

    @property
    def cls(self) -> str:
        return 'hudson.model.FreeStyleBuild' if self.job.kind == 'freestyle' else \
            'org.jenkinsci.plugins.workflow.job.WorkflowRun'

    def log(self, text: str) -> None:
        self.console.append(text)


@dataclass
class QueueItem:
    id: int
    task: Task
    in_queue_since: int
    timestamp: int                           # end of the quiet period
    cause: dict[str, Any]
    params: list[tuple[str, str]] = field(default_factory=list)
    state: str = 'waiting'                   # waiting | blocked | buildable | left
    buildable_since: int | None = None
    block_cause: Message | None = None
    transient_causes: list[Message] | None = None
    executor: Executor | None = None         # set while pending
    executor_node: str | None = None
    cancelled: bool = False
    executable: Build | None = None
    left_at: float = 0.0                     # monotonic, for the 5-minute LeftItem cache

    @property
    def pending(self) -> bool:
        return self.executor is not None

    @property
    def cls(self) -> str:
        return {'waiting': 'hudson.model.Queue$WaitingItem', 'blocked': 'hudson.model.Queue$BlockedItem',
                'buildable': 'hudson.model.Queue$BuildableItem', 'left': 'hudson.model.Queue$LeftItem'}[self.state]


class State:
    """The whole controller. Callers hold `lock` while reading or changing anything."""

    def __init__(self, builtin_executors: int, builtin_labels: str) -> None:
        self.lock = threading.RLock()
        self.nodes: dict[str, Node] = {BUILT_IN: Node(BUILT_IN, builtin_executors, '/var/jenkins_home',
                                                      builtin_labels, launcher='')}
        self.jobs: dict[str, Job] = {}
        self.folders: set[str] = set()
        self.items: dict[int, QueueItem] = {}           # not left: waiting, blocked, buildable (pending)
        self.left: dict[int, QueueItem] = {}
        self.counter = 0
        self.quieting_down = False

    def agents(self) -> list[Node]:
        """Jenkins#getNodes(): agents only, the built-in excluded."""
        return [n for n in self.nodes.values() if not n.builtin]

    def computers(self) -> list[Node]:
        return sorted((n for n in self.nodes.values() if n.has_computer), key=lambda n: n.name)

    def find_item(self, qid: int) -> QueueItem | None:
        return self.items.get(qid) or self.left.get(qid)

    def running_builds(self) -> list[Build]:
        return [b for j in self.jobs.values() for b in j.builds if b.building]
