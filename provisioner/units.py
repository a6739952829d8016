"""Parsing of the units in CONTRACTS.md: memory sizes and durations."""

from __future__ import annotations

import re

from provisioner.errors import UsageError

GIB = 1024 ** 3
MIB = 1024 ** 2

_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(g|gi|gib|m|mi|mib)?\s*$", re.IGNORECASE)
_DUR_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_DUR_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_memory_gib(text: str) -> float:
    """'16' -> 16.0 GiB; '512M' / '512Mi' / '512MiB' -> 0.5; '2G' -> 2.0 (case-insensitive)."""
    m = _MEM.match(str(text))
    if not m:
        raise UsageError(f"bad memory size {text!r}: use a number of GiB or a suffix G, Gi, GiB, M, Mi, MiB")
    value = float(m.group(1))
    unit = (m.group(2) or "g").lower()
    return value / 1024 if unit.startswith("m") else value


def parse_duration_s(text: str | int | float) -> float:
    """'5400' / '5400s' / '90m' / '2h' / '1d' / '1h30m' -> seconds; zero or negative is an error."""
    raw = str(text).strip().lower()
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
            raise UsageError(f"bad duration {text!r}: use seconds or units like 90m, 2h, 1d, 1h30m")
    if seconds <= 0:
        raise UsageError(f"bad duration {text!r}: must be greater than zero")
    return seconds


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
