"""URL space of the emulator: controller, queue, labels, script console and the agent endpoints.
Nodes and jobs live in routes_nodes.py and routes_jobs.py. Every handler takes a `Request`.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote

from . import agent_jar, agents, render, scriptconsole
from .export import render as export
from .handler import CRUMB_FIELD, HttpError, Request, Response, crumb_for, html, json_response
from .websocket import WebSocket, accept_key

if TYPE_CHECKING:
    from .emulator import JenkinsEmulator

Handler = Callable[..., Response | None]


class Router:
    """Ordered (methods, regex, handler) table; a POST-only route answers GET with 405."""

    def __init__(self) -> None:
        self.table: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, methods: str, pattern: str, fn: Handler) -> None:
        self.table.append((methods, re.compile('^' + pattern + '$'), fn))

    def resolve(self, req: Request) -> Callable[[Request], Response | None]:
        for methods, rx, fn in self.table:
            m = rx.match(req.path)
            if m is None:
                continue
            method = 'GET' if req.method == 'HEAD' else req.method
            if method not in methods.split(','):
                if methods == 'POST':
                    raise HttpError(405, 'HTTP method GET is not supported by this URL', {'Allow': 'POST'})
                continue
            args = [unquote(g) if g is not None else None for g in m.groups()]
            return lambda r: fn(r, *args)
        raise HttpError(404, 'Not Found')


def redirect(url: str) -> Response:
    return Response(302, b'', 'text/html;charset=utf-8', {'Location': url})


def need_admin(req: Request) -> None:
    if req.user is None or not req.user.admin:
        who = req.user.name if req.user else 'anonymous'
        raise HttpError(403, f'{who} is missing the Overall/Administer permission')


class ControllerRoutes:
    def __init__(self, emu: 'JenkinsEmulator') -> None:
        self.emu = emu

    def register(self, r: Router) -> None:
        r.add('GET', r'/', self.page)
        r.add('GET', r'/api/json', self.root_json)
        r.add('GET', r'/login', self.page)
        r.add('GET', r'/jnlpJars/(agent|slave|remoting)\.jar', self.jar)
        r.add('GET', r'/crumbIssuer/api/json', self.crumb)
        r.add('GET', r'/(?:whoAmI|me)/api/json', self.whoami)
        r.add('POST', r'/quietDown', self.quiet_down)
        r.add('POST', r'/cancelQuietDown', self.cancel_quiet_down)
        r.add('POST', r'/scriptText', self.script)
        r.add('POST', r'/computer/([^/]+)/scriptText', self.script)
        r.add('GET', r'/queue/api/json', self.queue)
        r.add('GET', r'/queue/item/(\d+)/api/json', self.queue_item)
        r.add('GET', r'/queue/item/(\d+)/?', self.queue_item_page)
        r.add('POST', r'/queue/cancelItem', self.cancel)
        r.add('GET', r'/label/([^/]+)/api/json', self.label)
        r.add('GET', r'/wsagents/?', self.wsagents)

    def page(self, req: Request, *_: Any) -> Response:
        return html(200, 'Dashboard [Jenkins]')

    def root_json(self, req: Request) -> Response:
        emu = self.emu
        with emu.state.lock:
            b = render.folder_bean(emu.state, '', emu.url)
            builtin = emu.state.nodes['']
            b.props[:0] = render.computer_bean(builtin, emu.url).props[1:2]      # assignedLabels first
            for name, value in (('mode', builtin.mode), ('nodeDescription', "the Jenkins controller's built-in node"),
                                ('nodeName', ''), ('numExecutors', builtin.num_executors), ('description', None),
                                ('quietDownReason', None), ('quietingDown', emu.state.quieting_down),
                                ('slaveAgentPort', -1), ('url', emu.url), ('useCrumbs', emu.csrf),
                                ('useSecurity', True)):
                b.add(name, value, 1)
            return json_response(export(b, req.query), req.query)

    def jar(self, req: Request, name: str) -> Response:
        try:
            data = agent_jar.build_agent_jar().read_bytes()
        except agent_jar.JarBuildError as exc:
            raise HttpError(500, str(exc))
        return Response(200, data, 'application/java-archive')

    def crumb(self, req: Request) -> Response:
        if not self.emu.csrf:
            raise HttpError(404, 'Not Found')
        session, headers = req.session, {}
        if not session:                       # the crumb is tied to the HTTP session: start one
            session = secrets.token_hex(8)
            headers['Set-Cookie'] = f'JSESSIONID.{self.emu.session}={session}; Path=/; HttpOnly'
        user = req.user.name if req.user else 'anonymous'
        resp = json_response({'_class': 'hudson.security.csrf.DefaultCrumbIssuer',
                              'crumb': crumb_for(self.emu.crumb_salt, user, session),
                              'crumbRequestField': CRUMB_FIELD})
        resp.headers.update(headers)
        return resp

    def whoami(self, req: Request) -> Response:
        assert req.user is not None
        return json_response({'_class': 'hudson.security.WhoAmI', 'anonymous': False, 'authenticated': True,
                              'authorities': ['authenticated'], 'name': req.user.name,
                              'fullName': req.user.name, 'id': req.user.name})

    def quiet_down(self, req: Request) -> Response:
        self.emu.quiet_down(True)
        return redirect(self.emu.url)

    def cancel_quiet_down(self, req: Request) -> Response:
        self.emu.quiet_down(False)
        return redirect(self.emu.url)

    def script(self, req: Request, node: str | None = None) -> Response:
        need_admin(req)
        if node is not None and self.emu.node(node) is None:
            raise HttpError(404, 'Not Found')
        text = req.form.get('script') or req.query.get('script') or ''
        with self.emu.state.lock:
            out = scriptconsole.run(self.emu.state, text, req.locale)
        return Response(200, out.encode('utf-8'))

    def queue(self, req: Request) -> Response:
        with self.emu.state.lock:
            return json_response(export(render.queue_bean(self.emu.state, self.emu.url, req.locale), req.query),
                                 req.query)

    def _item(self, qid: str) -> Any:
        item = self.emu.state.find_item(int(qid))
        if item is None:
            raise HttpError(404, 'Not Found')
        return item

    def queue_item(self, req: Request, qid: str) -> Response:
        with self.emu.state.lock:
            bean = render.item_bean(self.emu.state, self._item(qid), self.emu.url, req.locale)
            return json_response(export(bean, req.query), req.query)

    def queue_item_page(self, req: Request, qid: str) -> Response:
        with self.emu.state.lock:
            self._item(qid)
        return Response(200, ('Queue item exists. For details check, for example, '
                              f'{self.emu.url}queue/item/{qid}/api/json?tree=cancelled,executable[url]').encode())

    def cancel(self, req: Request) -> Response:
        qid = req.query.get('id') or req.form.get('id') or ''
        if not qid.isdigit():
            raise HttpError(404, f'Provided id ({qid}) not found')
        outcome = self.emu.cancel(int(qid))
        if outcome == 'not-found':
            raise HttpError(404, f'Provided id ({qid}) not found')
        if outcome == 'failed':
            raise HttpError(500, f'Could not cancel run for id {qid}')
        return Response(204)

    def label(self, req: Request, expr: str) -> Response:
        with self.emu.state.lock:
            return json_response(export(render.label_bean(self.emu.state, expr, self.emu.url), req.query), req.query)

    def wsagents(self, req: Request) -> Response | None:
        """WebSocketAgents#doIndex: the agent's Node-Name and Secret-Key headers, then Upgrade."""
        h = req.headers
        if 'websocket' not in (h.get('Upgrade') or '').lower() or not h.get('Sec-WebSocket-Key'):
            raise HttpError(400, 'WebSocket upgrade expected')
        name, secret = h.get('Node-Name'), h.get('Secret-Key')
        if not name or not secret:
            raise HttpError(400, 'Node-Name and Secret-Key headers are required')
        emu = self.emu
        if name in emu.held_agents:
            raise HttpError(503, f'{name} is held by the test')
        handler = req.handler
        with emu.state.lock:
            node = emu.state.nodes.get(name)
            if node is None or node.builtin or not node.has_computer:
                raise HttpError(404, f'No such agent: {name}')
            if not secrets.compare_digest(secret, emu.secret(name)):
                raise HttpError(403, f'Incorrect secret for agent {name}')
            if node.channel is not None:
                raise HttpError(409, f'{name} is already connected to this controller. Rejecting this connection.')
            handler.send_response(101)
            for k, v in (('Upgrade', 'websocket'), ('Connection', 'Upgrade'),
                         ('Sec-WebSocket-Accept', accept_key(h['Sec-WebSocket-Key'])),
                         ('X-Remoting-Capability', h.get('X-Remoting-Capability') or ''),
                         ('X-Jenkins', emu.version), ('X-Jenkins-Session', emu.session)):
                handler.send_header(k, v)
            handler.end_headers()
            handler.wfile.flush()
            session = agents.AgentSession(emu, node, WebSocket(handler.connection, handler.rfile))
            node.channel, node.offline_cause = session, None
        handler.close_connection = True
        emu.wake()
        session.run()
        return None

