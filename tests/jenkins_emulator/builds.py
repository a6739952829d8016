"""Build lifecycle: start a freestyle build or a pipeline's node() block on an executor, take the
agent's log and exit code, finish, and fail builds whose agent is gone.

Freestyle and pipeline consoles imitate Jenkins' lines (`Building remotely on ...`,
`[Pipeline] node`, `Running on ... in ...`, `Finished: SUCCESS`) so log-parsing clients can be
tested. Callers hold `State.lock`; messages for agents go to `outbox` and are sent after unlocking.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from typing import Any

from . import queue as Q
from .model import Build, Executor, Job, Node, Placeholder, QueueItem, State, now_ms

Outbox = list[tuple[Any, dict[str, Any]]]


def timer_cause() -> dict[str, Any]:
    return {'_class': 'hudson.triggers.TimerTrigger$TimerTriggerCause', 'shortDescription': 'Started by timer'}


def user_cause(user: str) -> dict[str, Any]:
    return {'_class': 'hudson.model.Cause$UserIdCause', 'shortDescription': f'Started by user {user}',
            'userId': user, 'userName': user}


def _new_build(job: Job, item: QueueItem) -> Build:
    build = Build(job, job.next_build_number, item.id, now_ms(), item.cause, list(item.params))
    job.next_build_number += 1
    job.builds.append(build)
    build.log(item.cause['shortDescription'] + '\n')
    return build


def _env(url: str, build: Build, node: Node, executor: Executor, pipeline: bool) -> dict[str, str]:
    job = build.job
    cookie = hashlib.md5(url.encode()).hexdigest()      # Job#getCharacteristicEnvVars: per controller
    env = {
        'JENKINS_SERVER_COOKIE': cookie, 'HUDSON_SERVER_COOKIE': cookie,
        'JOB_NAME': job.full_name, 'JOB_BASE_NAME': job.name,
        'BUILD_NUMBER': str(build.number), 'BUILD_ID': str(build.number),
        'BUILD_DISPLAY_NAME': f'#{build.number}',
        'BUILD_TAG': f"jenkins-{job.full_name.replace('/', '-')}-{build.number}",
        'BUILD_URL': url + build.rel_url, 'JOB_URL': url + job.rel_url, 'JENKINS_URL': url,
        'NODE_NAME': 'built-in' if node.builtin else node.name,
        'NODE_LABELS': ' '.join(sorted(node.labels)), 'EXECUTOR_NUMBER': str(executor.number),
    }
    if pipeline:                                        # ExecutorStepExecution: per node() body
        env['JENKINS_NODE_COOKIE'] = str(uuid.uuid4())
    env.update(dict(build.params))
    return env


def start_build(state: State, url: str, outbox: Outbox, item: QueueItem, node: Node, executor: Executor) -> None:
    """Start a pending item on its executor: a freestyle build, or a pipeline run's node() body."""
    executor.item = None
    task = item.task
    if isinstance(task, Placeholder):
        build = task.run
        where = 'Built-In Node' if node.builtin else node.name
        header = [f'Running on {where} in ${{WORKSPACE}}\n', '[Pipeline] {\n']
        steps = pipeline_steps(build.job.blocks[build.block][1])
    else:
        build = _new_build(task, item)
        build.built_on = node.name
        build.log('Running as SYSTEM\n')
        header = ['Building on the built-in node in workspace ${WORKSPACE}\n' if node.builtin else
                  f'Building remotely on {node.name}' + (f' ({node.label_string.strip()})' if node.label_string.strip()
                                                         else '') + ' in workspace ${WORKSPACE}\n']
        steps = [{'kind': kind, 'arg': arg, 'banner': f'[{task.name}] $ /bin/sh -xe '
                  f'/tmp/jenkins{random.randrange(10**18)}.sh\n' if kind == 'sh' else ''} for kind, arg in task.steps]
    build.node, build.executor, executor.build, build.channel = node.name, executor, build, node.channel
    Q.leave(state, item, executable=build)
    outbox.append((node.channel, {
        'type': 'run', 'build': build.key, 'job': build.job.full_name, 'header': header, 'steps': steps,
        'env': _env(url, build, node, executor, isinstance(task, Placeholder)), 'remoteFS': node.remote_fs,
        'durable': isinstance(task, Placeholder)}))


def pipeline_steps(steps: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The agent's step list for a node() body: `sh`, `echo`, and `parallel` with its branches."""
    out: list[dict[str, Any]] = []
    for kind, arg in steps:
        if kind == 'parallel':
            out.append({'kind': 'parallel', 'banner': '[Pipeline] parallel\n', 'arg': '',
                        'branches': [{'name': name, 'steps': pipeline_steps(sub)} for name, sub in arg.items()]})
        else:
            out.append({'kind': kind, 'banner': f'[Pipeline] {kind}\n', 'arg': arg})
    return out


def start_flyweight(state: State, item: QueueItem) -> None:
    """A WorkflowJob item: the run starts on the controller at once and queues its node() block."""
    job = item.task
    assert isinstance(job, Job)
    run = _new_build(job, item)
    run.log('[Pipeline] Start of Pipeline\n[Pipeline] node\n')
    Q.leave(state, item, executable=run)
    run.placeholder_item = Q.schedule(state, Placeholder(run, job.blocks[0][0]), [], item.cause, 0)


def on_log(state: State, node: Node, key: str, seq: int, data: str) -> None:
    build = _find(state, node, key)
    # Chunks are numbered: after a reconnect the agent resends from 0 and duplicates are dropped.
    if build is not None and seq == build.log_seq:
        build.log(data)
        build.log_seq += 1


def on_result(state: State, outbox: Outbox, node: Node, key: str, exit_code: int, aborted: bool) -> None:
    build = _find(state, node, key)
    outbox.append((node.channel, {'type': 'ack', 'build': key}))
    if build is None:
        return
    result = 'ABORTED' if aborted else 'SUCCESS' if exit_code == 0 else 'FAILURE'
    tail = []
    if build.job.kind == 'freestyle':
        if result == 'FAILURE':
            tail.append("Build step 'Execute shell' marked build as failure\n")
    else:
        if result == 'SUCCESS' and build.block + 1 < len(build.job.blocks):
            next_block(state, build)
            return
        tail += ['[Pipeline] }\n', '[Pipeline] // node\n', '[Pipeline] End of Pipeline\n']
        if result == 'FAILURE':
            tail.append(f'ERROR: script returned exit code {exit_code}\n')
    finish(build, result, tail)


def next_block(state: State, build: Build) -> None:
    """A node() body ended well and another follows: free the executor, queue the next body
    (ExecutorStepExecution schedules a PlaceholderTask per node step)."""
    build.log('[Pipeline] }\n[Pipeline] // node\n[Pipeline] node\n')
    if build.executor is not None:
        build.executor.build = None
    build.executor, build.channel, build.disconnected_at = None, None, None
    build.block, build.log_seq = build.block + 1, 0
    build.placeholder_item = Q.schedule(state, Placeholder(build, build.job.blocks[build.block][0]), [],
                                        build.cause, 0)


def _find(state: State, node: Node, key: str) -> Build | None:
    for build in state.running_builds():
        if build.key == key and build.node == node.name:
            return build
    return None


def finish(build: Build, result: str, tail: list[str]) -> None:
    for line in tail:
        build.log(line)
    build.log(f'Finished: {result}\n')
    build.result, build.building = result, False
    build.duration = max(1, now_ms() - build.timestamp)
    if build.executor is not None:
        build.executor.build = None
    build.executor, build.disconnected_at = None, None


def lose(build: Build, why: str) -> None:
    """The agent is gone for good: freestyle builds fail; a pipeline node() body is aborted with
    RemovedNodeCause (what retry(conditions: [agent()]) looks for)."""
    if build.job.kind == 'freestyle':
        finish(build, 'FAILURE', [f'FATAL: {why}\n', 'java.nio.channels.ClosedChannelException\n'])
    else:
        finish(build, 'ABORTED', [f'{why}\n', '[Pipeline] }\n', '[Pipeline] // node\n', '[Pipeline] End of Pipeline\n'])


def node_removed(state: State, node: Node) -> None:
    for build in state.running_builds():
        if build.node == node.name and build.executor is not None:
            lose(build, f'Agent {node.name} was deleted; cancelling node body'
                 if build.job.kind != 'freestyle' else 'Agent went offline during the build')
    for item in state.items.values():
        if item.executor_node == node.name:
            Q.unassign(item)


def agent_lost(state: State, node: Node) -> None:
    """Channel closed: running builds wait `grace` seconds for the agent to come back (liberty)."""
    for build in state.running_builds():
        if build.node == node.name and build.executor is not None and build.disconnected_at is None:
            build.disconnected_at = time.monotonic()


def agent_back(state: State, node: Node, known: list[str]) -> None:
    """The agent reconnected and listed the builds it still has; those sent on an earlier
    connection and missing from the list are lost (the agent process was restarted)."""
    for build in state.running_builds():
        if build.node == node.name and build.executor is not None and build.channel is not node.channel:
            if build.key in known:
                build.disconnected_at, build.channel = None, node.channel
            else:
                lose(build, 'Agent went offline during the build')


def expire(state: State, grace_s: float) -> None:
    mono = time.monotonic()
    for build in state.running_builds():
        if build.disconnected_at is not None and mono - build.disconnected_at > grace_s:
            lose(build, f'Cannot contact {build.node}: java.io.IOException: Connection closed')


def abort(state: State, outbox: Outbox, build: Build) -> None:
    """POST .../N/stop: kill the steps on the agent, or abort a run still waiting for its node."""
    if not build.building:
        return
    ph = build.placeholder_item
    if build.executor is None and ph is not None and ph.state != 'left':
        Q.unassign(ph)
        Q.leave(state, ph, cancelled=True)
        finish(build, 'ABORTED', ['Aborted by user\n', '[Pipeline] // node\n', '[Pipeline] End of Pipeline\n'])
        return
    node = state.nodes.get(build.node or '')
    if node is not None and node.channel is not None:
        outbox.append((node.channel, {'type': 'stop', 'build': build.key}))
    else:
        finish(build, 'ABORTED', ['Aborted by user\n'])


def placeholder_cancelled(item: QueueItem) -> None:
    """Cancelling a node() block's queue item fails that pipeline run."""
    if isinstance(item.task, Placeholder) and item.task.run.building:
        finish(item.task.run, 'ABORTED', ['Queue task was cancelled\n', '[Pipeline] // node\n',
                                          '[Pipeline] End of Pipeline\n'])
