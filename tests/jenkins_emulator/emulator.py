"""`JenkinsEmulator`: the HTTP server, the maintain() loop and the Python API tests drive it with."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import threading
import time
from typing import Any, Sequence

from . import builds as B
from . import queue as Q
from .agents import LocalChannel
from .api import EmulatorAPI
from .handler import EmulatorServer
from .model import BUILT_IN, State, User, now_ms
from .routes import ControllerRoutes, Router
from .routes_jobs import JobRoutes
from .routes_nodes import NodeRoutes

Steps = str | Sequence[str | tuple[str, str]] | None


def normalise_steps(script: Steps) -> list[tuple[str, Any]]:
    """A str is one `sh` step; a list holds steps (str = sh, or (kind, arg) with kind sh|echo, or
    ('parallel', {branch name: steps}) for a pipeline's `parallel` step); a flat list alternating
    'sh'/'echo' and arguments (`["sh", "make"]`) is read as pairs."""
    if script is None:
        return []
    if isinstance(script, str):
        return [('sh', script)]
    items = list(script)
    if items and len(items) % 2 == 0 and all(isinstance(x, str) for x in items) \
            and all(x in ('sh', 'echo') for x in items[0::2]):
        return [(str(items[i]), str(items[i + 1])) for i in range(0, len(items), 2)]
    out: list[tuple[str, Any]] = []
    for x in items:
        if isinstance(x, str):
            out.append(('sh', x))
        elif x[0] == 'parallel':
            out.append(('parallel', {str(k): normalise_steps(v) for k, v in dict(x[1]).items()}))
        else:
            out.append((str(x[0]), str(x[1])))
    return out


class JenkinsEmulator(EmulatorAPI):
    """A Jenkins controller on 127.0.0.1 for tests. `users` maps name -> (API token, is admin)."""

    def __init__(self, users: dict[str, tuple[str, bool]] | None = None, *, port: int = 0,
                 passwords: dict[str, str] | None = None, builtin_executors: int = 0, builtin_labels: str = '',
                 quiet_period: float = 0.0, maintain_interval: float = 0.5, csrf: bool = True,
                 crumb_exempt_api_tokens: bool = True, default_locale: str = 'de', version: str = '2.578',
                 agent_timeout: float = 10.0, reconnect_grace: float = 60.0, secret_key: bytes | None = None) -> None:
        users = users if users is not None else {'admin': ('admin-token', True)}
        self.users = {n: User(n, tok, admin, (passwords or {}).get(n)) for n, (tok, admin) in users.items()}
        self.port, self.version, self.default_locale = port, version, default_locale
        self.quiet_period, self.maintain_interval = quiet_period, maintain_interval
        self.csrf, self.crumb_exempt_api_tokens = csrf, crumb_exempt_api_tokens
        self.agent_timeout_s, self.reconnect_grace_s = agent_timeout, reconnect_grace
        self.secret_key = secret_key or secrets.token_bytes(32)
        self.state = State(builtin_executors, builtin_labels)
        self.state.nodes[BUILT_IN].channel = LocalChannel(self, self.state.nodes[BUILT_IN])
        self.routes = Router()
        for group in (ControllerRoutes(self), NodeRoutes(self), JobRoutes(self)):
            group.register(self.routes)
        self.down_mode: str | None = None
        self.held_agents: set[str] = set()         # their connections get 503 until released
        self.session = self.crumb_salt = ''
        self._new_session()
        self._server: EmulatorServer | None = None
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._loop: threading.Thread | None = None
        self._agents: list[subprocess.Popen[Any]] = []

    # ---- lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Root URL with a trailing slash, e.g. http://127.0.0.1:41234/"""
        return f'http://127.0.0.1:{self.port}/'

    def start(self) -> 'JenkinsEmulator':
        self._serve()
        self._loop = threading.Thread(target=self._maintain_loop, name='jenkins-emulator-maintain', daemon=True)
        self._loop.start()
        return self

    def stop(self) -> None:
        for proc in self._agents:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self._stopping.set()
        self._wake.set()
        self._unserve()
        with self.state.lock:
            for node in self.state.nodes.values():
                if node.channel is not None:
                    node.channel.close()
        if self._loop is not None:
            self._loop.join(timeout=5)

    def __enter__(self) -> 'JenkinsEmulator':
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        self._server = EmulatorServer(('127.0.0.1', self.port), self)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={'poll_interval': 0.1},
                         name='jenkins-emulator-http', daemon=True).start()

    def _unserve(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for sock in list(server.open_sockets):
            try:
                sock.shutdown(2)
            except OSError:
                pass

    def _new_session(self) -> None:
        # X-Jenkins-Session = Util.getDigestOf(version + startTime), first 8 hex digits.
        self.session = hashlib.md5(f'{self.version}{time.time_ns()}'.encode()).hexdigest()[:8]
        self.crumb_salt = secrets.token_hex(16)

    def set_down(self, down: bool, mode: str = 'refuse') -> None:
        """Take the controller away: mode 'refuse' closes the port (connection refused) and every open
        connection; '503' keeps the port and answers 503 to every request. Agents are disconnected
        in both modes and maintain() pauses; builds on them keep running (see README)."""
        if down:
            assert mode in ('refuse', '503')
            self.down_mode = mode
            if mode == 'refuse':
                self._unserve()
            self._drop_channels()
        else:
            was, self.down_mode = self.down_mode, None
            if was == 'refuse':
                self._serve()
            with self.state.lock:                 # the reconnect grace counts only while up
                for build in self.state.running_builds():
                    if build.disconnected_at is not None:
                        build.disconnected_at = time.monotonic()
            self.wake()

    def hold_agent(self, name: str, held: bool = True) -> None:
        """While held, `name`'s agent connections are answered 503 (it retries every second): lets a
        test order an agent's reconnect after something else, instead of racing it."""
        (self.held_agents.add if held else self.held_agents.discard)(name)

    def _drop_channels(self) -> None:
        with self.state.lock:
            channels = [n.channel for n in self.state.agents() if n.channel is not None]
        for channel in channels:
            channel.close()

    def restart(self, lose_queue_counter: bool = False, down_for: float = 0.0, mode: str = 'refuse') -> None:
        """A controller restart: connections drop, X-Jenkins-Session changes, LeftItems are forgotten,
        the queue comes back from queue.xml with the same ids (the id counter too, unless
        `lose_queue_counter`: then it falls back to the highest restored id, and ids repeat)."""
        self.set_down(True, mode)
        with self.state.lock:
            self._new_session()
            self.state.left.clear()
            self.state.quieting_down = False
            for item in self.state.items.values():
                Q.unassign(item)
            if lose_queue_counter:
                self.state.counter = max(self.state.items, default=0)
        time.sleep(down_for)
        self.set_down(False)

    def quiet_down(self, on: bool = True) -> None:
        with self.state.lock:
            self.state.quieting_down = on
        self.wake()

    def set_quiet_period(self, seconds: float) -> None:
        self.quiet_period = seconds

    # ---- maintain() -------------------------------------------------------------------------------
    def wake(self) -> None:
        """Run maintain() soon (Jenkins also runs it on events, not only every 5 s)."""
        self._wake.set()

    def dispatch(self, outbox: B.Outbox) -> None:
        for channel, message in outbox:
            if channel is not None:
                channel.send(message)

    def maintain(self) -> None:
        """One Queue#maintain pass, now."""
        if self.down_mode:
            return
        outbox: B.Outbox = []
        with self.state.lock:
            B.expire(self.state, self.reconnect_grace_s)
            Q.maintain(self.state, lambda item, node, ex: B.start_build(self.state, self.url, outbox, item, node, ex),
                       lambda item: B.start_flyweight(self.state, item))
        self.dispatch(outbox)

    def _maintain_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.maintain_interval)
            self._wake.clear()
            if self._stopping.is_set():
                break
            self.maintain()
            # A pass can make more work (pending -> started, flyweight -> node() item): follow up soon.
            time.sleep(0.05)
            with self.state.lock:
                t = now_ms()
                more = any(i.pending or (i.state == 'waiting' and i.timestamp <= t) for i in self.state.items.values())
            if more:
                self._wake.set()
