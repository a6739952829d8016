"""The history store: usage records keyed by (job, build, run_id). SQLite by default."""

from provisioner.history.store import HistoryStore, ImportResult, open_store

__all__ = ["HistoryStore", "ImportResult", "open_store"]
