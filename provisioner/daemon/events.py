"""The daemon's structured log lines: one JSON object per line, `event` first among sorted keys'
peers. Callers never pass secrets or tokens."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable


def emitter(logger: str) -> Callable[..., None]:
    """`event(name, level=INFO, **fields)` writing to the named logger."""
    log = logging.getLogger(logger)

    def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
        log.log(level, "%s", json.dumps({"event": name, **fields}, sort_keys=True, default=str))
    return event
