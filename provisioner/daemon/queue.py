"""Reading demand from the Jenkins queue (queue JSON, script console): two paths, one result.

(a) With Overall/Administer: one `POST /scriptText` per poll prints every item with its exact label
    (pipelines and label parameters included). A 403 switches to (b) for good, logged once.
(b) REST only: `/queue/api/json?tree=...`; the label is `task.labelExpression` (freestyle) or read
    from `why` with the documented patterns, cached per (id, inQueueSince) the first time it is seen,
    because `why` names a node instead of the label once exactly one node matches. A never-connected
    sentinel node keeps Jenkins from hiding labels when no agent exists at all.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Iterable
from urllib.parse import unquote, urlsplit

from provisioner.daemon.jenkins import JenkinsClient, JenkinsForbidden
from provisioner.daemon.model import Item, ItemKey, Node

log = logging.getLogger(__name__)

QUEUE_SCRIPT = """import groovy.json.JsonOutput
def q = Jenkins.get().queue
println JsonOutput.toJson(q.items.collect { [id: it.id, cls: it.class.name, buildable: it.buildable,
   pending: (it instanceof hudson.model.Queue.BuildableItem) && it.pending,
   label: it.assignedLabel?.expression, name: it.task.fullDisplayName, why: it.why, since: it.inQueueSince] })
"""
QUEUE_REST = ("queue/api/json?tree=items[id,inQueueSince,buildable,blocked,stuck,why,pending,"
              "task[name,url,labelExpression]]")
WORKFLOW_JOB = "org.jenkinsci.plugins.workflow.job.WorkflowJob"   # the flyweight run: needs no agent
# Messages.properties with U+2018/U+2019 quotes; each captures a label, or a node name.
WHY_PATTERNS = (
    re.compile(r"^There are no nodes with the label \u2018(.*)\u2019$"),
    re.compile(r"^All nodes of label \u2018(.*)\u2019 are offline$"),
    re.compile(r"^Waiting for next available executor on \u2018(.*)\u2019$"),
    re.compile(r"^\u2018(.*)\u2019 is offline$"),
)
WHY_COMPOSITE = re.compile(r"\u2018[^\u2019]*\u2019 doesn\u2019t have label \u2018(.*?)\u2019(?:;|$)")
_DISPLAY_SEP = " \u00bb "                     # fullDisplayName joins folders with " » "


def why_label(why: str | None) -> str | None:
    """The label (or node name) a `why` string names, or None."""
    if not why:
        return None
    m = WHY_COMPOSITE.search(why)              # first: a composite may also end in "... is offline"
    if m:
        return m.group(1)
    for pattern in WHY_PATTERNS:
        m = pattern.match(why)
        if m:
            return m.group(1)
    return None


def job_from_url(url: str | None) -> str | None:
    """'http://j/job/a/job/b/' or 'job/p/7/' -> 'a/b' / 'p'."""
    if not url:
        return None
    parts = urlsplit(url).path.strip("/").split("/")
    names = [unquote(parts[i + 1]) for i in range(len(parts) - 1) if parts[i] == "job"]
    return "/".join(names) or None


def job_from_display(name: str | None) -> str:
    """'a » b', 'part of a » b #7' or 'p #7 (stage)' -> 'a/b' / 'p'."""
    text = name or ""
    if text.startswith("part of "):
        text = text[len("part of "):]
    text = re.sub(r" #\d+( \(.*\))?$", "", text)
    return text.replace(_DISPLAY_SEP, "/")


class QueueReader:
    """Turns the queue into Item values; `mode`: 'auto' (script, else REST), 'script' or 'rest'."""

    def __init__(self, client: JenkinsClient, mode: str = "auto"):
        self.client = client
        self.use_script = mode in ("auto", "script")
        self.mode = mode
        self._labels: dict[ItemKey, str] = {}
        client.on_restart(lambda old, new: self._labels.clear())   # ids may repeat after a restart

    @property
    def path(self) -> str:
        return "script" if self.use_script else "rest"

    def fetch(self) -> tuple[str, Any]:
        """One read of the queue: ('script', rows) or ('rest', items)."""
        if self.use_script:
            try:
                text = self.client.request("POST", "scriptText", endpoint="POST scriptText",
                                           data={"script": QUEUE_SCRIPT}).text
                return "script", _script_rows(text)
            except JenkinsForbidden:
                if self.mode == "script":
                    raise
                self.use_script = False
                log.warning("%s", json.dumps({"event": "jenkins.demand-path", "path": "rest", "reason":
                                              "scriptText needs Overall/Administer (403); reading "
                                              "/queue/api/json and 'why' with a sentinel node from now on"}))
        return "rest", self.client.get_json(QUEUE_REST, "GET queue").get("items") or []

    def items(self, fetched: tuple[str, Any], nodes: Iterable[Node]) -> list[Item]:
        """Items from a fetch; `nodes` (ours) resolve a `why` that names a node instead of a label."""
        kind, rows = fetched
        if kind == "script":
            return [_script_item(r) for r in rows if isinstance(r, dict)]
        by_name = {n.name: n for n in nodes}
        out, live = [], set()
        for r in rows:
            task = r.get("task") or {}
            if task.get("_class") == WORKFLOW_JOB:
                continue
            key = (int(r["id"]), int(r.get("inQueueSince") or 0))
            live.add(key)
            out.append(Item(key[0], key[1], self._label(key, r, task, by_name),
                            job_from_url(task.get("url")) or job_from_display(task.get("name")),
                            buildable=bool(r.get("buildable")), pending=bool(r.get("pending")),
                            blocked=bool(r.get("blocked")), why=r.get("why")))
        self._labels = {k: v for k, v in self._labels.items() if k in live}   # bounded by the queue
        return out

    def _label(self, key: ItemKey, r: dict, task: dict, nodes: dict[str, Node]) -> str | None:
        if task.get("labelExpression"):
            return task["labelExpression"]
        if key in self._labels:
            return self._labels[key]
        named = why_label(r.get("why"))
        if named is None:
            return None
        if named in nodes:                      # exactly one node matches: it is named, not the label
            meta = nodes[named].meta
            return meta.label if meta else None
        self._labels[key] = named
        return named


def _script_rows(text: str) -> list:
    """The JSON the queue script printed (python-jenkins style output may trail a marker)."""
    start = text.find("[")
    if start < 0:
        return []
    return json.loads(text[start:text.rindex("]") + 1])


def _script_item(r: dict) -> Item:
    cls = r.get("cls") or ""
    return Item(int(r["id"]), int(r.get("since") or 0), r.get("label"), job_from_display(r.get("name")),
                buildable=bool(r.get("buildable")), pending=bool(r.get("pending")),
                blocked=cls.endswith("$BlockedItem"), why=r.get("why"))
