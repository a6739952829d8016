"""The engine clients' errors and shared timeouts: imported by both runner/engine (the socket client)
and runner/engine_sdk (the docker SDK client), so neither imports the other at module level."""

from __future__ import annotations

DISTRIBUTION_TIMEOUT_S = 20.0   # asking a registry: a launcher waits no longer than this


class EngineError(Exception):
    """The engine refused a call (or could not be asked): `status` is the HTTP status when known,
    `explanation` the engine's own message."""

    def __init__(self, explanation: str, status: int | None = None):
        super().__init__(explanation)
        self.explanation, self.status = explanation, status


class NotFound(EngineError):
    """No such container or image (404)."""


class Unreachable(EngineError):
    """Nothing answers on the engine's socket, or the connection broke."""


class EngineTimeout(EngineError):
    """The engine did not answer within the call's timeout."""
