"""HTTP plumbing: request parsing, Basic auth with API tokens or passwords, crumbs, status codes
and the headers every Jenkins response carries (section 5).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import sys
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from .messages import locale_for
from .model import User

log = logging.getLogger(__name__)
CRUMB_FIELD = 'Jenkins-Crumb'
PUBLIC_PREFIXES = ('/login', '/jnlpJars/', '/wsagents/', '/tcpSlaveAgentListener/')


class HttpError(Exception):
    """Rendered as Jenkins would: a status, a short text or HTML body, optional extra headers."""

    def __init__(self, status: int, message: str = '', headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: Any
    body: bytes
    user: User | None
    via_token: bool
    locale: str
    session: str
    handler: Any = None                      # the BaseHTTPRequestHandler, for the WebSocket upgrade


@dataclass
class Response:
    status: int = 200
    body: bytes = b''
    content_type: str = 'text/plain;charset=utf-8'
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: Any, query: dict[str, str] | None = None) -> Response:
    indent = 2 if (query or {}).get('pretty') == 'true' else None
    text = json.dumps(data, ensure_ascii=False, indent=indent, separators=None if indent else (',', ':'))
    return Response(200, text.encode('utf-8'), 'application/json;charset=utf-8')


def html(status: int, text: str) -> Response:
    return Response(status, f'<html><body>{text}</body></html>'.encode('utf-8'), 'text/html;charset=utf-8')


def crumb_for(salt: str, user: str, session: str) -> str:
    # DefaultCrumbIssuer: a digest of user name, HTTP session and a per-controller salt.
    return hashlib.sha256(f'{user};{session};{salt}'.encode()).hexdigest()


class EmulatorServer(ThreadingHTTPServer):
    """Tracks open connections so `set_down` can drop them (keep-alive and agent sockets too)."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], emu: Any) -> None:
        self.emu = emu
        self.open_sockets: set[Any] = set()
        super().__init__(addr, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (a daemon the kill test SIGKILLs) is no error of the
        emulator's: quiet, as Jetty is; anything else is printed as socketserver does."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server: EmulatorServer

    def log_message(self, format: str, *args: Any) -> None:   # quiet: tests read their own output
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        emu = self.server.emu
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length) if length else b''
        if emu.down_mode == '503':
            return self.send(html(503, 'Please wait while Jenkins is getting ready to work'))
        try:
            req = self._request(body)
            route: Callable[[Request], Response | None] = emu.routes.resolve(req)
            resp = route(req)
            if resp is not None:              # None: the route took over the socket (WebSocket)
                self.send(resp, req)
        except HttpError as err:
            self.send(self._error(err))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:              # Jenkins answers an unexpected exception with a 500
            log.exception('emulator error on %s %s', self.command, self.path)
            self.send(Response(500, f'{type(exc).__name__}: {exc}'.encode()))

    def _error(self, err: HttpError) -> Response:
        if err.status == 400 and 'X-Error' not in err.headers:
            err.headers['X-Error'] = err.message
        resp = html(err.status, err.message) if err.status in (400, 403) else \
            Response(err.status, err.message.encode('utf-8'))
        resp.headers.update(err.headers)
        return resp

    def _request(self, body: bytes) -> Request:
        emu = self.server.emu
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        ctype = self.headers.get('Content-Type') or ''
        form = dict(parse_qsl(body.decode('utf-8', 'replace'), keep_blank_values=True)) \
            if 'application/x-www-form-urlencoded' in ctype else {}
        cookie = self.headers.get('Cookie') or ''
        session = next((c.split('=', 1)[1] for c in cookie.replace(' ', '').split(';')
                        if c.startswith('JSESSIONID') and '=' in c), '')
        user, via_token = self._authenticate()
        locale = locale_for(self.headers.get('Accept-Language'), emu.default_locale)
        req = Request(self.command, parts.path, query, form, self.headers, body, user, via_token, locale, session, self)
        if user is None and not parts.path.startswith(PUBLIC_PREFIXES):
            raise HttpError(403, 'Authentication required', {
                'X-You-Are-Authenticated-As': 'anonymous', 'X-You-Are-In-Group-Disabled': 'JENKINS-39402',
                'X-Required-Permission': 'hudson.model.Hudson.Read',
                'X-Permission-Implied-By': 'hudson.security.Permission.GenericRead'})
        if self.command == 'POST' and emu.csrf and not (via_token and emu.crumb_exempt_api_tokens):
            sent = self.headers.get(CRUMB_FIELD) or form.get(CRUMB_FIELD) or ''
            good = crumb_for(emu.crumb_salt, user.name if user else 'anonymous', session)
            if not hmac.compare_digest(sent, good) and not parts.path.startswith(PUBLIC_PREFIXES):
                raise HttpError(403, 'No valid crumb was included in the request')
        return req

    def _authenticate(self) -> tuple[User | None, bool]:
        """(user, authenticated-by-API-token); wrong credentials are a 401 on every URL."""
        auth = self.headers.get('Authorization') or ''
        if not auth.startswith('Basic '):
            return None, False
        try:
            name, _, secret = base64.b64decode(auth[6:]).decode('utf-8').partition(':')
        except ValueError:
            name, secret = '', ''
        user = self.server.emu.users.get(name)
        if user is not None and hmac.compare_digest(secret, user.token):
            return user, True
        if user is not None and user.password is not None and hmac.compare_digest(secret, user.password):
            return user, False
        raise HttpError(401, 'Invalid password/token for user: ' + name,
                        {'WWW-Authenticate': 'Basic realm="Jenkins"'})

    def send(self, resp: Response, req: Request | None = None) -> None:
        emu = self.server.emu
        self.send_response(resp.status)
        headers = {'X-Jenkins': emu.version, 'X-Jenkins-Session': emu.session, 'X-Hudson': '1.395',
                   'Content-Type': resp.content_type, 'Content-Length': str(len(resp.body)), **resp.headers}
        for k, v in headers.items():
            # Jetty writes header values as ISO-8859-1; characters it cannot map become '?'.
            self.send_header(k, v.encode('latin-1', 'replace').decode('latin-1'))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(resp.body)
