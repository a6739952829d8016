"""The controller's end of the stand-in agent channel (`GET /wsagents/`, WebSocket).

Test protocol (JSON text messages; a liberty: real agents speak remoting over this socket):
  agent -> controller  {"type":"hello","builds":[KEY...]}      first message; builds it still runs
                       {"type":"log","build":KEY,"seq":N,"data":TEXT}
                       {"type":"result","build":KEY,"exit":CODE,"aborted":BOOL}
  controller -> agent  {"type":"run","build":KEY,"job":..,"header":[..],"steps":[{kind,arg,banner[,branches]}],"env":{..},"remoteFS":..,"durable":BOOL}
                       {"type":"stop","build":KEY}  {"type":"ack","build":KEY}  {"type":"bye","reason":..}
The node is online exactly while a session is open. The agent pings every 2 s; silence for
`agent_timeout_s` closes the session. The built-in node runs steps in-process (LocalChannel).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from typing import Any, Protocol

from . import builds as B
from .model import Node, State
from .websocket import Closed, WebSocket

log = logging.getLogger(__name__)


class Controller(Protocol):
    state: State
    agent_timeout_s: float

    def dispatch(self, outbox: B.Outbox) -> None: ...
    def wake(self) -> None: ...


def handle(ctl: Controller, node: Node, msg: dict[str, Any]) -> None:
    """Apply one agent message to the state (from a WebSocket session or the LocalChannel)."""
    outbox: B.Outbox = []
    with ctl.state.lock:
        kind = msg.get('type')
        if kind == 'hello':
            B.agent_back(ctl.state, node, list(msg.get('builds') or []))
        elif kind == 'log':
            B.on_log(ctl.state, node, str(msg['build']), int(msg['seq']), str(msg['data']))
        elif kind == 'result':
            B.on_result(ctl.state, outbox, node, str(msg['build']), int(msg['exit']), bool(msg.get('aborted')))
    ctl.dispatch(outbox)
    if kind == 'result':
        ctl.wake()


class AgentSession:
    """One connected stand-in agent; implements model.Channel."""

    def __init__(self, ctl: Controller, node: Node, ws: WebSocket) -> None:
        self.ctl, self.node, self.ws = ctl, node, ws

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.ws.send(json.dumps(message))
        except (OSError, Closed):
            self.close()

    def close(self) -> None:
        self.ws.close()

    def run(self) -> None:
        """Read messages until the socket closes, then mark the node offline."""
        self.ws.sock.settimeout(self.ctl.agent_timeout_s)
        try:
            while True:
                handle(self.ctl, self.node, json.loads(self.ws.receive()))
        except (Closed, OSError, ValueError, KeyError) as exc:
            log.debug('agent %s disconnected: %r', self.node.name, exc)
        finally:
            self.ws.close()
            with self.ctl.state.lock:
                if self.node.channel is self:
                    self.node.channel = None
                    self.node.offline_cause = 'hudson.slaves.OfflineCause$ChannelTermination'
                    B.agent_lost(self.ctl.state, self.node)
            self.ctl.wake()


class LocalChannel:
    """The built-in node's executor: runs steps with /bin/sh on this machine, like an agent would."""

    def __init__(self, ctl: Controller, node: Node) -> None:
        self.ctl, self.node = ctl, node
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.home: str | None = None          # created on first use, removed by close()

    def send(self, message: dict[str, Any]) -> None:
        if message['type'] == 'run':
            threading.Thread(target=self._run, args=(message,), daemon=True).start()
        elif message['type'] == 'stop' and message['build'] in self.procs:
            os.killpg(self.procs[message['build']].pid, signal.SIGTERM)

    def close(self) -> None:
        for proc in list(self.procs.values()):
            os.killpg(proc.pid, signal.SIGKILL)
        if self.home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _run(self, msg: dict[str, Any]) -> None:
        key, seq, code, aborted = msg['build'], 0, 0, False
        self.home = self.home or tempfile.mkdtemp(prefix='jenkins-emulator-builtin-')
        ws = os.path.join(self.home, 'workspace', msg['job'])
        os.makedirs(ws, exist_ok=True)
        env = dict(os.environ, **msg['env'], WORKSPACE=ws)

        def emit(text: str) -> None:
            nonlocal seq
            handle(self.ctl, self.node, {'type': 'log', 'build': key, 'seq': seq, 'data': text})
            seq += 1
        for line in msg['header']:
            emit(line.replace('${WORKSPACE}', ws))
        for step in _flat(msg['steps']):
            if step['banner']:
                emit(step['banner'])
            if step['kind'] == 'echo':
                emit(step['arg'] + '\n')
                continue
            proc = subprocess.Popen(['/bin/sh', '-xe', '-c', step['arg']], cwd=ws, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            self.procs[key] = proc
            for line in proc.stdout:  # type: ignore[union-attr]
                emit(line)
            code = proc.wait()
            self.procs.pop(key, None)
            aborted = code < 0
            if code != 0:
                break
        handle(self.ctl, self.node, {'type': 'result', 'build': key, 'exit': code, 'aborted': aborted})


def _flat(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The built-in node runs a `parallel` step's branches one after the other (a liberty)."""
    out: list[dict[str, Any]] = []
    for step in steps:
        if step['kind'] == 'parallel':
            out.append({'kind': 'echo', 'banner': step['banner'], 'arg': ''})
            for branch in step['branches']:
                out.extend(_flat(branch['steps']))
        else:
            out.append(step)
    return out
