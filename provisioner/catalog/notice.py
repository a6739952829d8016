"""Catalog warnings for the command line, at most once a day: a stale or missing price cache is
worth a line, not a line on every `plan` and `run --remote` (the daemon logs them once at start).
`defaults.catalog_max_age_days: never` turns them off altogether (see `load_catalog`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

REMIND_EVERY_S = 24 * 3600


def due(warnings: list[str] | tuple[str, ...], marker: Path | None = None, now: float | None = None) -> list[str]:
    """The warnings to show now: all of them if none was shown in the last day, else none.
    Showing them touches `marker` (default: `catalog-warned` in the state directory); a marker
    that cannot be read or written never hides a warning."""
    if not warnings:
        return []
    if marker is None:
        from provisioner import paths
        marker = paths.state_dir() / "catalog-warned"
    now = time.time() if now is None else now
    try:
        if now - marker.stat().st_mtime < REMIND_EVERY_S:
            return []
    except OSError:
        pass                                         # never shown (or unreadable): show
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os.utime(marker, (now, now))
    except OSError:
        pass
    return list(warnings)
