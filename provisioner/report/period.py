"""`--since` values: an ISO time, a date, or a duration back from now (7d, 30d, 12h)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from provisioner.errors import UsageError
from provisioner.records import iso_utc, parse_iso_utc
from provisioner.units import parse_duration_s

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_since(text: str | None, now: datetime | None = None) -> str | None:
    """The ISO UTC start of the period ('...Z', comparable with record starts), or None for all.

    '2026-01-05' is that day's midnight UTC; '2026-01-05T10:00:00Z' is itself; '7d', '12h', '90m'
    count back from `now` (the clock when not given). Anything else is a UsageError (exit 2).
    """
    if text is None or text == "":
        return None
    raw = text.strip()
    if _DATE.match(raw):
        raw += "T00:00:00Z"
    if "T" in raw:
        try:
            return iso_utc(parse_iso_utc(raw))
        except ValueError as exc:
            raise UsageError(f"bad --since {text!r}: {exc}") from None
    try:
        seconds = parse_duration_s(raw)
    except UsageError:
        raise UsageError(f"bad --since {text!r}: use an ISO time (2026-01-05T00:00:00Z), a date "
                         "(2026-01-05) or a duration back from now (7d, 30d, 12h)") from None
    # Whole seconds: a fraction would sort '...:00.5Z' before a record's '...:00Z' (ISO text order).
    start = (now or datetime.now(timezone.utc)).replace(microsecond=0) - timedelta(seconds=seconds)
    return iso_utc(start)
