"""`/computer/...`: create (as python-jenkins posts it), read, jnlp secret, delete, toggle offline,
config.xml (section 3).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape as xml_escape

from . import labels as L
from . import render
from .export import render as export
from .handler import HttpError, Request, Response, html, json_response
from .model import Node
from .routes import Router, redirect

if TYPE_CHECKING:
    from .emulator import JenkinsEmulator

NODE_TYPES = ('hudson.slaves.DumbSlave$DescriptorImpl', 'hudson.slaves.DumbSlave')


class NodeRoutes:
    def __init__(self, emu: 'JenkinsEmulator') -> None:
        self.emu = emu

    def register(self, r: Router) -> None:
        r.add('GET', r'/computer/api/json', self.list)
        r.add('GET', r'/computer/?', self.page)
        r.add('POST', r'/computer/doCreateItem', self.create)
        r.add('GET', r'/computer/([^/]+)/api/json', self.info)
        r.add('GET', r'/computer/([^/]+)/?', self.node_page)
        r.add('GET', r'/computer/([^/]+)/(?:jenkins|slave)-agent\.jnlp', self.jnlp)
        r.add('POST', r'/computer/([^/]+)/doDelete', self.delete)
        r.add('POST', r'/computer/([^/]+)/toggleOffline', self.toggle)
        r.add('POST', r'/computer/([^/]+)/changeOfflineCause', self.change_cause)
        r.add('GET,POST', r'/computer/([^/]+)/config\.xml', self.config)

    def _node(self, name: str) -> Node:
        node = self.emu.node(name)
        if node is None or not node.has_computer:   # ComputerSet#getDynamic: no Computer -> 404
            raise HttpError(404, 'Not Found')
        return node

    def list(self, req: Request) -> Response:
        with self.emu.state.lock:
            return json_response(export(render.computer_set_bean(self.emu.state, self.emu.url), req.query), req.query)

    def page(self, req: Request) -> Response:
        return html(200, 'Nodes [Jenkins]')

    def node_page(self, req: Request, name: str) -> Response:
        with self.emu.state.lock:
            node = self._node(name)
        return html(200, f'{node.display_name} [Jenkins]')

    def info(self, req: Request, name: str) -> Response:
        with self.emu.state.lock:
            return json_response(export(render.computer_bean(self._node(name), self.emu.url), req.query), req.query)

    def create(self, req: Request) -> Response:
        """ComputerSet#doDoCreateItem: checkName, find the descriptor, build from the `json` field."""
        form = {**req.query, **req.form}
        name = (form.get('name') or '').strip()
        if not name:
            raise HttpError(400, "Query parameter 'name' is required")
        reason = L.bad_name_reason(name)
        if reason:
            raise HttpError(400, reason)
        if form.get('type') not in NODE_TYPES:
            raise HttpError(400, f"No such type: {form.get('type')}")
        try:
            spec = json.loads(form.get('json') or '{}')
            executors = int(spec.get('numExecutors') or 1)
        except (ValueError, TypeError) as exc:
            raise HttpError(400, f'Invalid agent configuration for {name}. {exc}')
        launcher = spec.get('launcher') or {}
        node = Node(name, executors, spec.get('remoteFS') or '', spec.get('labelString') or '',
                    spec.get('mode') or 'NORMAL', spec.get('nodeDescription'),
                    launcher.get('stapler-class') or launcher.get('$class') or 'hudson.slaves.JNLPLauncher')
        node.websocket = bool(launcher.get('webSocket'))
        with self.emu.state.lock:
            if name in self.emu.state.nodes:
                raise HttpError(400, f'Agent called ‘{name}’ already exists')
            self.emu.state.nodes[name] = node
        self.emu.wake()
        return redirect(self.emu.url + 'computer/')

    def jnlp(self, req: Request, name: str) -> Response:
        """SlaveComputer#doJenkinsAgentJnlp: needs Computer/CONNECT; the secret is the first argument."""
        if req.query.get('encrypt') == 'true':
            raise HttpError(400, 'encrypt=true is not emulated')
        with self.emu.state.lock:
            node = self._node(name)
            if node.builtin:
                raise HttpError(404, 'Not Found')
            args = [self.emu.secret(node.name), node.name]
            if node.websocket:
                args.append('-webSocket')
            args += ['-workDir', node.remote_fs, '-internalDir', 'remoting', '-url', self.emu.url]
        body = '<jnlp><application-desc>' + ''.join(
            f'<argument>{xml_escape(a)}</argument>' for a in args) + '</application-desc></jnlp>'
        return Response(200, body.encode('utf-8'), 'application/x-java-jnlp-file')

    def delete(self, req: Request, name: str) -> Response:
        with self.emu.state.lock:
            node = self._node(name)
            if node.builtin:
                raise HttpError(400, 'The built-in node cannot be deleted')
        self.emu.delete_node(node.name)
        return redirect(self.emu.url + 'computer/')

    def toggle(self, req: Request, name: str) -> Response:
        with self.emu.state.lock:
            node = self._node(name)
        self.emu.set_temporarily_offline(node.name, not node.temp_offline, req.query.get('offlineMessage', ''))
        return redirect(self.emu.url + f'computer/{name}/')

    def change_cause(self, req: Request, name: str) -> Response:
        with self.emu.state.lock:
            node = self._node(name)
            node.offline_message = req.query.get('offlineMessage', req.form.get('offlineMessage', ''))
        return redirect(self.emu.url + f'computer/{name}/')

    def config(self, req: Request, name: str) -> Response:
        with self.emu.state.lock:
            node = self._node(name)
            if req.method == 'POST':
                _apply_config(node, req.body)
                return Response(200)
            return Response(200, _config_xml(node).encode('utf-8'), 'application/xml;charset=utf-8')


def _config_xml(node: Node) -> str:
    def tag(name: str, value: object) -> str:
        return f'  <{name}>{xml_escape(str(value))}</{name}>\n'
    return ("<?xml version='1.1' encoding='UTF-8'?>\n<slave>\n" + tag('name', node.name)
            + tag('description', node.description or '') + tag('remoteFS', node.remote_fs)
            + tag('numExecutors', node.num_executors) + tag('mode', node.mode)
            + '  <retentionStrategy class="hudson.slaves.RetentionStrategy$Always"/>\n'
            + f'  <launcher class="{node.launcher}"/>\n' + tag('label', node.label_string)
            + '  <nodeProperties/>\n</slave>\n')


def _apply_config(node: Node, body: bytes) -> None:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise HttpError(400, f'Invalid config.xml: {exc}')
    get = {child.tag: (child.text or '') for child in root}
    node.label_string = get.get('label', node.label_string)
    node.mode = get.get('mode', node.mode)
    node.description = get.get('description', node.description)
    node.remote_fs = get.get('remoteFS', node.remote_fs)
    if 'numExecutors' in get and int(get['numExecutors']) != node.num_executors and all(e.idle for e in node.executors):
        node.resize(int(get['numExecutors']))
