"""Agents that die before connecting: what counts as a boot failure, and when to stop relaunching.

Pure (values in, values out; the loop does the I/O):

* An instance that *ended* (the docker cloud's container exited; an EC2 instance stopped or
  terminated; or the instance reported its own failure to `POST /v1/events`) is a **boot failure**
  when its node is ours, still exists, and never connected (never seen online or busy). An agent
  that ran its build and then exited is not one, nor is an instance we terminated ourselves.
* A failure is charged to the instance's **boot key**: the image it booted (docker: the image id,
  EC2: the AMI) and the hash of the configuration it booted with (the `provisioner:boot-config`
  tag). Not to the offer: the instance type did nothing wrong, so no offer is blocked.
* The ledger counts *consecutive* failures per boot key; an agent of that key connecting resets
  it. After `daemon.pause_after_boot_failures` in a row the key is **paused**: demand whose plan
  needs it is held (`reason="paused"`) and an alert is raised once. A new image (a rebuilt tag has
  a new id, a new AMI) or a changed configuration is another key, so demand resumes by itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

BOOT_CONFIG_TAG = "provisioner:boot-config"
LOG_TAIL_LINES = 20
CAUSE_MAX = 300


@dataclass(frozen=True)
class Ended:
    """An instance of ours that stopped, as the cloud (or its own report) tells it."""

    instance: str
    node: str | None
    image: str                          # image id (docker) or AMI id (EC2); "" when unknown
    config: str                         # the boot-config tag; "" when unknown
    code: str                           # agent-exited | bootstrap-failed | instance-stopped | ...
    exit_code: int | None = None
    detail: str = ""                    # a short cause (the report's message, the state reason)
    log_tail: tuple[str, ...] = ()      # the last lines of its log or console output
    offer: tuple[str, str, str] | None = None
    source: str = "cloud"               # cloud | report


@dataclass(frozen=True)
class BootFailure:
    node: str
    ended: Ended

    @property
    def key(self) -> str:
        return boot_key(self.ended.image, self.ended.config)

    def cause(self) -> str:
        """One line: what happened, the exit code and the most telling line of the log."""
        e = self.ended
        parts = [e.code]
        if e.exit_code is not None:
            parts.append(f"exit {e.exit_code}")
        if e.detail:
            parts.append(e.detail)
        last = telling_line(e.log_tail)
        if last and last not in e.detail:
            parts.append(last)
        return ": ".join(parts)[:CAUSE_MAX]


def boot_key(image: str, config: str) -> str:
    return f"{image or '?'}|{config or '?'}"


def config_hash(*parts: object) -> str:
    """The boot-config tag: a short hash of what an agent boots with besides its image."""
    body = json.dumps([str(p) for p in parts], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


_TELLING = ("not found", "error", "failed", "cannot", "no such", "denied", "exception")


def telling_line(lines: Iterable[str]) -> str:
    """The last log line that names an error, else the last non-empty line ('' when none)."""
    lines = [ln.strip() for ln in lines if ln and ln.strip()]
    for ln in reversed(lines):
        if any(word in ln.lower() for word in _TELLING):
            return ln[:200]
    return lines[-1][:200] if lines else ""


def failures(ended: Iterable[Ended], nodes: Mapping[str, bool], connected: Iterable[str],
             retired: Iterable[str] = ()) -> list[BootFailure]:
    """The boot failures among ended instances. `nodes`: our nodes now, name -> has connected;
    `connected`: nodes seen connected before (memory); `retired`: nodes we deleted ourselves.
    One failure per node, even when the cloud and the instance's own report both tell it."""
    seen_connected, gone = set(connected), set(retired)
    out: dict[str, BootFailure] = {}
    for e in ended:
        node = e.node
        if not node or node not in nodes or node in gone:
            continue                    # not ours any more, or we ended it
        if nodes[node] or node in seen_connected:
            continue                    # its agent connected: it ran (or runs) its build
        if node not in out or (out[node].ended.source == "report" and e.source == "cloud"):
            # the cloud's view carries the image; keep the report's words as the detail
            detail = out[node].ended.detail if node in out else ""
            out[node] = BootFailure(node, replace(e, detail=e.detail or detail))
    return list(out.values())


@dataclass(frozen=True)
class Ledger:
    """Consecutive boot failures per boot key, and the keys paused (and alerted) so far."""

    failures: Mapping[str, int] = field(default_factory=dict)
    paused: frozenset[str] = frozenset()


def should_pause(consecutive: int, threshold: int) -> bool:
    """Pause after `threshold` failures in a row (0 or less: never)."""
    return threshold > 0 and consecutive >= threshold


def record(ledger: Ledger, failed: Iterable[str], succeeded: Iterable[str], threshold: int
           ) -> tuple[Ledger, list[str]]:
    """The ledger after this tick's failures and successes (agents that connected), and the keys
    newly paused (alert once for each). A success resets its key and lifts its pause."""
    counts = dict(ledger.failures)
    for key in succeeded:
        counts.pop(key, None)
    for key in failed:
        counts[key] = counts.get(key, 0) + 1
    now_paused = {k for k, n in counts.items() if should_pause(n, threshold)}
    new = sorted(now_paused - ledger.paused)
    return Ledger(counts, frozenset(now_paused)), new


def paused_plans(plan_keys: Mapping[object, str | None], ledger: Ledger) -> frozenset:
    """The plan keys whose boot key is paused (a plan whose key is unknown is never held)."""
    return frozenset(k for k, bk in plan_keys.items() if bk is not None and bk in ledger.paused)
