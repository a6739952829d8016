"""Validators of the config's `alerts` and `teams` sections (config.SCHEMA leaves: value -> message).

Kept apart from the parsed dataclasses (alerts.config) and free of imports, because provisioner.config
imports it on every command's start. The section's format is documented in alerts/config.py.
"""

from __future__ import annotations

from typing import Any

RUN_KINDS = ("failure", "timeout", "oom", "interruption")
KINDS = RUN_KINDS + ("budget",)
PERIODS = ("day", "week", "month")
SINK_TYPES = ("slack", "smtp", "sns")
_SINK_KEYS = {
    "slack": {"webhook_url", "webhook_url_env", "timeout_s"},
    "smtp": {"host", "port", "from", "to", "starttls", "ssl", "user", "password_env", "timeout_s"},
    "sns": {"topic_arn", "region"},
}
_RULE_KEYS = {"on", "jobs", "teams", "sinks", "rate_limit_s", "budget_usd", "period", "thresholds", "enforce"}


# ---- validators: value -> message or None (config.SCHEMA leaves) ------------------------------------

def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


def _sink_problem(i: int, s: Any) -> str | None:
    if not isinstance(s, dict):
        return f"item {i}: must be a mapping with name and type"
    name, kind = s.get("name"), s.get("type")
    where = f"item {i} ({name or kind or '?'})"
    if not isinstance(name, str) or not name:
        return f"{where}: name is required"
    if kind not in SINK_TYPES:
        return f"{where}: type must be one of {', '.join(SINK_TYPES)} (got {kind!r})"
    unknown = sorted(set(s) - {"name", "type"} - _SINK_KEYS[kind])
    if unknown:
        return f"{where}: unknown keys {', '.join(unknown)} (known for {kind}: {', '.join(sorted(_SINK_KEYS[kind]))})"
    if kind == "slack":
        if not (isinstance(s.get("webhook_url"), str) and s["webhook_url"].startswith(("https://", "http://"))) \
                and not isinstance(s.get("webhook_url_env"), str):
            return f"{where}: webhook_url (http[s]://...) or webhook_url_env is required"
    if kind == "smtp":
        if not isinstance(s.get("host"), str) or not isinstance(s.get("from"), str):
            return f"{where}: host and from are required"
        if not _str_list(s.get("to")):
            return f"{where}: to must be a list of addresses"
        if "port" in s and not (isinstance(s["port"], int) and 0 < s["port"] < 65536):
            return f"{where}: port must be 1-65535"
    if kind == "sns" and not (isinstance(s.get("topic_arn"), str) and s["topic_arn"].startswith("arn:")):
        return f"{where}: topic_arn (arn:aws:sns:...) is required"
    return None


def validate_sinks(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, list):
        return "must be a list of sinks ({name, type: slack|smtp|sns, ...})"
    names = [s.get("name") for s in v if isinstance(s, dict)]
    dup = sorted({n for n in names if names.count(n) > 1 and n})
    if dup:
        return f"sink names must be unique ({', '.join(dup)} repeated)"
    for i, s in enumerate(v, 1):
        problem = _sink_problem(i, s)
        if problem:
            return problem
    return None


def _rule_problem(i: int, r: Any) -> str | None:
    if not isinstance(r, dict):
        return f"item {i}: must be a mapping with 'on'"
    unknown = sorted(str(k) for k in set(r) - _RULE_KEYS)   # YAML 1.1 reads a bare `on` key as true
    if unknown:
        return f"item {i}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(_RULE_KEYS))})"
    on = r.get("on")
    if isinstance(on, str):
        on = [on]
    if not _str_list(on) or not set(on) <= set(KINDS):
        return f"item {i}: on must list some of {', '.join(KINDS)}"
    for key in ("jobs", "teams", "sinks"):
        if key in r and not _str_list(r[key]):
            return f"item {i}: {key} must be a list of strings"
    if "rate_limit_s" in r and not (_is_num(r["rate_limit_s"]) and r["rate_limit_s"] >= 0):
        return f"item {i}: rate_limit_s must be a number >= 0"
    if "budget" in on:
        if not (_is_num(r.get("budget_usd")) and r["budget_usd"] > 0):
            return f"item {i}: a budget rule needs budget_usd > 0"
        if r.get("period", "month") not in PERIODS:
            return f"item {i}: period must be one of {', '.join(PERIODS)}"
        t = r.get("thresholds", [1.0])
        if not (isinstance(t, list) and t and all(_is_num(x) and 0 < x <= 10 for x in t)):
            return f"item {i}: thresholds must be a list of fractions of the budget, e.g. [0.8, 1.0]"
        if "enforce" in r and not isinstance(r["enforce"], bool):
            return f"item {i}: enforce must be true or false"
        if r.get("enforce") and not r.get("teams"):
            return f"item {i}: enforce: true needs teams (the teams whose launches wait at 100% of the budget)"
    elif any(k in r for k in ("budget_usd", "period", "thresholds", "enforce")):
        return f"item {i}: budget_usd, period, thresholds and enforce belong to rules on budget"
    return None


def validate_rules(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, list):
        return "must be a list of rules ({on: [failure|timeout|oom|interruption|budget], ...})"
    for i, r in enumerate(v, 1):
        problem = _rule_problem(i, r)
        if problem:
            return problem
    return None


def validate_teams(v: Any) -> str | None:
    """{pattern: team} or {team: [patterns]} (provisioner.runner.summary.team_for reads both)."""
    if v is None:
        return None
    if not isinstance(v, dict):
        return "must map job-name patterns to a team, or a team to a list of patterns"
    for key, value in v.items():
        if not isinstance(key, str) or not key:
            return f"{key!r}: keys must be non-empty strings"
        if not (isinstance(value, str) and value) and not _str_list(value):
            return f"{key}: must be a team name, or a list of job-name patterns"
    return None
