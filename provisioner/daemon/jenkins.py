"""The Jenkins adapter: one request funnel over python-jenkins, and the node operations.

Every request goes through `JenkinsClient.request`: `Accept-Language: en` (the `why` strings are
localised; tests/jenkins_emulator/README.md), API-token basic auth, a crumb when the controller issues one,
and HTTP failures mapped to a few exceptions. The `X-Jenkins-Session` header of every response is
compared with the last one: it changes on every controller restart, and then the crumb and every
cache keyed by queue id (ids may repeat, section 7.1) are dropped.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from typing import Any, Callable
from urllib.parse import quote

import jenkins
import requests

from provisioner.daemon.model import DRAIN_MESSAGES, Node, NodeMeta
from provisioner.errors import ProvisionerError

log = logging.getLogger(__name__)

COMPUTERS = ("computer/api/json?tree=computer[displayName,description,offline,temporarilyOffline,"
             "offlineCauseReason,idle,assignedLabels[name],executors[currentExecutable[url,number]]]")
CREATE_NODE = "computer/doCreateItem"
NODE_JNLP = "computer/{name}/jenkins-agent.jnlp"
DELETE_NODE = "computer/{name}/doDelete"
TOGGLE_OFFLINE = "computer/{name}/toggleOffline"
NODE_INFO = "computer/{name}/api/json?tree=temporarilyOffline"
NODE_BUILDS = "computer/{name}/api/json?tree=executors[currentExecutable[url]],oneOffExecutors[currentExecutable[url]]"
_ARGUMENT = re.compile(r"<argument>([^<]*)</argument>")


class JenkinsError(ProvisionerError):
    """A Jenkins request failed. `code`: the HTTP status, or 'timeout' / 'connection'."""

    def __init__(self, message: str, code: str):
        self.code = code
        super().__init__(message)


class JenkinsAuthError(JenkinsError):
    """401: wrong user or API token."""


class JenkinsForbidden(JenkinsError):
    """403: the account lacks a permission (e.g. Overall/Administer for /scriptText)."""


class JenkinsNotFound(JenkinsError):
    """404: no such node, job or queue item."""


class JenkinsUnavailable(JenkinsError):
    """The controller is away: connection refused, timeout, 502/503/504. Try again next tick."""


class JenkinsClient(jenkins.Jenkins):
    """python-jenkins with our funnel. `calls` counts requests by endpoint (for the benchmark)."""

    def __init__(self, url: str, user: str | None, token: str | None, *, timeout: float = 15.0):
        super().__init__(url, user, token, timeout=timeout)
        self._session.headers["Accept-Language"] = "en"
        self.jenkins_session: str | None = None
        self.calls: Counter[str] = Counter()
        self._on_restart: list[Callable[[str | None, str], None]] = []
        self._lock = threading.Lock()          # python-jenkins' crumb and auth state are not thread-safe

    def __repr__(self) -> str:                 # never show the token
        return f"JenkinsClient({self.server!r})"

    def on_restart(self, callback: Callable[[str | None, str], None]) -> None:
        """Call `callback(old, new)` when X-Jenkins-Session changes (a controller restart)."""
        self._on_restart.append(callback)

    # -- the funnel ------------------------------------------------------------------------------
    def _request(self, req, stream=None):  # noqa: ANN001 - python-jenkins' own seam
        req.headers.setdefault("Accept-Language", "en")
        response = super()._request(req, stream)
        self._see_session(response.headers.get("X-Jenkins-Session"))
        return response

    def _see_session(self, session: str | None) -> None:
        if not session or session == self.jenkins_session:
            return
        old, self.jenkins_session = self.jenkins_session, session
        if old is not None:
            log.warning("%s", json.dumps({"event": "jenkins.restart", "old_session": old, "session": session}))
            self.crumb = None                      # crumbs die with the controller's HTTP sessions
            self._session.cookies.clear()
            for callback in self._on_restart:
                callback(old, session)

    def request(self, method: str, path: str, *, endpoint: str | None = None, retry_crumb: bool = True,
                **kwargs: Any) -> requests.Response:
        """One request to `path` (relative to the root URL); raise a JenkinsError on failure."""
        self.calls[endpoint or f"{method} {path.split('?')[0]}"] += 1
        req = requests.Request(method, self.server + path, **kwargs)
        try:
            with self._lock:
                response = self.jenkins_request(req, add_crumb=method != "GET")
        except jenkins.NotFoundException:
            raise JenkinsNotFound(f"{method} {path}: not found (404)", "404") from None
        except jenkins.TimeoutException:
            raise JenkinsUnavailable(f"{method} {path}: timed out", "timeout") from None
        except requests.ConnectionError as exc:
            raise JenkinsUnavailable(f"{method} {path}: cannot connect ({type(exc).__name__})",
                                     "connection") from None
        except jenkins.JenkinsException as exc:
            status = _status(str(exc))
            if status == "403" and "crumb" in str(exc).lower() and retry_crumb:
                self.crumb = None                  # a stale crumb (restart or session expiry): fetch again
                return self.request(method, path, endpoint=endpoint, retry_crumb=False, **kwargs)
            raise _error(method, path, status, str(exc)) from None
        except requests.HTTPError as exc:
            code = str(exc.response.status_code)
            raise _error(method, path, code, exc.response.headers.get("X-Error") or exc.response.text) from None
        except requests.RequestException as exc:
            raise JenkinsUnavailable(f"{method} {path}: {type(exc).__name__}", "connection") from None
        return response

    def get_json(self, path: str, endpoint: str | None = None) -> Any:
        return self.request("GET", path, endpoint=endpoint).json()

    # -- nodes -----------------------------------------------------------------------------------
    def computers(self, prefix: str) -> tuple[list[Node], set[str]]:
        """Our nodes (name starts with `prefix`) as values, and the names of every node."""
        data = self.get_json(COMPUTERS, "GET computer")
        ours, names = [], set()
        for c in data.get("computer") or []:
            name = c.get("displayName") or ""
            names.add(name)
            if not name.startswith(prefix):
                continue
            builds = tuple((e.get("currentExecutable") or {}).get("url") or "?"
                           for e in c.get("executors") or [] if e and e.get("currentExecutable"))
            ours.append(Node(name, frozenset(lab.get("name") for lab in c.get("assignedLabels") or []
                                             if lab.get("name")),
                             offline=bool(c.get("offline")), temporarily_offline=bool(c.get("temporarilyOffline")),
                             idle=bool(c.get("idle", True)), builds=builds,
                             meta=NodeMeta.parse(c.get("description")),
                             offline_reason=c.get("offlineCauseReason") or ""))
        return ours, names

    def create_node(self, name: str, label_string: str, description: str, remote_fs: str,
                    executors: int = 1) -> None:
        """An inbound (WebSocket) agent node, EXCLUSIVE: only items whose label it satisfies."""
        if executors < 1:
            raise ValueError("a node needs at least one executor")   # Jenkins would create a ghost
        spec = {"nodeDescription": description, "numExecutors": executors, "remoteFS": remote_fs,
                "labelString": label_string, "mode": "EXCLUSIVE",
                "retentionStrategy": {"stapler-class": "hudson.slaves.RetentionStrategy$Always"},
                "nodeProperties": {"stapler-class-bag": "true"},
                "launcher": {"stapler-class": jenkins.LAUNCHER_JNLP, "webSocket": True}}
        data = {"name": name, "type": jenkins.NODE_TYPE, "json": json.dumps(spec)}
        self.request("POST", CREATE_NODE, endpoint="POST createNode", data=data)

    def node_secret(self, name: str) -> str:
        """The inbound agent's secret: the first <argument> of its jenkins-agent.jnlp."""
        text = self.request("GET", NODE_JNLP.format(name=quote(name)), endpoint="GET jnlp").text
        m = _ARGUMENT.search(text)
        if not m or not re.fullmatch(r"[0-9a-fA-F]{16,}", m.group(1)):
            raise JenkinsError(f"no agent secret in the JNLP file of {name}", "jnlp")
        return m.group(1)

    def delete_node(self, name: str) -> bool:
        """Delete a node; False when it was already gone."""
        try:
            self.request("POST", DELETE_NODE.format(name=quote(name)), endpoint="POST deleteNode")
        except JenkinsNotFound:
            return False
        return True

    def temporarily_offline(self, name: str) -> bool:
        data = self.get_json(NODE_INFO.format(name=quote(name)), "GET computer/NAME")
        return bool(data.get("temporarilyOffline"))

    def node_builds(self, name: str) -> list[str]:
        """The URLs of the builds on `name`'s executors now (the agent API asks when an agent posts
        before the loop's next /computer read showed its build)."""
        try:
            data = self.get_json(NODE_BUILDS.format(name=quote(name)), "GET computer/NAME")
        except JenkinsNotFound:
            return []                                  # deleted: nothing runs there
        return [(e.get("currentExecutable") or {}).get("url") or ""
                for e in [*(data.get("executors") or []), *(data.get("oneOffExecutors") or [])]
                if e and e.get("currentExecutable")]

    def build_result(self, job: str, number: str) -> str | None:
        """Jenkins' result word of a finished build (SUCCESS, FAILURE, ...); None while it runs or
        when it is gone (the agent API's build records take their result from here)."""
        path = "".join(f"job/{quote(part, safe='')}/" for part in job.split("/")) + f"{quote(number)}/api/json"
        try:
            data = self.get_json(path + "?tree=result,building", "GET job/NAME/N")
        except JenkinsNotFound:
            return None
        return None if data.get("building") else data.get("result")

    def drain(self, name: str, message: str = DRAIN_MESSAGES["started"]) -> None:
        """Temporarily offline: the running build finishes, no other starts (a toggle: call once)."""
        self.request("POST", TOGGLE_OFFLINE.format(name=quote(name)), endpoint="POST toggleOffline",
                     params={"offlineMessage": message})

    def ensure_sentinel(self, name: str, names: set[str]) -> bool:
        """Create the never-connected sentinel node unless it exists; True when created."""
        if name in names:
            return False
        try:
            self.create_node(name, name, "Never connects: keeps Jenkins naming labels in the queue's "
                                         "'why' (provisioner daemon)", "/tmp/provisioner-sentinel")
        except JenkinsError as exc:
            if exc.code != "400":                  # 400: it exists already (a race with another reader)
                raise
        log.info("%s", json.dumps({"event": "jenkins.sentinel-created", "node": name}))
        return True


def _status(message: str) -> str:
    m = re.search(r"\[(\d{3})\]", message)
    return m.group(1) if m else "error"


def _error(method: str, path: str, status: str, detail: str) -> JenkinsError:
    lines = (detail or "").strip().splitlines()   # python-jenkins: "Error in request ... [403]: reason\nbody"
    text = f"{method} {path.split('?')[0]}: HTTP {status}" + (f": {lines[0][:200]}" if lines else "")
    if status == "401":
        return JenkinsAuthError(text, status)
    if status == "403":
        return JenkinsForbidden(text, status)
    if status == "404":
        return JenkinsNotFound(text, status)
    if status in ("502", "503", "504"):
        return JenkinsUnavailable(text, status)
    return JenkinsError(text, status)
