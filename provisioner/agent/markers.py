"""Marker lines: how an instance tells its launcher (`run --remote`) what happened.

The bootstrap prints them on its own stdout (the docker cloud's container logs; on EC2 the job's
CloudWatch stream), each on a line of its own, so they pass through every log transport unchanged.
The launcher hides them from the user's view.
"""

from __future__ import annotations

import json
from typing import Any

PREFIX = "::provisioner-"
READY = "::provisioner-ready::"          # secrets in place, the job (or agent) is starting
RECORD = "::provisioner-record::"        # + the job's usage record as one JSON object
EXIT = "::provisioner-exit::"            # + the bootstrap's exit code (the job's)
EVENT = "::provisioner-event::"          # + {"event": "interrupted" | "expired" | "idle", ...}


def record_line(record: dict) -> str:
    return f"{RECORD} {json.dumps(record, separators=(',', ':'), sort_keys=True)}"


def exit_line(code: int) -> str:
    return f"{EXIT} {int(code)}"


def event_line(event: str, **detail: Any) -> str:
    return f"{EVENT} {json.dumps({'event': event, **detail}, separators=(',', ':'), sort_keys=True)}"


def parse(line: str) -> tuple[str, Any] | None:
    """(kind, payload) for a marker line: ('ready', None), ('record', dict), ('exit', int),
    ('event', dict); None for any other line (or a marker whose payload does not parse)."""
    text = line.strip()
    if not text.startswith(PREFIX):
        return None
    if text == READY:
        return "ready", None
    for kind, prefix in (("record", RECORD), ("exit", EXIT), ("event", EVENT)):
        if text.startswith(prefix + " "):
            body = text[len(prefix) + 1:]
            try:
                value = int(body) if kind == "exit" else json.loads(body)
            except ValueError:
                return None
            if kind != "exit" and not isinstance(value, dict):
                return None
            return kind, value
    return None
