"""Domain errors. Each carries the exit code the command line turns it into (docs/contracts.md)."""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_NO_OFFER = 3


class ProvisionerError(Exception):
    """Base of every error the command line reports as one clean message."""

    exit_code = 1


class UsageError(ProvisionerError):
    """Bad input: a flag, a value, a label, a filter, a config key. Exit 2."""

    exit_code = EXIT_USAGE


class InputError(UsageError):
    """Bad input at a known place: `where` names the source, `position` the 0-based column."""

    def __init__(self, message: str, *, where: str = "", position: int | None = None,
                 token: str | None = None):
        self.message = message
        self.where = where
        self.position = position
        self.token = token
        super().__init__(self._render())

    def _render(self) -> str:
        place = self.where
        if self.position is not None:
            place = f"{place} at position {self.position + 1}" if place else f"position {self.position + 1}"
        return f"{place}: {self.message}" if place else self.message


class NoOfferError(ProvisionerError):
    """No offer satisfies the requirements; `constraint` names the one that emptied the set. Exit 3."""

    exit_code = EXIT_NO_OFFER

    def __init__(self, message: str, constraint: str):
        self.constraint = constraint
        super().__init__(message)


class ConfigError(UsageError):
    """An invalid configuration file; `problems` lists every (key path, line, message)."""

    def __init__(self, path: str, problems: list[tuple[str, int | None, str]]):
        self.path = path
        self.problems = problems
        lines = [f"{path}:{line or '?'}: {key}: {msg}" if key else f"{path}:{line or '?'}: {msg}"
                 for key, line, msg in problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


class StoreError(ProvisionerError):
    """The history store cannot be opened or is not ours (corrupt, foreign, newer schema)."""
