"""The Python side of the emulator that tests drive: jobs, queue, builds, nodes and agents.

Mixed into `JenkinsEmulator`; everything here is also reachable over HTTP where Jenkins has an
endpoint for it. Return values are plain dicts/lists (snapshots), never live state.
"""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from . import agent_jar, builds as B, queue as Q, render
from .export import by_depth
from .model import BUILT_IN, Build, Job, Node, State

if TYPE_CHECKING:
    from .emulator import Steps

T = TypeVar('T')


class EmulatorAPI:
    state: State
    quiet_period: float
    secret_key: bytes
    _agents: list[subprocess.Popen[Any]]
    url: str                                               # a property of JenkinsEmulator

    def wake(self) -> None: ...
    def dispatch(self, outbox: B.Outbox) -> None: ...

    # ---- jobs and queue ---------------------------------------------------------------------------
    def create_job(self, name: str, label: str | None = None, kind: str = 'freestyle', script: 'Steps' = None,
                   concurrent: bool | None = None, description: str = '',
                   nodes: 'Sequence[tuple[str | None, Steps]] | None' = None) -> None:
        """A freestyle job (`label` = "Restrict where this project can be run") or a pipeline
        (`node(label) { steps }`; `nodes` = [(label, steps), ...] for several node() blocks run one
        after the other, instead of label/script). `name` may contain '/' for folders, created as needed."""
        from .emulator import normalise_steps
        if kind not in ('freestyle', 'pipeline'):
            raise ValueError(f'kind must be freestyle or pipeline, not {kind!r}')
        if nodes is not None and (kind != 'pipeline' or not nodes):
            raise ValueError('nodes: only for a pipeline, and at least one node() block')
        blocks = [(lbl, normalise_steps(steps)) for lbl, steps in nodes] if nodes else []
        if blocks:
            label, script = blocks[0][0], None
        with self.state.lock:
            if name in self.state.jobs or name in self.state.folders:
                raise ValueError(f'job {name} already exists')
            parts = name.split('/')
            self.state.folders.update('/'.join(parts[:i]) for i in range(1, len(parts)))
            self.state.jobs[name] = Job(name, kind, label, blocks[0][1] if blocks else normalise_steps(script),
                                        concurrent if concurrent is not None else kind == 'pipeline', description,
                                        blocks=blocks)

    def schedule(self, job: str, params: dict[str, str] | None = None, user: str | None = None,
                 quiet_period: float | None = None) -> int:
        """Trigger a build (as `POST /job/NAME/build`); returns the queue id (an existing identical
        item's id when there is one, as Jenkins does)."""
        quiet = self.quiet_period if quiet_period is None else quiet_period
        cause = B.user_cause(user) if user else B.timer_cause()
        with self.state.lock:
            task = self.state.jobs.get(job)
            if task is None:
                raise KeyError(f'no job {job}')
            item = Q.schedule(self.state, task, sorted((params or {}).items()), cause, int(quiet * 1000))
        self.wake()
        return item.id

    def cancel(self, qid: int) -> str:
        """`POST /queue/cancelItem`: 'cancelled', 'not-found', or 'failed' (pending or left)."""
        with self.state.lock:
            item = self.state.find_item(qid)
            outcome = Q.cancel(self.state, qid)
            if outcome == 'cancelled' and item is not None:
                B.placeholder_cancelled(item)
        self.wake()
        return outcome

    def queue_items(self, locale: str = 'en') -> list[dict[str, Any]]:
        """`/queue/api/json?depth=0` items, plus `labelExpression` never shown at depth 0."""
        with self.state.lock:
            return [by_depth(render.item_bean(self.state, i, self.url, locale), 1)
                    for i in render.ordered_items(self.state)]

    def queue_item(self, qid: int, locale: str = 'en') -> dict[str, Any] | None:
        with self.state.lock:
            item = self.state.find_item(qid)
            return None if item is None else by_depth(render.item_bean(self.state, item, self.url, locale), 1)

    # ---- builds -----------------------------------------------------------------------------------
    def builds(self, job: str) -> list[dict[str, Any]]:
        """The job's builds, oldest first: number, queueId, result, building, duration, timestamp,
        builtOn (freestyle; None for pipelines), node (where its steps ran), params, console."""
        with self.state.lock:
            return [_build_dict(b) for b in self.state.jobs[job].builds]

    def stop_build(self, job: str, number: int) -> None:
        outbox: B.Outbox = []
        with self.state.lock:
            build = next(b for b in self.state.jobs[job].builds if b.number == number)
            B.abort(self.state, outbox, build)
        self.dispatch(outbox)
        self.wake()

    # ---- nodes and agents -------------------------------------------------------------------------
    def node(self, name: str) -> Node | None:
        """Live node by name; `(built-in)`, `(master)` and `Built-In Node` mean the built-in."""
        if name in ('(built-in)', '(master)', 'Built-In Node'):
            name = BUILT_IN
        return self.state.nodes.get(name)

    def create_node(self, name: str, labels: str = '', executors: int = 1, exclusive: bool = False,
                    remote_fs: str = '/var/lib/jenkins', description: str | None = None) -> None:
        """Same as python-jenkins create_node(..., launcher=LAUNCHER_JNLP) without HTTP."""
        with self.state.lock:
            if name in self.state.nodes:
                raise ValueError(f'Agent called ‘{name}’ already exists')
            self.state.nodes[name] = Node(name, executors, remote_fs, labels,
                                          'EXCLUSIVE' if exclusive else 'NORMAL', description)
        self.wake()

    def delete_node(self, name: str) -> bool:
        """Jenkins#removeNode: running builds on it end (freestyle FAILURE, pipeline ABORTED), its
        agent is told to exit; False if there was no such agent."""
        with self.state.lock:
            node = self.state.nodes.get(name)
            if node is None or node.builtin:
                return False
            B.node_removed(self.state, node)
            del self.state.nodes[name]
            channel, node.channel = node.channel, None
        if channel is not None:
            channel.send({'type': 'bye', 'reason': 'deleted'})
            channel.close()
        self.wake()
        return True

    def nodes(self) -> list[dict[str, Any]]:
        """`/computer/api/json` entries at depth 1 (executors with currentExecutable)."""
        with self.state.lock:
            return [by_depth(render.computer_bean(n, self.url), 1) for n in self.state.computers()]

    def secret(self, name: str) -> str:
        """JnlpAgentReceiver.SLAVE_SECRET.mac(name): stable per name for this controller."""
        return hmac.new(self.secret_key, name.encode('utf-8'), hashlib.sha256).hexdigest()

    def set_temporarily_offline(self, name: str, offline: bool, message: str = '') -> None:
        with self.state.lock:
            node = self.node(name)
            if node is None:
                raise KeyError(name)
            node.temp_offline, node.offline_message = offline, message if offline else ''
            node.offline_cause = 'hudson.slaves.OfflineCause$UserCause' if offline else \
                (None if node.connected else node.offline_cause)
        self.wake()

    def disconnect_agent(self, name: str) -> None:
        """Drop the agent's connection (as a network failure would); the agent reconnects."""
        with self.state.lock:
            node = self.state.nodes.get(name)
            channel = node.channel if node is not None and not node.builtin else None
        if channel is not None:
            channel.close()

    def is_online(self, name: str) -> bool:
        with self.state.lock:
            node = self.node(name)
            return node is not None and node.has_computer and not node.offline

    def agent_jar(self) -> Path:
        """The compiled stand-in agent.jar (built on first use)."""
        return agent_jar.build_agent_jar()

    def run_agent(self, name: str, work_dir: str | Path, secret: str | None = None,
                  extra_args: Sequence[str] = (), **popen: Any) -> subprocess.Popen[Any]:
        """`java -jar agent.jar -url URL -secret S -name NAME -webSocket -workDir DIR`; the process
        is killed by stop(). Output goes to `popen` (default: captured pipes)."""
        cmd = ['java', '-jar', str(self.agent_jar()), '-url', self.url, '-secret',
               secret if secret is not None else self.secret(name), '-name', name, '-webSocket',
               '-workDir', str(work_dir), *extra_args]
        popen.setdefault('stdout', subprocess.PIPE)
        popen.setdefault('stderr', subprocess.STDOUT)
        proc = subprocess.Popen(cmd, text=True, **popen)
        self._agents.append(proc)
        return proc

    @staticmethod
    def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
        """Poll until `predicate()` is truthy; returns it, or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f'condition not met within {timeout} s')
            time.sleep(interval)


def _build_dict(b: Build) -> dict[str, Any]:
    return {'number': b.number, 'queueId': b.queue_id, 'result': b.result, 'building': b.building,
            'duration': b.duration, 'timestamp': b.timestamp,
            'builtOn': b.built_on if b.job.kind == 'freestyle' else None, 'node': b.node,
            'params': dict(b.params), 'url': b.rel_url, 'console': ''.join(b.console)}
