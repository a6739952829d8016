"""How `run --remote` follows a job-mode instance: its output lines and its end, as events.

Each follower posts to the launcher's event queue: ("line", is_stderr, text, tag) for every output
line, ("eof", name, tag) when one of its streams ended, and ("exited", code or None, tag) when the
instance ended; `tag` tells one instance's events from those of an instance given up before.
- docker cloud: the instance container's logs (stdout and stderr, each followed by a thread from the
  start, so nothing written before we looked is missed) and the engine's wait for its exit code.
- EC2: the CloudWatch Logs stream named after the instance id (the instance's job supervisor writes
  it), polled, plus a describe now and then to notice an instance that ended without saying so.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

from provisioner.runner.console import LineSplitter

log = logging.getLogger(__name__)


class DockerFollower:
    streams = 2

    def __init__(self, client: Any, container_id: str, events: "queue.SimpleQueue[tuple]", tag: object = None):
        self.api = client.api
        self.cid = container_id
        self.events = events
        self.tag = tag
        self.threads = [threading.Thread(target=self._logs, args=(False,), daemon=True, name="remote-stdout"),
                        threading.Thread(target=self._logs, args=(True,), daemon=True, name="remote-stderr"),
                        threading.Thread(target=self._wait, daemon=True, name="remote-wait")]

    def start(self) -> "DockerFollower":
        for thread in self.threads:
            thread.start()
        return self

    def _logs(self, is_stderr: bool) -> None:
        splitter = LineSplitter()
        try:
            stream = self.api.logs(self.cid, stdout=not is_stderr, stderr=is_stderr, stream=True, follow=True)
            for chunk in stream:
                for line in splitter.feed(chunk):
                    self.events.put(("line", is_stderr, line, self.tag))
        except Exception as exc:  # the container was removed under us: the end is reported by _wait
            log.debug("log stream of %s ended: %s", self.cid, exc)
        for line in splitter.flush():
            self.events.put(("line", is_stderr, line, self.tag))
        self.events.put(("eof", "stderr" if is_stderr else "stdout", self.tag))

    def _wait(self) -> None:
        import requests
        while True:
            try:
                result = self.api.wait(self.cid, timeout=3600)
                self.events.put(("exited", int(result.get("StatusCode", -1)), self.tag))
                return
            except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
                continue                        # a long job: the engine's wait is re-issued
            except Exception as exc:            # NotFound: terminated by someone else
                log.debug("wait for %s: %s", self.cid, exc)
                self.events.put(("exited", None, self.tag))
                return

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self.threads[:2]:
            thread.join(max(0.0, deadline - time.monotonic()))


class CloudWatchFollower:
    """Polls one CloudWatch Logs stream from its head; `alive()` says whether the instance still runs."""

    streams = 1

    def __init__(self, logs_client: Any, group: str, stream: str, alive: Callable[[], bool],
                 events: "queue.SimpleQueue[tuple]", tag: object = None, poll_s: float = 1.0,
                 alive_every_s: float = 15.0):
        self.client, self.group, self.stream, self.tag = logs_client, group, stream, tag
        self.alive, self.events = alive, events
        self.poll_s, self.alive_every_s = poll_s, alive_every_s
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="remote-cloudwatch")

    def start(self) -> "CloudWatchFollower":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        token: str | None = None
        next_check = time.monotonic() + self.alive_every_s
        while not self._stop.is_set():
            try:
                kwargs: dict[str, Any] = {"logGroupName": self.group, "logStreamName": self.stream,
                                          "startFromHead": True}
                if token:
                    kwargs["nextToken"] = token
                page = self.client.get_log_events(**kwargs)
                for event in page.get("events") or []:
                    self.events.put(("line", False, event.get("message", ""), self.tag))
                got = bool(page.get("events"))
                token = page.get("nextForwardToken") or token
            except Exception as exc:            # the stream does not exist until the job starts
                log.debug("get_log_events %s/%s: %s", self.group, self.stream, exc)
                got = False
            if not got and time.monotonic() >= next_check:
                next_check = time.monotonic() + self.alive_every_s
                try:
                    if not self.alive():
                        self.events.put(("eof", "cloudwatch", self.tag))
                        self.events.put(("exited", None, self.tag))
                        return
                except Exception as exc:
                    log.debug("describe while following: %s", exc)
            if not got:
                self._stop.wait(self.poll_s)
        self.events.put(("eof", "cloudwatch", self.tag))

    def join(self, timeout_s: float) -> None:
        self.stop()
        self.thread.join(timeout_s)
