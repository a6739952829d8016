"""An admin's own init scripts: one per cloud (`ec2.init_script`, `docker.init_script`) and one per
label (`labels: {EXPRESSION: {init_script: ...}}`), run by the bootstrap as root after the base
bootstrap (secrets in place) and before the agent or job starts; a failure stops the instance
(exit 125). Pure: no I/O. EC2 takes at most 16 KiB of user-data, checked when the config is read
(`daemon --check`) and again at every rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provisioner import labels
from provisioner.errors import InputError

USER_DATA_LIMIT = 16384          # EC2: bytes of user-data before base64 (clouds/ec2_seam.py says so)
DELIMITER = "PROVISIONER_INIT_SCRIPT_EOF"
LABEL_KEYS = frozenset({"init_script", "pool", "reuse"})   # what a `labels:` entry may hold   # the heredoc that carries a script into the user-data


canonical = labels.canonical_expression     # the key by which a queue item's label finds its entry


def script_problem(text: Any) -> str | None:
    """Why `text` cannot be an init script, or None."""
    if not isinstance(text, str) or not text.strip():
        return "must be a non-empty shell script"
    if any(line.strip() == DELIMITER for line in text.splitlines()):
        return f"must not contain a line {DELIMITER} (it ends the script in the user-data)"
    return None


def validate_labels(value: Any) -> str | None:
    """The config's `labels:` section: {label expression: {init_script: SCRIPT}}."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return "must map label expressions to settings, e.g. {'ec2 && gpu=1': {init_script: ...}}"
    seen: dict[str, str] = {}
    for expression, entry in value.items():
        where = f"{expression!r}"
        if not isinstance(expression, str):
            return f"{where}: a label expression must be a string"
        try:
            key = canonical(expression)
            labels.parse(labels.unquote(expression))
        except InputError as exc:
            return f"{where}: not a label expression Jenkins can parse ({exc})"
        if key in seen:
            return f"{where}: the same label as {seen[key]!r}"
        seen[key] = expression
        if not isinstance(entry, dict):
            return f"{where}: must be a mapping with init_script, pool or reuse"
        unknown = sorted(set(entry) - LABEL_KEYS)
        if unknown:
            return f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(LABEL_KEYS))})"
        problem = _entry_problem(entry, where)
        if problem:
            return problem
    return None


def _entry_problem(entry: dict, where: str) -> str | None:
    """One `labels:` entry's init script, pool and reuse settings (provisioner/pool.py)."""
    from provisioner import pool
    if "init_script" in entry:
        problem = script_problem(entry.get("init_script"))
        if problem:
            return f"{where}.init_script: {problem}"
    try:
        if entry.get("pool") is not None:
            pool.parse_pool(where, entry["pool"], f"{where}.pool")
        if entry.get("reuse") is not None:
            pool.parse_reuse(entry["reuse"], f"{where}.reuse")
    except InputError as exc:
        return exc.message
    return None


@dataclass(frozen=True)
class InitScripts:
    """The init scripts of one config, for one cloud."""

    cloud: str | None = None
    by_label: dict[str, str] = field(default_factory=dict)     # canonical expression -> script

    @classmethod
    def from_config(cls, config: Any, cloud_name: str) -> "InitScripts":
        """The cloud's and the labels' scripts of a provisioner.config.Config."""
        by_label = {canonical(e): entry.init_script for e, entry in config.labels.items() if entry.init_script}
        return cls(config.init_script(cloud_name), by_label)

    def for_label(self, expression: str | None) -> str | None:
        """The cloud's script, then the label's: what an instance for this label runs."""
        parts = [self.cloud]
        if expression:
            try:
                parts.append(self.by_label.get(canonical(expression)))
            except InputError:
                pass
        scripts = [p.rstrip("\n") for p in parts if p]
        return "\n".join(scripts) + "\n" if scripts else None


def check_size(user_data: str, cloud_name: str, source: str = "the init script") -> None:
    """The cloud's limit on user-data (Cloud.user_data_limit: EC2's USER_DATA_LIMIT; none on docker);
    `source` names what made it large."""
    from provisioner.clouds import registry
    limit = registry.adapter(cloud_name).user_data_limit
    size = len(user_data.encode())
    if limit is not None and size > limit:
        raise InputError(f"the user-data would be {size} bytes, over {cloud_name.upper()}'s {limit}: "
                         f"shorten {source} (or have it fetch a longer script)")
