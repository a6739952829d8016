"""The Jenkins emulator against python-jenkins 1.8.3, raw HTTP and the compiled stand-in agent."""

from __future__ import annotations

import json
import re
import subprocess

import jenkins
import pytest
import requests

from tests.jenkins_emulator import JenkinsEmulator, agent_jar
from tests.jenkins_emulator import labels as L
from tests.jenkins_emulator.export import Bean, by_depth, by_tree, parse_tree

EXPR = 'ec2 && vcpu=2'
CANON = 'ec2&&vcpu=2'
needs_jdk = pytest.mark.skipif(not agent_jar.tools_available(), reason='a JDK (java, javac, jar) is needed')


@pytest.fixture
def emu():
    e = JenkinsEmulator(users={'admin': ('token', True), 'bob': ('token2', False)}, maintain_interval=0.1)
    e.start()
    yield e
    e.stop()


def client(emu: JenkinsEmulator, user: str = 'admin', token: str = 'token') -> jenkins.Jenkins:
    j = jenkins.Jenkins(emu.url, user, token, timeout=10)
    j._session.headers['Accept-Language'] = 'en'      # what the daemon must always send
    return j


def whys(j: jenkins.Jenkins) -> list[str]:
    return [i['why'] for i in j.get_queue_info()]


def settle(emu: JenkinsEmulator) -> None:
    emu.maintain()
    emu.maintain()


# ---- labels (section 2) ---------------------------------------------------------------------------
@pytest.mark.parametrize('expr,name', [
    ('foo||bar&&zot', 'foo||bar&&zot'), ('  ( foo || bar )  && zot', '(foo||bar)&&zot'),
    ('foo -> bar', 'foo->bar'), ('!foo <-> bar', '!foo<->bar'), ('32bit.dot', '32bit.dot'), ('a-b', 'a-b'),
    ('--a----b-c-', '--a----b-c-'), ('-1', '-1'), ('-', '-'), ('a-->b', 'a-->b'), ('a->-b', 'a->-b'),
    ('a:b && c', '"a:b"&&c'), (EXPR, CANON), ('"gpu=a10g:4" && ec2', '"gpu=a10g:4"&&ec2'), ('"a:b"', 'a:b'),
], ids=lambda v: v if isinstance(v, str) else None)
def test_canonical_names(expr, name):
    assert L.get_label(expr).display_name == name


def test_label_structure_and_invalid_expressions():
    assert L.parse_expression('a-->b').args[0].name == 'a-'
    assert L.parse_expression('a->-b').args[1].name == '-b'
    for bad in ('foo bar', 'foo(bar)', 'a - b', 'a <- b', '->', 'a & b', 'vcpu>=8', '!!a', 'a->b->c', "'a'"):
        with pytest.raises(L.LabelSyntaxError):
            L.parse_expression(bad)
    assert str(pytest.raises(L.LabelSyntaxError, L.parse_expression, 'foo bar').value) == \
        "line 1:4: extraneous input 'bar' expecting <EOF>"
    lax = L.get_label('vcpu>=8 && linux')                  # lax fallback: one atom, matches nothing
    assert (lax.kind, lax.display_name, lax.expression) == (L.ATOM, 'vcpu>=8 && linux', '"vcpu>=8 && linux"')
    assert L.assigned_label_string('vcpu>=8') == '"vcpu>=8"'
    assert L.assigned_label_string(EXPR) == EXPR            # raw when it parses, not canonical
    assert L.split_label_string(' ec2  vcpu=2 "gpu=a10g:4"\t\'x y\' ') == ['ec2', 'vcpu=2', 'gpu=a10g:4', 'x y']
    node = frozenset({'ec2', 'vcpu=2', 'n1'})
    assert L.get_label(EXPR).matches(node) and L.get_label('!windows').matches(node)
    assert not L.get_label('ec2 && spot').matches(node) and L.get_label('spot -> gpu').matches(node)


# ---- JSON export (section 0) ----------------------------------------------------------------------
def test_tree_and_depth_pruning():
    inner = Bean('x.Inner').add('a', 1, 2).add('b', 2, 1)
    bean = Bean('x.Top').add('items', [inner, inner, inner], 1, inline=True).add('n', 5, 1).add('hidden', 7, -2)
    assert by_depth(bean, 0) == {'_class': 'x.Top', 'items': [{'_class': 'x.Inner', 'a': 1, 'b': 2}] * 3, 'n': 5}
    assert by_tree(bean, parse_tree('items[a,nope]{1,},hidden')) == \
        {'_class': 'x.Top', 'items': [{'_class': 'x.Inner', 'a': 1}] * 2, 'hidden': 7}
    assert by_tree(bean, parse_tree('items[*]{0}')) == {'_class': 'x.Top', 'items': [{'_class': 'x.Inner', 'a': 1, 'b': 2}]}
    assert by_tree(bean, parse_tree('items')) == {'_class': 'x.Top', 'items': [{'_class': 'x.Inner'}] * 3}


def test_queue_tree_and_label_expression_escaping(emu):
    emu.create_job('lax', label='vcpu>=8 && linux')
    emu.create_job('anywhere')
    emu.schedule('lax'), emu.schedule('anywhere')
    settle(emu)
    r = requests.get(emu.url + 'queue/api/json', params={'tree': 'items[id,why,task[name,labelExpression]]'},
                     auth=('admin', 'token'), headers={'Accept-Language': 'en'})
    items = {i['task']['name']: i for i in r.json()['items']}
    assert items['lax']['task'] == {'_class': 'hudson.model.FreeStyleProject', 'name': 'lax',
                                    'labelExpression': '"vcpu>=8 && linux"'}
    assert items['anywhere']['task']['labelExpression'] is None
    assert set(items['lax']) == {'_class', 'id', 'why', 'task'}
    depth0 = client(emu).get_queue_info()
    assert all('labelExpression' not in i['task'] and i['url'] == f"queue/item/{i['id']}/" for i in depth0)


# ---- why (section 1.3) ----------------------------------------------------------------------------
def test_why_with_no_agents_sentinel_and_offline_nodes(emu):
    j = client(emu)
    emu.create_job('x', label=EXPR)
    qid = emu.schedule('x')
    settle(emu)
    assert whys(j) == ['Waiting for next available executor']           # 0 agents: the label is hidden
    item = j.get_queue_info()[0]
    assert (item['_class'], item['buildable'], item['pending'], item['stuck'], item['id']) == \
        ('hudson.model.Queue$BuildableItem', True, False, True, qid)
    j.create_node('autoscaler-sentinel', 1, labels='autoscaler-sentinel', exclusive=True,
                  launcher=jenkins.LAUNCHER_JNLP)
    settle(emu)
    assert whys(j) == [f'There are no nodes with the label ‘{CANON}’']
    j.create_node('x-1', 1, labels='ec2 vcpu=2', exclusive=True, launcher=jenkins.LAUNCHER_JNLP)
    assert whys(j) == ['‘x-1’ is offline']                              # one node: named, not the label
    j.create_node('x-2', 1, labels='vcpu=2 ec2 linux', launcher=jenkins.LAUNCHER_JNLP)
    assert whys(j) == [f'All nodes of label ‘{CANON}’ are offline']
    assert requests.get(emu.url + 'queue/api/json', auth=('admin', 'token')).json()['items'][0]['why'] == \
        f'Alle Knoten des Labels ‘{CANON}’ sind offline'                  # no Accept-Language: server locale
    emu.quiet_down(True)
    assert whys(j) == ['Jenkins is about to shut down']


def test_why_composite_and_busy(emu):
    busy = JenkinsEmulator(users={'admin': ('token', True)}, builtin_executors=1, builtin_labels='ec2 vcpu=2',
                           maintain_interval=0.1).start()
    try:
        j = client(busy)
        busy.create_job('x', label=EXPR, script='sleep 30')
        busy.create_job('y', label=EXPR, concurrent=True)
        busy.schedule('x')
        busy.wait_for(lambda: busy.builds('x') and 'sleep' in busy.builds('x')[0]['console'])
        busy.schedule('y')
        settle(busy)
        assert whys(j) == ['Waiting for next available executor']       # 0 agents: no label
        j.create_node('sentinel', 1, labels='sentinel', exclusive=True, launcher=jenkins.LAUNCHER_JNLP)
        assert whys(j) == ['Waiting for next available executor on ‘Built-In Node’']  # the one (busy) node
        j.create_node('x-1', 1, labels='ec2 vcpu=2', launcher=jenkins.LAUNCHER_JNLP)
        assert whys(j) == [f'Waiting for next available executor on ‘{CANON}’']
        busy.schedule('x')                              # not concurrent: blocked by the running build
        settle(busy)
        blocked = [i for i in j.get_queue_info() if i['blocked']]
        assert [(i['_class'], i['why']) for i in blocked] == \
            [('hudson.model.Queue$BlockedItem', 'Build #1 is already in progress')]
    finally:
        busy.stop()
    two = JenkinsEmulator(users={'admin': ('token', True)}, builtin_executors=2).start()
    try:
        two.create_job('x', label=EXPR)
        two.schedule('x')
        settle(two)
        assert whys(client(two)) == [f'‘Built-In Node’ doesn’t have label ‘{CANON}’']
    finally:
        two.stop()


def test_quiet_period_blocked_and_dedup(emu):
    j = client(emu)
    emu.create_job('q', label=EXPR)
    qid = emu.schedule('q', quiet_period=30)
    assert emu.schedule('q') == qid                                    # identical item: the existing one
    item = j.get_queue_info()[0]
    assert item['_class'] == 'hudson.model.Queue$WaitingItem' and item['timestamp'] > item['inQueueSince']
    assert re.fullmatch(r'In the quiet period\. Expires in \d+ sec', item['why'])
    assert emu.schedule('q', params={'A': 'b'}) != qid
    params = [i['params'] for i in j.get_queue_info()]
    assert sorted(params) == ['', '\nA=b']


# ---- queue endpoints and python-jenkins ------------------------------------------------------------
def test_build_cancel_and_queue_item_codes(emu):
    j = client(emu)
    emu.create_job('a/b', label=EXPR)                                 # a folder job
    qid = j.build_job('a/b')                                           # 201 + Location .../queue/item/N/
    settle(emu)
    info = j.get_queue_item(qid)
    assert info['task']['url'] == emu.url + 'job/a/job/b/'
    assert info['actions'][0]['causes'][0]['userId'] == 'admin'
    j.cancel_queue(qid)
    left = j.get_queue_item(qid)
    assert (left['_class'], left['cancelled'], left['executable'], left['why']) == \
        ('hudson.model.Queue$LeftItem', True, None, None)
    assert j.get_queue_info() == []
    post = lambda q: requests.post(emu.url + f'queue/cancelItem?id={q}', auth=('admin', 'token'))
    assert post(qid).status_code == 500 and post(999).status_code == 404
    assert post(999).text == 'Provided id (999) not found'
    assert post(j.build_job('a/b')).status_code == 204
    r = requests.get(emu.url + 'queue/cancelItem?id=1', auth=('admin', 'token'))
    assert (r.status_code, r.headers['Allow']) == (405, 'POST')
    assert requests.get(emu.url + 'queue/item/999/api/json', auth=('admin', 'token')).status_code == 404


def test_nodes_with_python_jenkins(emu):
    j = client(emu)
    j.create_node('x-1', numExecutors=1, nodeDescription='d', remoteFS='/home/jenkins', labels='ec2 "gpu=a10g:4"',
                  exclusive=True, launcher=jenkins.LAUNCHER_JNLP)
    assert j.node_exists('x-1') and not j.node_exists('nope')
    nodes = {n['name']: n for n in j.get_nodes_with_info()}
    assert nodes['x-1']['assignedLabels'] == [{'name': 'ec2'}, {'name': 'gpu=a10g:4'}, {'name': 'x-1'}]
    assert (nodes['x-1']['offline'], nodes['x-1']['temporarilyOffline'], nodes['x-1']['offlineCause']) == \
        (True, False, None)
    assert nodes['Built-In Node']['assignedLabels'] == [{'name': 'built-in'}]
    info = j.get_node_info('x-1')
    assert info['_class'] == 'hudson.slaves.SlaveComputer' and info['jnlpAgent'] and info['numExecutors'] == 1
    assert info['executors'] == [{}]
    assert j.get_node_info('Built-In Node')['_class'] == 'hudson.model.Hudson$MasterComputer'
    tree = requests.get(emu.url + 'computer/x-1/api/json', auth=('admin', 'token'),
                        params={'tree': 'executors[currentExecutable[url,number]]'}).json()
    assert tree == {'_class': 'hudson.slaves.SlaveComputer', 'executors': [{'currentExecutable': None}]}
    with pytest.raises(jenkins.JenkinsException, match='already exists'):
        j.create_node('x-1', launcher=jenkins.LAUNCHER_JNLP)
    form = {'name': 'x-1', 'type': 'hudson.slaves.DumbSlave$DescriptorImpl', 'json': '{}'}
    r = requests.post(emu.url + 'computer/doCreateItem', data=form, auth=('admin', 'token'), allow_redirects=False)
    assert (r.status_code, r.headers['X-Error']) == (400, 'Agent called ?x-1? already exists')  # Jetty: ISO-8859-1
    r = requests.post(emu.url + 'computer/doCreateItem', data={**form, 'name': 'a?b'}, auth=('admin', 'token'))
    assert r.status_code == 400 and '‘?’ is an unsafe character' in r.text
    r = requests.post(emu.url + 'computer/doCreateItem', data={**form, 'name': 'ok'}, auth=('admin', 'token'),
                      allow_redirects=False)
    assert (r.status_code, r.headers['Location']) == (302, emu.url + 'computer/')
    assert requests.get(emu.url + 'computer/doCreateItem', auth=('admin', 'token')).status_code == 405
    jnlp = requests.get(emu.url + 'computer/x-1/jenkins-agent.jnlp', auth=('bob', 'token2')).text
    secret = re.search(r'<argument>([0-9a-f]{64})</argument><argument>x-1</argument>', jnlp).group(1)
    assert secret == emu.secret('x-1') and f'<argument>-url</argument><argument>{emu.url}</argument>' in jnlp
    j.disable_node('x-1')                                  # python-jenkins: no-op, the node is offline
    assert not j.get_node_info('x-1')['temporarilyOffline']
    j.delete_node('x-1')
    assert not j.node_exists('x-1')
    assert requests.post(emu.url + 'computer/x-1/doDelete', auth=('admin', 'token')).status_code == 404
    j.create_node('x-1', 1, launcher=jenkins.LAUNCHER_JNLP)
    assert emu.secret('x-1') == secret                     # a secret is per name


def test_script_console(emu):
    emu.create_job('x', label='a:b && c')
    emu.create_job('lax', label='vcpu>=8')
    emu.create_job('p', label=EXPR, kind='pipeline', script='true')
    emu.schedule('x'), emu.schedule('lax'), emu.schedule('p')
    emu.wait_for(lambda: len(emu.queue_items()) == 3 and all(i['buildable'] for i in emu.queue_items()))
    script = ('import groovy.json.JsonOutput\ndef q = Jenkins.get().queue\n'
              'println JsonOutput.toJson(q.items.collect { [id: it.id, cls: it.class.name, buildable: it.buildable,\n'
              '   pending: (it instanceof hudson.model.Queue.BuildableItem) && it.pending,\n'
              '   label: it.assignedLabel?.expression, name: it.task.fullDisplayName, why: it.why, since: it.inQueueSince] })')
    rows = {r['name']: r for r in json.loads(client(emu).run_script(script))}
    assert rows['x']['label'] == '"a:b"&&c' and rows['lax']['label'] == '"vcpu>=8"'
    assert rows['part of p #1']['label'] == CANON and rows['part of p #1']['buildable']
    assert rows['x']['why'] == 'Waiting for next available executor' and rows['x']['cls'].endswith('$BuildableItem')
    assert client(emu).run_script('println "hi"') == 'hi'
    with pytest.raises(jenkins.JenkinsException, match=r'\[403\]'):
        client(emu, 'bob', 'token2').run_script(script)
    assert requests.get(emu.url + 'scriptText', auth=('admin', 'token')).status_code == 405


def test_auth_crumbs_and_headers():
    e = JenkinsEmulator(users={'admin': ('token', True)}, passwords={'admin': 'pw'}).start()
    try:
        r = requests.get(e.url + 'api/json', auth=('admin', 'wrong'))
        assert (r.status_code, r.headers['WWW-Authenticate']) == (401, 'Basic realm="Jenkins"')
        r = requests.get(e.url + 'queue/api/json')
        assert (r.status_code, r.headers['X-You-Are-Authenticated-As']) == (403, 'anonymous')
        assert re.fullmatch(r'[0-9a-f]{8}', r.headers['X-Jenkins-Session']) and r.headers['X-Jenkins'] == '2.578'
        with pytest.raises(jenkins.JenkinsException, match=r'\[401\]'):
            jenkins.Jenkins(e.url, 'admin', 'bad').get_queue_info()
        e.create_job('x')
        s = requests.Session()
        s.auth = ('admin', 'pw')                                    # password: POSTs need a crumb
        assert s.post(e.url + 'job/x/build').status_code == 403
        crumb = s.get(e.url + 'crumbIssuer/api/json').json()
        assert crumb['crumbRequestField'] == 'Jenkins-Crumb'
        assert s.post(e.url + 'job/x/build', headers={'Jenkins-Crumb': crumb['crumb']}).status_code == 201
        assert requests.post(e.url + 'job/x/build', auth=('admin', 'token')).status_code == 201  # API token: none
        assert requests.get(e.url + 'jnlpJars/nope.jar').status_code == 404
    finally:
        e.stop()


def test_restart_down_and_queue_ids(emu):
    j = client(emu)
    emu.create_job('x', label=EXPR)
    first = emu.schedule('x')
    settle(emu)
    since = j.get_queue_info()[0]['inQueueSince']
    session = requests.get(emu.url, auth=('admin', 'token')).headers['X-Jenkins-Session']
    emu.restart()
    assert requests.get(emu.url, auth=('admin', 'token')).headers['X-Jenkins-Session'] != session
    assert [(i['id'], i['inQueueSince']) for i in client(emu).get_queue_info()] == [(first, since)]
    emu.create_job('y')
    assert emu.schedule('y') == first + 1
    emu.restart(lose_queue_counter=True)
    emu.create_job('z')
    assert emu.schedule('z') == first + 2                 # the counter fell back to the highest restored id
    emu.set_down(True)
    with pytest.raises(requests.ConnectionError):
        requests.get(emu.url, auth=('admin', 'token'), timeout=2)
    emu.set_down(False)
    emu.set_down(True, mode='503')
    assert requests.get(emu.url, auth=('admin', 'token')).status_code == 503
    emu.set_down(False)
    assert requests.get(emu.url + 'api/json', auth=('admin', 'token')).json()['quietingDown'] is False


# ---- the stand-in agent ---------------------------------------------------------------------------
@needs_jdk
def test_full_cycle_with_the_stand_in_agent(emu, tmp_path):
    j = client(emu)
    emu.create_job('x', label=EXPR, script='echo hello; echo "$NODE_NAME $BUILD_TAG $JOB_NAME"; '
                   'echo "cookie=${#JENKINS_SERVER_COOKIE} node-cookie=${JENKINS_NODE_COOKIE:-none}"; sleep 1')
    qid = j.build_job('x')
    settle(emu)
    j.create_node('x-1', 1, remoteFS=str(tmp_path), labels='ec2 vcpu=2', exclusive=True,
                  launcher=jenkins.LAUNCHER_JNLP)
    assert whys(j) == ['‘x-1’ is offline']
    jar = requests.get(emu.url + 'jnlpJars/agent.jar')             # no auth needed
    assert jar.status_code == 200 and jar.content[:2] == b'PK'
    bad = emu.run_agent('x-1', tmp_path, secret='0' * 64)
    assert bad.wait(30) != 0 and 'rejected' in bad.stdout.read()
    assert not emu.is_online('x-1')
    agent = emu.run_agent('x-1', tmp_path)
    running = emu.wait_for(lambda: [n for n in emu.nodes() if n['displayName'] == 'x-1'
                                    and n['executors'][0]['currentExecutable']], 30)
    assert running[0]['executors'][0]['currentExecutable']['url'] == emu.url + 'job/x/1/'
    done = emu.wait_for(lambda: [b for b in emu.builds('x') if not b['building']], 30)[0]
    assert (done['result'], done['queueId'], done['builtOn']) == ('SUCCESS', qid, 'x-1')
    info = j.get_build_info('x', 1)
    assert (info['result'], info['queueId'], info['builtOn'], info['building']) == ('SUCCESS', qid, 'x-1', False)
    console = j.get_build_console_output('x', 1)
    assert '\nhello\n' in console and 'x-1 jenkins-x-1 x\n' in console and console.endswith('Finished: SUCCESS\n')
    assert 'cookie=32 node-cookie=none\n' in console      # freestyle: the server cookie only
    assert j.get_queue_item(qid)['executable']['number'] == 1
    tree = requests.get(emu.url + 'job/x/api/json', auth=('admin', 'token'),
                        params={'tree': 'builds[number,result,queueId,builtOn]{0,50}'}).json()
    assert tree['builds'] == [{'_class': 'hudson.model.FreeStyleBuild', 'number': 1, 'result': 'SUCCESS',
                               'queueId': qid, 'builtOn': 'x-1'}]
    j.disable_node('x-1', 'drain')                      # online now: toggleOffline
    node = j.get_node_info('x-1')
    assert (node['offline'], node['temporarilyOffline'], node['offlineCauseReason']) == (True, True, 'drain')
    assert node['offlineCause'] == {'_class': 'hudson.slaves.OfflineCause$UserCause'}
    j.enable_node('x-1')
    assert not j.get_node_info('x-1')['offline']
    j.delete_node('x-1')
    assert agent.wait(30) == 0


@needs_jdk
def test_pipeline_node_block_survives_a_restart(emu, tmp_path):
    emu.create_job('p', label=EXPR, kind='pipeline',
                   script=['sleep 2', 'echo "after $NODE_NAME"', 'echo "node-cookie=${#JENKINS_NODE_COOKIE}"'])
    qid = emu.schedule('p')
    item = emu.wait_for(lambda: [i for i in emu.queue_items() if i['task']['_class'].endswith('PlaceholderTask')])[0]
    assert item['task'] == {'_class': 'org.jenkinsci.plugins.workflow.support.steps.ExecutorStepExecution'
                                      '$PlaceholderTask', 'name': 'part of p #1', 'url': 'job/p/1/'}
    emu.create_node('p-1', 'ec2 vcpu=2', exclusive=True, remote_fs=str(tmp_path))
    (tmp_path / 'secret').write_text(emu.secret('p-1') + '\n')
    agent = subprocess.Popen(['java', '-jar', str(emu.agent_jar()), '-jnlpUrl',    # legacy flags, @file secret
                              emu.url + 'computer/p-1/jenkins-agent.jnlp', '-secret', f"@{tmp_path / 'secret'}",
                              '-workDir', str(tmp_path), '-internalDir', 'remoting'], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        emu.wait_for(lambda: 'Running on p-1' in emu.builds('p')[0]['console'], 30)
        emu.restart(down_for=0.5)                                    # the agent reconnects and resends
        build = emu.wait_for(lambda: [b for b in emu.builds('p') if not b['building']], 30)[0]
        assert (build['result'], build['queueId'], build['builtOn'], build['node']) == ('SUCCESS', qid, None, 'p-1')
        assert len(re.findall(r'^after p-1$', build['console'], re.M)) == 1
        assert 'node-cookie=36\n' in build['console']                 # a UUID per node() body
        assert '[Pipeline] End of Pipeline' in build['console'] and (tmp_path / 'remoting').is_dir()
        assert emu.delete_node('p-1') and agent.wait(30) == 0
    finally:
        agent.kill()


@needs_jdk
def test_pipeline_sh_steps_are_durable_tasks_in_several_node_blocks_with_parallel_branches(emu, tmp_path):
    """Each `sh` runs detached from agent.jar with its own control dir; node() blocks queue one after
    the other; parallel branches run at once with their log lines prefixed."""
    emu.create_job('multi', kind='pipeline', nodes=[
        (EXPR, ['echo "wrapper-parent=$(awk \'/^PPid/{print $2}\' /proc/$PPID/status) cookie=$JENKINS_SERVER_COOKIE"',
                ('parallel', {'a': ['sleep 1; echo in-a'], 'b': ['echo in-b']})]),
        ('linux', ['echo "second on $NODE_NAME"'])])
    emu.schedule('multi')
    emu.create_node('m-1', 'ec2 vcpu=2', exclusive=True)
    emu.create_node('m-2', 'linux', exclusive=True)
    agents = [emu.run_agent('m-1', tmp_path / 'one'), emu.run_agent('m-2', tmp_path / 'two')]
    build = emu.wait_for(lambda: [b for b in emu.builds('multi') if not b['building']], 60)[0]
    console = build['console']
    assert build['result'] == 'SUCCESS', console
    parent = re.search(r'^wrapper-parent=(\d+) cookie=durable-([0-9a-f]{32})$', console, re.M)
    assert parent and int(parent.group(1)) != agents[0].pid          # detached: not a child of agent.jar
    assert '[a] in-a\n' in console and '[b] in-b\n' in console and '[Pipeline] parallel\n' in console
    assert 'second on m-2\n' in console and console.count('[Pipeline] node\n') == 2
    controls = sorted((tmp_path / 'one' / 'workspace' / 'multi@tmp').glob('durable-*'))
    assert len(controls) == 3 and all((c / 'jenkins-result.txt').read_text().strip() == '0' for c in controls)
    assert (tmp_path / 'two' / 'workspace' / 'multi@tmp').is_dir()
    for name, agent in zip(('m-1', 'm-2'), agents):
        assert emu.delete_node(name) and agent.wait(30) == 0


@needs_jdk
def test_aborting_a_durable_step_kills_its_processes_by_cookie(emu, tmp_path):
    marker = tmp_path / 'still-running'
    emu.create_job('long', label=EXPR, kind='pipeline', script=[f'sleep 30; touch {marker}'])
    emu.schedule('long')
    emu.create_node('l-1', 'ec2 vcpu=2', exclusive=True)
    agent = emu.run_agent('l-1', tmp_path / 'w')
    emu.wait_for(lambda: list((tmp_path / 'w' / 'workspace').glob('long@tmp/durable-*/jenkins-log.txt')), 30)
    emu.stop_build('long', 1)
    build = emu.wait_for(lambda: [b for b in emu.builds('long') if not b['building']], 30)[0]
    assert build['result'] == 'ABORTED'
    [result] = (tmp_path / 'w' / 'workspace').glob('long@tmp/durable-*/jenkins-result.txt')
    assert result.read_text().strip() == '143'                     # the wrapper outlived the kill
    assert not marker.exists()
    assert emu.delete_node('l-1') and agent.wait(30) == 0


# Node labelString splitting as hudson.util.QuotedStringTokenizer does it (Label.parse): delimiters
# are blank, tab, newline and CR only; quotes may start mid-token; a backslash escapes only
# backslash, quotes and blank (others stay as written), is literal at a token's start, and a
# trailing one is dropped.
@pytest.mark.parametrize('text,tokens', [
    ("ec2 it's", ['ec2', 'its']),
    ('a\\ b', ['a b']),
    ('"a\\tb"', ['a\\tb']),
    ('"a\tb" c', ['a\tb', 'c']),
    ('x\\', ['x']),
    ('"x\\', ['x']),
    ('a\fb c', ['a\fb', 'c']),
    ('\\"a"', ['\\a']),
    ('a"b c"d', ['ab cd']),
    ('""', ['']),
    ("'a\\x'", ['a\\x']),
    ('"\\u0041"', ['\\u0041']),
    ('"a\\"b" \'c\\\'d\'', ['a"b', "c'd"]),
    ('a\\\\b', ['a\\b']),
    (' \r\n ', []),
    ('a "', ['a']),
], ids=repr)
def test_label_string_splits_as_quoted_string_tokenizer(text, tokens):
    assert L.split_label_string(text) == tokens


@pytest.mark.parametrize('text,value', [('"a\\"', 'a'), ('"\\u0041b"', 'Ab'), ('"a\\qb"', 'aqb'), ("'x'", 'x')])
def test_unquote_as_jenkins(text, value):
    assert L.unquote(text) == value
