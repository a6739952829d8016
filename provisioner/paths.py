"""Where files live (docs/contracts.md 'Where things live'): config, history, catalog cache."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / "provisioner"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "provisioner"


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / "provisioner"


def default_history() -> str:
    return str(state_dir() / "history.sqlite3")


def default_config() -> Path:
    return config_dir() / "config.yaml"


def catalog_cache() -> Path:
    return cache_dir() / "catalog"


def resolve_config_path(flag: str | None) -> Path | None:
    """--config > PROVISIONER_CONFIG > $XDG_CONFIG_HOME/provisioner/config.yaml (None if absent)."""
    if flag:
        return Path(flag)
    env = os.environ.get("PROVISIONER_CONFIG")
    if env:
        return Path(env)
    path = default_config()
    return path if path.exists() else None


def resolve_history(flag: str | None, configured: str | None) -> str:
    """--history > PROVISIONER_HISTORY > config `history:` > the XDG state default."""
    return flag or os.environ.get("PROVISIONER_HISTORY") or configured or default_history()
