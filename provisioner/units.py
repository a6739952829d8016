"""Parsing of the units in docs/labels.md: memory sizes and durations."""

from __future__ import annotations

import math
import re

from provisioner.errors import UsageError

GIB = 1024 ** 3
MIB = 1024 ** 2
MAX_MEMORY_GIB = 1024 ** 2        # 1 PiB: far above any machine, far below float trouble
MAX_DURATION_S = 3650 * 86400     # 10 years: below every timer's limit and datetime's range
_MAX_TEXT = 100                   # longer unit text is refused before any number is parsed

_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(g|gi|gib|m|mi|mib)?\s*$", re.IGNORECASE)
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_DUR_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_memory_gib(text: str) -> float:
    """'16' -> 16.0 GiB; '512M' / '512Mi' / '512MiB' -> 0.5; '2G' -> 2.0 (case-insensitive)."""
    raw = str(text)
    m = _MEM.match(raw) if len(raw) <= _MAX_TEXT else None
    if not m:
        raise UsageError(f"bad memory size {_short(text)}: use a number of GiB or a suffix G, Gi, GiB, M, Mi, MiB")
    value = float(m.group(1))
    unit = (m.group(2) or "g").lower()
    gib = value / 1024 if unit.startswith("m") else value
    if not gib <= MAX_MEMORY_GIB:
        raise UsageError(f"bad memory size {_short(text)}: at most {MAX_MEMORY_GIB} GiB")
    return gib


def parse_duration_s(text: str | int | float) -> float:
    """'5400' / '5400s' / '90m' / '2h' / '1d' / '1h30m' -> seconds; zero or negative is an error."""
    raw = str(text).strip().lower()
    if len(raw) > _MAX_TEXT:
        raise UsageError(f"bad duration {_short(text)}: too long")
    if re.fullmatch(r"-?\d+(\.\d+)?", raw):
        seconds = float(raw)
    else:
        pos, seconds = 0, 0.0
        for m in _DUR_PART.finditer(raw):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _DUR_SECONDS[m.group(2)]
            pos = m.end()
        if pos != len(raw) or not raw:
            raise UsageError(f"bad duration {_short(text)}: use seconds or units like 90m, 2h, 1d, 1h30m")
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise UsageError(f"bad duration {_short(text)}: at most 10 years ({MAX_DURATION_S} s)")
    if seconds <= 0:
        raise UsageError(f"bad duration {_short(text)}: must be greater than zero")
    return seconds


def _short(text: object) -> str:
    """A value for an error message: repr, cut to a readable length."""
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "...'"


def format_duration(seconds: float) -> str:
    """7260 -> '2h1m'; 59 -> '59s'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    if s and len(parts) < 2:
        parts.append(f"{s}s")
    return "".join(parts)


def format_gib(gib: float) -> str:
    return f"{gib:g} GiB" if gib >= 1 else f"{gib * 1024:g} MiB"
