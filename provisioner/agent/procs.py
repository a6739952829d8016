"""Process facts the instance-side watcher and the build-start signal both read (kept apart so
agent/buildstart need not import agent/watcher, which starts it)."""

from __future__ import annotations

from pathlib import Path


def read_pid(path: Path | None) -> int | None:
    try:
        return int(path.read_text().strip()) if path else None
    except (OSError, ValueError):
        return None


def agent_has_children(pid: int) -> bool:
    try:
        import psutil
        return bool(psutil.Process(pid).children())
    except Exception:
        return False
