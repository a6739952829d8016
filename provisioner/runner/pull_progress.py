"""An image pull's progress from the engine's pull stream: layers done of layers seen, and bytes
downloaded of bytes announced. One line when the pull starts and one when it ends off a terminal
(an instance's runner is never on one); a line rewritten in place on a terminal."""

from __future__ import annotations

import time
from typing import Any, Callable

MIB = 1024 * 1024
DONE = ("Pull complete", "Already exists", "Download complete")


class PullProgress:
    def __init__(self, ref: str, write: Callable[[str], None] | None = None, tty: bool = False,
                 every_s: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self.ref, self.write, self.tty, self.every_s, self.clock = ref, write, tty, every_s, clock
        self.layers: dict[str, dict] = {}
        self._last = 0.0
        self._started = False

    def feed(self, event: dict) -> None:
        """One decoded event of the pull stream (`{"id": layer, "status": ..., "progressDetail": ...}`)."""
        if self.write and not self._started:
            self._started = True
            self.write(f"Pulling image {self.ref}" + ("" if self.tty else "\n"))
        layer = event.get("id")
        status = str(event.get("status") or "")
        if not layer or status.startswith(("Pulling from", "Digest", "Status")):
            return
        entry = self.layers.setdefault(layer, {"current": 0, "total": 0, "done": False})
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            entry["current"], entry["total"] = int(detail.get("current") or 0), int(detail["total"])
        if status in DONE:
            entry["done"] = status != "Download complete" or entry["done"]
            if entry["total"]:
                entry["current"] = entry["total"]
        if self.write and self.tty and self.clock() - self._last >= self.every_s:
            self._last = self.clock()
            self.write(f"\r{self.text()}")

    def totals(self) -> tuple[int, int, int, int]:
        """(layers done, layers seen, bytes downloaded, bytes announced)."""
        done = sum(1 for e in self.layers.values() if e["done"])
        return (done, len(self.layers), sum(e["current"] for e in self.layers.values()),
                sum(e["total"] for e in self.layers.values()))

    def text(self) -> str:
        done, seen, got, total = self.totals()
        return f"Pulling image {self.ref}: {done}/{seen} layers, {got / MIB:.1f}/{total / MIB:.1f} MiB"

    def summary(self) -> str:
        """What the run's header says after `pulled in N s`."""
        done, seen, got, _ = self.totals()
        return f"{seen} layers, {got / MIB:.1f} MiB downloaded" if seen else ""

    def finish(self) -> None:
        if self.write and self._started and self.tty:
            self.write(f"\r{self.text()}\n")


def consume(stream: Any, progress: PullProgress) -> None:
    """Feed a decoded pull stream; an `error` event raises RuntimeError with its message."""
    for event in stream:
        if isinstance(event, dict) and event.get("error"):
            raise RuntimeError(str(event["error"]))
        progress.feed(event)
