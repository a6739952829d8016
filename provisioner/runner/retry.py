"""`--retry N` / `--retry-on`: which failed attempts run again, and after how long.

`--retry-on` takes a comma-separated list: exit codes (`1`, `3-5`), `oom`, `interrupted` (the
container was killed by a signal nobody here sent, e.g. a spot interruption watcher stopping it),
`timeout`, or `any` (any non-zero exit but a timeout; the default). A SIGINT/SIGTERM sent to
provisioner itself is an abort and never retried. The delay doubles from `--retry-delay`
(default 10 s), capped at 5 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.backoff import Backoff
from provisioner.errors import UsageError
from provisioner.runner.container import Attempt

KEYWORDS = ("oom", "interrupted", "timeout", "any")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 0
    codes: frozenset[int] = frozenset()
    oom: bool = False
    interrupted: bool = False
    timeout: bool = False
    any_failure: bool = True
    delay_s: float = 10.0
    max_delay_s: float = 300.0

    def should_retry(self, attempt: Attempt, attempt_no: int) -> bool:
        """Whether attempt number `attempt_no` (1-based) is followed by another."""
        if attempt_no > self.retries or attempt.signal or attempt.exit_code == 0:
            return False
        if attempt.timed_out:
            return self.timeout
        if attempt.oom_killed and self.oom:
            return True
        if attempt.killed_externally and self.interrupted:
            return True
        if attempt.exit_code in self.codes:
            return True
        return self.any_failure

    def delay(self, attempt_no: int) -> float:
        """Seconds to wait after failed attempt `attempt_no` (1-based)."""
        return Backoff(self.delay_s, self.max_delay_s, jitter="none").delay(attempt_no - 1)


def parse_retry_on(text: str | None) -> dict:
    """RetryPolicy fields from a --retry-on value; UsageError (exit 2) for a bad token."""
    if text is None:
        return {}
    fields: dict = {"codes": set(), "any_failure": False}
    for token in (t.strip().lower() for t in text.split(",")):
        if not token:
            continue
        if token in ("oom", "interrupted", "timeout"):
            fields[token] = True
        elif token == "any":
            fields["any_failure"] = True
        elif token.isdigit() and 0 < int(token) < 256:
            fields["codes"].add(int(token))
        elif token.count("-") == 1 and all(p.isdigit() for p in token.split("-")):
            low, high = (int(p) for p in token.split("-"))
            if not 0 < low <= high < 256:
                raise UsageError(f"--retry-on: bad exit code range {token!r}")
            fields["codes"].update(range(low, high + 1))
        else:
            raise UsageError(f"--retry-on: unknown condition {token!r} (use exit codes such as "
                             f"1 or 3-5, or {', '.join(KEYWORDS)})")
    fields["codes"] = frozenset(fields["codes"])
    return fields
