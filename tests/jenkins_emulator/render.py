"""Beans for every JSON endpoint, with Jenkins' class names, property visibilities and key order
(superclass properties first, then each class's own, sorted by name). Callers hold `State.lock`.
"""

from __future__ import annotations

from . import labels as L
from . import queue as Q
from .export import OPAQUE, VISIBLE, Bean
from .messages import fmt
from .model import BUILT_IN, Build, Job, Node, Placeholder, QueueItem, State

PLACEHOLDER_EXECUTABLE = ('org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution'
                          '$PlaceholderTask$PlaceholderExecutable')


def _cause_action(causes: list[dict]) -> Bean:
    inner = []
    for c in causes:
        b = Bean(c['_class'])
        for k in sorted(k for k in c if k != '_class'):
            b.add(k, c[k], 3)
        inner.append(b)
    return Bean('hudson.model.CauseAction').add('causes', inner, 2)


def _actions(cause: dict | None, params: list[tuple[str, str]]) -> list[object]:
    out: list[object] = []
    if cause:
        out.append(_cause_action([cause]))
    if params:
        out.append(Bean('hudson.model.ParametersAction').add('parameters', [
            Bean('hudson.model.StringParameterValue').add('name', k, 3).add('value', v, 4) for k, v in params], 2))
    return out


def task_bean(task: Job | Placeholder, url: str) -> Bean:
    if isinstance(task, Placeholder):
        # PlaceholderTask exports name/url with visibility 1: only tree= shows them; url is relative.
        return Bean(task.cls).add('name', task.name, 1).add('url', task.rel_url, 1)
    b = Bean(task.cls).add('name', task.name, VISIBLE).add('url', url + task.rel_url, VISIBLE)
    b.add('color', task.color(), 2)
    if task.kind == 'freestyle':
        b.add('labelExpression', L.assigned_label_string(task.label), 1)
    return b


def executable_bean(item: QueueItem, url: str) -> Bean | None:
    build = item.executable
    if build is None:
        return None
    cls = PLACEHOLDER_EXECUTABLE if isinstance(item.task, Placeholder) else build.cls
    return Bean(cls).add('number', build.number, 1 if cls == PLACEHOLDER_EXECUTABLE else 2) \
        .add('url', url + build.rel_url, 1 if cls == PLACEHOLDER_EXECUTABLE else 2)


def item_bean(state: State, item: QueueItem, url: str, locale: str, memo: Q.Memo | None = None) -> Bean:
    memo = memo or Q.Memo(state)
    why = Q.cause_of_blockage(state, item, memo)
    b = Bean(item.cls)
    b.add('actions', _actions(item.cause if not isinstance(item.task, Placeholder) else None, item.params), VISIBLE)
    b.add('blocked', item.state == 'blocked', VISIBLE).add('buildable', item.state == 'buildable', VISIBLE)
    b.add('id', item.id, VISIBLE).add('inQueueSince', item.in_queue_since, VISIBLE)
    b.add('params', ''.join(f'\n{k}={v}' for k, v in item.params), VISIBLE)
    b.add('stuck', Q.is_stuck(state, item, memo), VISIBLE).add('task', task_bean(item.task, url), VISIBLE)
    b.add('url', f'queue/item/{item.id}/', VISIBLE).add('why', fmt(why, locale) if why else None, VISIBLE)
    if item.state == 'waiting':
        b.add('timestamp', item.timestamp, VISIBLE)
    elif item.state == 'left':
        b.add('cancelled', item.cancelled, VISIBLE).add('executable', executable_bean(item, url), VISIBLE)
    else:
        b.add('buildableStartMilliseconds', item.buildable_since, VISIBLE)
        if item.state == 'buildable':
            b.add('pending', item.pending, VISIBLE)
    return b


def ordered_items(state: State) -> list[QueueItem]:
    """Queue#getItems: waiting, blocked, buildables reversed, pendings reversed."""
    items = list(state.items.values())
    waiting = sorted((i for i in items if i.state == 'waiting'), key=lambda i: (i.timestamp, i.id))
    blocked = [i for i in items if i.state == 'blocked']
    buildable = sorted((i for i in items if i.state == 'buildable' and not i.pending),
                       key=lambda i: (i.buildable_since or 0, i.id))
    pending = sorted((i for i in items if i.pending), key=lambda i: (i.buildable_since or 0, i.id))
    return waiting + blocked + buildable[::-1] + pending[::-1]


def queue_bean(state: State, url: str, locale: str) -> Bean:
    memo = Q.Memo(state)
    return Bean('hudson.model.Queue').add('discoverableItems', [], 1).add(
        'items', [item_bean(state, i, url, locale, memo) for i in ordered_items(state)], 1, inline=True)


# ---- builds and jobs ------------------------------------------------------------------------------
def build_ref(build: Build | None, url: str) -> Bean | None:
    if build is None:
        return None
    return Bean(build.cls).add('number', build.number, 2).add('url', url + build.rel_url, 2)


def build_bean(build: Build, url: str) -> Bean:
    b = Bean(build.cls)
    b.add('actions', _actions(build.cause, build.params), 1).add('artifacts', [], 1)
    b.add('building', build.building, 1).add('description', None, 1)
    b.add('displayName', f'#{build.number}', 1).add('duration', 0 if build.building else build.duration, 1)
    b.add('estimatedDuration', build.job.estimated_duration(), 1)
    b.add('executor', OPAQUE if build.building else None, 1)
    b.add('fullDisplayName', f'{build.job.full_display_name} #{build.number}', 1)
    b.add('id', str(build.number), 1).add('inProgress', build.building, 1).add('keepLog', False, 1)
    b.add('number', build.number, 2).add('queueId', build.queue_id, 1)
    b.add('result', build.result, 1).add('timestamp', build.timestamp, 1).add('url', url + build.rel_url, 2)
    if build.job.kind == 'freestyle':
        b.add('builtOn', build.built_on or '', 1)   # AbstractBuild only
    return b


def job_bean(state: State, job: Job, url: str) -> Bean:
    builds = job.builds[::-1]
    done = [x for x in builds if not x.building]
    queued = [i for i in state.items.values() if i.task is job]
    b = Bean(job.cls).add('actions', [], 1).add('description', job.description, 1)
    b.add('displayName', job.name, 1).add('fullDisplayName', job.full_display_name, 1)
    b.add('fullName', job.full_name, 1).add('name', job.name, VISIBLE).add('url', url + job.rel_url, VISIBLE)
    b.add('buildable', True, 1).add('builds', [build_bean(x, url) for x in builds[:100]], 1)
    b.add('allBuilds', [build_bean(x, url) for x in builds], -2)
    b.add('color', job.color(), 2).add('firstBuild', build_ref(job.builds[0] if job.builds else None, url), 1)
    b.add('inQueue', bool(queued), 1).add('lastBuild', build_ref(builds[0] if builds else None, url), 1)
    for name, pick in (('lastCompletedBuild', done), ('lastFailedBuild', [x for x in done if x.result == 'FAILURE']),
                       ('lastSuccessfulBuild', [x for x in done if x.result == 'SUCCESS'])):
        b.add(name, build_ref(pick[0] if pick else None, url), 1)
    b.add('nextBuildNumber', job.next_build_number, 1)
    b.add('queueItem', Bean('hudson.model.Queue$Item').add('id', queued[0].id, VISIBLE) if queued else None, 1)
    b.add('concurrentBuild', job.concurrent, 1)
    if job.kind == 'freestyle':
        b.add('labelExpression', L.assigned_label_string(job.label), 1)
    return b


def folder_bean(state: State, folder: str, url: str) -> Bean:
    prefix = folder + '/' if folder else ''
    children = sorted({name[len(prefix):].split('/')[0] for name in list(state.jobs) + list(state.folders)
                       if name.startswith(prefix) and name != folder})
    jobs = []
    for child in children:
        full = prefix + child
        job = state.jobs.get(full)
        if job is not None:                   # the whole job: tree=jobs[name,labelExpression] works
            jobs.append(job_bean(state, job, url))
            continue
        jobs.append(Bean('com.cloudbees.hudson.plugins.folder.Folder').add('name', child, VISIBLE)
                    .add('url', url + ''.join(f'job/{s}/' for s in full.split('/')), VISIBLE)
                    .add('jobs', folder_bean(state, full, url).props[0].value, 1))
    cls = 'hudson.model.Hudson' if not folder else 'com.cloudbees.hudson.plugins.folder.Folder'
    return Bean(cls).add('jobs', jobs, 1)


# ---- computers ------------------------------------------------------------------------------------
def executor_bean(node: Node, i: int, url: str) -> Bean:
    e = node.executors[i]
    current = None
    if e.build is not None:
        current = build_bean(e.build, url) if e.build.job.kind == 'freestyle' else \
            Bean(PLACEHOLDER_EXECUTABLE).add('number', e.build.number, 1).add('url', url + e.build.rel_url, 1)
    return Bean(None).add('currentExecutable', current, 1).add('idle', e.idle, 1) \
        .add('likelyStuck', False, 1).add('number', e.number, 1).add('progress', -1, 1)


def _icon(node: Node) -> str:
    if node.temp_offline:
        return 'symbol-computer-disconnected'
    return 'symbol-computer-offline' if node.offline else 'symbol-computer'


def computer_bean(node: Node, url: str) -> Bean:
    cls = 'hudson.model.Hudson$MasterComputer' if node.builtin else 'hudson.slaves.SlaveComputer'
    b = Bean(cls).add('actions', [], 1)
    b.add('assignedLabels', [Bean(None).add('name', n, 2) for n in sorted(node.labels)], 1)
    b.add('description', node.description or ('the Jenkins controller\'s built-in node' if node.builtin else ''), 1)
    b.add('displayName', node.display_name, 1)
    b.add('executors', [executor_bean(node, i, url) for i in range(len(node.executors))], 1)
    b.add('icon', _icon(node), 1).add('iconClassName', _icon(node), 1)
    b.add('idle', all(e.idle for e in node.executors), 1).add('jnlpAgent', not node.builtin, 1)
    b.add('launchSupported', node.builtin, 1).add('loadStatistics', Bean('hudson.model.Label$1'), 1)
    b.add('manualLaunchAllowed', True, 1)
    monitors = ('hudson.node_monitors.SwapSpaceMonitor', 'hudson.node_monitors.TemporarySpaceMonitor',
                'hudson.node_monitors.DiskSpaceMonitor', 'hudson.node_monitors.ArchitectureMonitor',
                'hudson.node_monitors.ResponseTimeMonitor', 'hudson.node_monitors.ClockMonitor')
    b.add('monitorData', {m: None for m in monitors}, 1)   # liberty: values are not emulated
    b.add('numExecutors', node.num_executors, 1).add('offline', node.offline, 1)
    b.add('offlineCause', Bean(node.offline_cause) if node.offline_cause else None, 1)
    b.add('offlineCauseReason', node.offline_message if node.temp_offline else '', 1)
    b.add('oneOffExecutors', [], 1).add('temporarilyOffline', node.temp_offline, 1)
    if not node.builtin:
        b.add('absoluteRemotePath', node.remote_fs if node.connected else None, 1)
    return b


def computer_set_bean(state: State, url: str) -> Bean:
    online = [n for n in state.computers() if not n.offline]
    busy = sum(1 for n in online for e in n.executors if not e.idle)
    return Bean('hudson.model.ComputerSet').add('busyExecutors', busy, 1) \
        .add('computer', [computer_bean(n, url) for n in state.computers()], 1, inline=True) \
        .add('displayName', 'Nodes', 1).add('totalExecutors', sum(n.num_executors for n in online), 1)


def label_bean(state: State, expr: str, url: str) -> Bean:
    """GET /label/EXPR/api/json (Jenkins#getLabel, lax)."""
    label = L.get_label(expr)
    assert label is not None
    nodes = [n for n in state.nodes.values() if label.matches(n.labels)]
    online = [n for n in nodes if n.has_computer and not n.offline]
    total = sum(n.num_executors for n in online)
    idle = sum(n.idle_executors() for n in online)
    tied = [j for j in state.jobs.values() if j.assigned_label == label]
    b = Bean('hudson.model.labels.LabelAtom' if label.kind == L.ATOM else 'hudson.model.labels.LabelExpression$And'
             if label.kind == L.AND else 'hudson.model.labels.LabelExpression')
    b.add('actions', [], 1).add('busyExecutors', total - idle, 1).add('clouds', [], 1)
    b.add('description', 'invalid label' if not nodes else None, 1).add('idleExecutors', idle, 1)
    b.add('loadStatistics', Bean('hudson.model.Label$1'), 1).add('name', label.display_name, 1)
    b.add('nodes', [Bean('hudson.model.Hudson' if n.name == BUILT_IN else 'hudson.slaves.DumbSlave')
                    .add('nodeName', n.name, 1) for n in nodes], 1)
    b.add('offline', not online, 1)
    b.add('tiedJobs', [Bean(j.cls).add('name', j.name, VISIBLE).add('url', url + j.rel_url, VISIBLE)
                       .add('color', j.color(), 2) for j in tied], 1)
    b.add('totalExecutors', total, 1)
    return b
