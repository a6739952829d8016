"""Agent mode: tell the daemon the moment this agent's build starts (docs/contracts.md 'Agent -> daemon').

One build per agent: the daemon drains the node (toggleOffline) once its build runs, and any post
of the agent to the daemon's API drains it before the answer. A build that never runs `provisioner
run` never posts, so the watcher does it for every build: a thread of the watcher polls, and the first
time a build is seen it POSTs one sample `{run_id, at}` to `$PROVISIONER_REPORT_URL/v1/samples`.

How a build is seen (both checks are cheap; the first that fires wins):
- a new entry under `<work dir>/workspace`, every `poll_s` (0.1 s; one listdir), and at once where
  inotify is available (Linux: the poll is then also woken by the directory's creation events, so
  the latency is that of the post, not half a poll; the poll stays as the safety net). Jenkins creates
  the build's workspace there before its steps run (freestyle: when it allocates the workspace,
  before the SCM checkout and build steps; pipeline: the first step of a node() block that uses it,
  e.g. a checkout or `sh`, which also creates `<workspace>@tmp` for its control files). This is the
  one that sees pipelines: a pipeline's `sh` runs detached (durable-task), not as a child of the agent.
- a child process of the agent (freestyle shell steps run as children of agent.jar), every
  `children_s` (0.5 s; psutil reads every process' parent, so not at the faster rate). This one
  sees builds whose workspace lies elsewhere (a custom workspace).
A node() body that neither uses the workspace nor starts a process is not seen: the daemon's
/computer poll still drains its node.

The post has a short timeout and a couple of retries; nothing here ever raises into the watcher or
waits in its loop. Without a report URL and token (no daemon) nothing is watched. The token goes
only into the Authorization header: never on a command line, in a log line or a repr.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

from provisioner.agent.procs import agent_has_children, read_pid
from provisioner.backoff import UNCAPPED, Backoff
from provisioner.daemon_api import (RETRYABLE_STATUS, RUN_ID_ENV, SAMPLES_PATH, TOKEN_ENV, URL_ENV,  # noqa: F401
                                    retryable, safe_url)

POLL_S = 0.1
CHILDREN_S = 0.5


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would carry the Authorization header to the new place."""

    def redirect_request(self, *args, **kwargs):  # type: ignore[override]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _print(line: str) -> None:
    print(line, flush=True)


def iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Inotify:
    """Creation events of a few directories, only to wake the poll early (Linux; ctypes, no package)."""

    MASK = 0x100 | 0x80                          # IN_CREATE | IN_MOVED_TO
    FLAGS = 0o4000 | 0o2000000                   # IN_NONBLOCK | IN_CLOEXEC

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes, self._add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
        self.fd = libc.inotify_init1(self.FLAGS)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")

    @classmethod
    def open(cls) -> "Inotify | None":
        try:
            return cls()
        except Exception:                        # not Linux, no libc symbol, out of instances: poll only
            return None

    def watch(self, path: Path) -> bool:
        return self._add(self.fd, os.fsencode(str(path)), self.MASK) >= 0

    def wait(self, timeout_s: float) -> None:
        """Until an event or the timeout; events are read and dropped (the caller looks itself)."""
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if ready:
            try:
                while os.read(self.fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class SignalPoster:
    """POSTs the one build-start sample; `post()` returns True when the daemon took it (2xx)."""

    def __init__(self, url: str, token: str, run_id: str, *, timeout_s: float = 3.0, attempts: int = 3,
                 backoff_s: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 out: Callable[[str], None] | None = None):
        self.url = url.rstrip("/") + SAMPLES_PATH
        self.__token = token
        self.run_id = run_id
        self.timeout_s, self.attempts, self.backoff_s = timeout_s, max(1, attempts), backoff_s
        self._sleep, self._out = sleep, out or _print

    def __repr__(self) -> str:      # never show the token
        return f"SignalPoster({safe_url(self.url)!r}, token=***, run_id={self.run_id!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **kwargs) -> "SignalPoster | None":
        """A poster when the bootstrap sourced the bundle's report.env (URL and token); else None."""
        url, token = (environ.get(URL_ENV) or "").strip(), (environ.get(TOKEN_ENV) or "").strip()
        if not url or not token:
            return None
        return cls(url, token, environ.get(RUN_ID_ENV) or socket.gethostname(), **kwargs)

    def post(self) -> bool:
        body = json.dumps({"run_id": self.run_id, "at": iso_now()}).encode()
        problem = "no attempt"
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(Backoff(self.backoff_s, UNCAPPED, jitter="none").delay(attempt - 1))
            request = urllib.request.Request(self.url, data=body, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.__token}"})
            try:
                with _OPENER.open(request, timeout=self.timeout_s) as response:
                    response.read()
                return True
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
                exc.close()
                if not retryable(exc.code):
                    break               # 400 / 401: retrying cannot help
            except Exception as exc:    # refused, timed out, DNS: the daemon is away
                problem = type(exc).__name__ if not isinstance(exc, urllib.error.URLError) \
                    else f"{type(exc).__name__}: {type(exc.reason).__name__}"
        self._out(f"provisioner-watcher: warning: cannot signal the build start to {safe_url(self.url)} "
                  f"({problem}); the daemon's poll drains the node instead")
        return False


class BuildStartSignal:
    """The detector thread: polls for the build, posts once, ends."""

    def __init__(self, poster: SignalPoster | Callable[[], bool], *, agent_pid_file: Path | None,
                 work_dir: Path | None, poll_s: float = POLL_S, children_s: float = CHILDREN_S,
                 inotify: bool = True,
                 has_children: Callable[[int], bool] = agent_has_children,
                 out: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self._post = poster.post if isinstance(poster, SignalPoster) else poster
        self.agent_pid_file, self.poll_s, self.children_s = agent_pid_file, poll_s, children_s
        self.work_dir = work_dir
        self.workspace = work_dir / "workspace" if work_dir else None
        self._use_inotify = inotify and work_dir is not None
        self._has_children, self._out, self._clock = has_children, out or _print, clock
        self._stop = threading.Event()
        self._baseline = self._entries()  # what was there before the agent (a reused image, say)
        self._agent: int | None = None
        self._children_due = 0.0
        self.seen: str | None = None      # what showed the build
        self.sent: bool | None = None     # None: not yet tried
        self.done = threading.Event()
        self._thread: threading.Thread | None = None

    def _entries(self) -> set[str]:
        if self.workspace is None:
            return set()
        try:
            return set(os.listdir(self.workspace))
        except OSError:
            return set()

    def check(self) -> str | None:
        """What shows a build now, or None (one poll)."""
        new = self._entries() - self._baseline
        if new:
            return f"workspace {sorted(new)[0]!r}"
        now = self._clock()
        if now >= self._children_due:
            self._children_due = now + self.children_s
            if self._agent is None:
                self._agent = read_pid(self.agent_pid_file)   # written just after the agent starts
            if self._agent is not None and self._has_children(self._agent):
                return "a process of the agent"
        return None

    def run(self) -> None:
        started = None
        notify = Inotify.open() if self._use_inotify else None
        try:
            watching = notify is not None and self.work_dir is not None and notify.watch(self.work_dir)
            watching_ws = False
            while not self._stop.is_set():
                if watching and not watching_ws and self.workspace is not None:
                    watching_ws = notify.watch(self.workspace)    # once it exists; check() then lists it
                self.seen = self.check()
                if self.seen:
                    started = self._clock()
                    break
                if watching:
                    notify.wait(self.poll_s)
                else:
                    self._stop.wait(self.poll_s)
            if self.seen:
                self.sent = bool(self._post())
                if self.sent:
                    self._out(f"provisioner-watcher: build started ({self.seen}): node drain asked of the "
                              f"daemon in {self._clock() - started:.2f} s")
        except Exception as exc:            # never into the watcher
            self._out(f"provisioner-watcher: warning: build start signal: {type(exc).__name__}: {exc}")
        finally:
            if notify is not None:
                notify.close()
            self.done.set()

    def start(self) -> "BuildStartSignal":
        self._thread = threading.Thread(target=self.run, name="provisioner-build-start", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
