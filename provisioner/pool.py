"""Warm pools and agent reuse: the settings under `labels: {EXPRESSION: {pool: ..., reuse: ...}}` and
the pure decisions over them (how many spares a label keeps, which spare a build takes, when a
spare retires). No I/O and no clock: the daemon passes `now` and what it observed.

A spare is an agent made ready before any build asks for it, for the label's most likely plan (the
offer most of the label's recent jobs were planned on). Which spare a waiting build takes: a ready
one whose offer is the build's own plan and whose node labels satisfy the build's label. A spare
retires when its image is no longer the current one, when it has waited longer than `max_idle`,
when it did not come up within the boot timeout, when the pool shrinks (outside `hours`, or a lower
target), and when the label's plan moved to another offer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from provisioner.errors import InputError
from provisioner.labels import canonical_expression
from provisioner.units import parse_duration_s

MAX_SPARES = 50                       # per label: a typo must not start a fleet
DEMAND_WINDOW_S = 900.0               # builds started in this window raise the target above min_spare
_HOURS = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*-\s*(\d{1,2})(?::(\d{2}))?\s*$")
OfferKey = tuple[str, str, str]       # (instance type, region, market)


@dataclass(frozen=True)
class PoolSpec:
    """One label's `pool:` entry."""

    label: str                         # the expression as written (what plans are made for)
    min_spare: int = 1
    max_spare: int = 1
    hours: tuple[int, int] | None = None   # [start, end) minutes of the day, UTC; may wrap midnight
    max_idle_s: float | None = None


@dataclass(frozen=True)
class ReuseSpec:
    """One label's `reuse:` entry (off unless present)."""

    idle_s: float = 300.0
    max_builds: int = 10


@dataclass(frozen=True)
class Spare:
    """A spare as the daemon observed it."""

    node: str
    offer: OfferKey | None
    image: str                         # the image fingerprint it was made from
    state: str                         # starting | ready | stopped
    launched_at: float                 # its instance's launch (or the node's creation without one)
    ready_since: float | None = None   # first seen ready
    node_labels: frozenset[str] = frozenset()


# ---- settings ---------------------------------------------------------------------------------

def parse_hours(text: Any) -> tuple[int, int]:
    """'08:00-18:00' or '8-18' (UTC) -> (start, end) minutes of the day."""
    m = _HOURS.match(str(text)) if isinstance(text, (str, int)) else None
    if m is None:
        raise InputError(f"bad hours {text!r}: use HH[:MM]-HH[:MM] in UTC, e.g. 08:00-18:00")
    h1, m1, h2, m2 = int(m.group(1)), int(m.group(2) or 0), int(m.group(3)), int(m.group(4) or 0)
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1 == 24 and m1) or (h2 == 24 and m2):
        raise InputError(f"bad hours {text!r}: hours run 0-24, minutes 0-59")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise InputError(f"bad hours {text!r}: the window is empty")
    return start, end


def _count(entry: Mapping, key: str, default: int, where: str, low: int = 0, high: int = MAX_SPARES) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{where}.{key}: must be a whole number from {low} to {high}")
    return value


def _duration(entry: Mapping, key: str, default: Any, where: str) -> float | None:
    value = entry.get(key, default)
    if value is None:
        return None
    try:
        return parse_duration_s(value)
    except Exception as exc:           # noqa: BLE001 - the message names the key
        raise InputError(f"{where}.{key}: {getattr(exc, 'message', exc)}") from None


def parse_pool(label: str, entry: Any, where: str = "pool") -> PoolSpec:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: must be a mapping with min_spare, max_spare, hours, max_idle")
    unknown = sorted(set(entry) - {"min_spare", "max_spare", "hours", "max_idle"})
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r} (known: min_spare, max_spare, hours, max_idle)")
    low = _count(entry, "min_spare", 1, where)
    high = _count(entry, "max_spare", low, where)
    if high < low:
        raise InputError(f"{where}.max_spare: must be at least min_spare ({low})")
    hours = None
    if entry.get("hours") is not None:
        try:
            hours = parse_hours(entry["hours"])
        except InputError as exc:
            raise InputError(f"{where}.hours: {exc.message}") from None
    return PoolSpec(label, low, high, hours, _duration(entry, "max_idle", None, where))


def parse_reuse(entry: Any, where: str = "reuse") -> ReuseSpec:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: must be a mapping with idle and max_builds")
    unknown = sorted(set(entry) - {"idle", "max_builds"})
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r} (known: idle, max_builds)")
    return ReuseSpec(_duration(entry, "idle", "5m", where) or 300.0,
                     _count(entry, "max_builds", 10, where, low=1, high=1000))


def pools_from_config(labels: Mapping[str, Any] | None) -> dict[str, PoolSpec]:
    """Canonical label -> PoolSpec for every `labels:` entry with a pool (`config.labels`: label
    expression -> config_tree.LabelSection, validated already)."""
    return {canonical_expression(expr): entry.pool for expr, entry in (labels or {}).items()
            if entry.pool is not None}


def reuse_from_config(labels: Mapping[str, Any] | None) -> dict[str, ReuseSpec]:
    """Canonical label -> ReuseSpec for every `labels:` entry with reuse (`config.labels`)."""
    return {canonical_expression(expr): entry.reuse for expr, entry in (labels or {}).items()
            if entry.reuse is not None}


# ---- decisions --------------------------------------------------------------------------------

def in_hours(hours: tuple[int, int] | None, now: float) -> bool:
    """Is `now` (epoch seconds) inside the window (UTC)? No window: always."""
    if hours is None:
        return True
    minute = int(now // 60) % (24 * 60)
    start, end = hours
    return start <= minute < end if start < end else minute >= start or minute < end


def target(spec: PoolSpec, now: float, recent_builds: int) -> int:
    """How many spares the label keeps now: none outside its hours; else as many as builds of the
    label started within DEMAND_WINDOW_S, between min_spare and max_spare."""
    if not in_hours(spec.hours, now):
        return 0
    return max(spec.min_spare, min(spec.max_spare, recent_builds))


def likely_offer(plans: Mapping[str, OfferKey | None], weights: Mapping[str, int]) -> OfferKey | None:
    """The offer most of the label's recent jobs were planned on (weighted by their builds); ties
    go to the cheaper-sorting key so the answer is stable. `plans`: job -> its plan's offer."""
    votes: dict[OfferKey, int] = {}
    for job, offer in plans.items():
        if offer is not None:
            votes[offer] = votes.get(offer, 0) + max(1, weights.get(job, 0))
    if not votes:
        return None
    return sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def _stale(s: Spare, image: Any) -> bool:
    """Is the spare of another image than the next launch boots? `image`: the current image (a spare
    without one is stale too), or a function of the spare (EC2: the AMI of its architecture; unknown
    on either side: not stale), or None (unknown)."""
    if callable(image):
        current = image(s)
        return bool(current and s.image and s.image != current)
    return image is not None and s.image != image


def retirements(spares: Iterable[Spare], spec: PoolSpec, *, now: float, want: int, image: Any,
                offer: OfferKey | None, boot_timeout_s: float) -> list[tuple[str, str]]:
    """(node, reason) for each spare to retire: image (an older image), offer (the label's plan
    moved), boot-timeout, max-idle, then shrink (more than `want` left: starting ones first, then
    the oldest)."""
    out: list[tuple[str, str]] = []
    kept: list[Spare] = []
    for s in spares:
        if _stale(s, image):
            out.append((s.node, "image"))
        elif offer is not None and s.offer is not None and s.offer != offer:
            out.append((s.node, "offer"))
        elif s.state == "starting" and now - s.launched_at > boot_timeout_s:
            out.append((s.node, "boot-timeout"))
        elif spec.max_idle_s is not None and now - (s.ready_since or s.launched_at) > spec.max_idle_s:
            out.append((s.node, "max-idle"))
        else:
            kept.append(s)
    surplus = len(kept) - max(0, want)
    if surplus > 0:
        order = sorted(kept, key=lambda s: (s.state != "starting", s.launched_at, s.node))
        out.extend((s.node, "shrink") for s in order[:surplus])
    return out


def to_launch(spares: Iterable[Spare], retiring: Iterable[str], want: int) -> int:
    """How many new spares to start: the target less those staying."""
    gone = set(retiring)
    return max(0, want - sum(1 for s in spares if s.node not in gone))


def claim(item_label: str | None, item_offer: OfferKey | None, spares: Iterable[Spare],
          satisfies: Any, taken: Iterable[str] = ()) -> Spare | None:
    """The ready spare a waiting build takes: its offer is the build's plan and its node labels
    satisfy the build's label (Jenkins' own test); the longest-ready first. None: launch as usual."""
    if item_offer is None:
        return None
    busy = set(taken)
    fits = [s for s in spares if s.state in ("ready", "stopped") and s.node not in busy
            and s.offer == item_offer and satisfies(item_label, s.node_labels)]
    fits.sort(key=lambda s: (s.state != "ready", s.ready_since or s.launched_at, s.node))
    return fits[0] if fits else None


def next_build(job: str, node_labels: frozenset[str], builds_done: int, spec: ReuseSpec,
               waiting: Iterable[tuple[Any, str, str | None]], satisfies: Any, taken: Iterable[Any] = ()) -> Any:
    """Agent reuse: the queue item (key) a finished agent takes next, or None. `waiting`: (key, job,
    label) oldest first. Jenkins hands an online node to the oldest item its labels satisfy, so the
    agent is offered only when that item is of its own job; never past `max_builds`."""
    if builds_done >= spec.max_builds:
        return None
    busy = set(taken)
    for key, item_job, label in waiting:
        if key in busy or not satisfies(label, node_labels):
            continue
        return key if item_job == job else None
    return None
