"""The spool: usage records that could not be stored when their run ended (another writer held the
lock past the busy timeout, the disk was full) wait here as one JSON file each, and the next command
that opens the store merges them in.

The spool sits beside an SQLite store (`history.sqlite3.spool/`); when that cannot be written (or
for a PostgreSQL store) it sits under the state directory, in a folder named after the store.
A record is deleted from the spool only after the store committed it; merging twice is harmless
(the store keeps the first record of a key).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from provisioner import paths, records
from provisioner.errors import StoreError

log = logging.getLogger(__name__)


def spool_dirs(location: str) -> list[Path]:
    """Where records for the store at `location` are spooled, in order of preference."""
    if location.startswith(("postgresql://", "postgres://")):
        from provisioner.history.postgres import redact  # the store's own name for itself
        location = redact(location)
    else:  # one name however the path was written (relative, with ~)
        location = str(Path(location).expanduser().resolve())
    digest = hashlib.sha256(location.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    fallback = paths.state_dir() / "spool" / digest
    if location.startswith(("postgresql://", "postgres://")):
        return [fallback]
    beside = Path(location)
    return [beside.with_name(beside.name + ".spool"), fallback]


def spool_record(location: str, record: dict) -> Path:
    """Write `record` to the first spool directory that takes it; OSError when none does."""
    body = records.dumps(record) + "\n"
    name = f"{record.get('run_id') or 'record'}-{uuid.uuid4().hex[:8]}.json"
    error: OSError | None = None
    for folder in spool_dirs(location):
        tmp = folder / f".{name}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, folder / name)
            return folder / name
        except OSError as exc:
            error = exc
            try:
                tmp.unlink()
            except OSError:
                pass
    raise error or OSError("no spool directory")


def merge_spool(store: Any) -> int:
    """Add every spooled record of this store to it and delete those files; the number added.

    Best effort: a store that cannot take them now (read-only, locked) keeps them spooled, and
    a file that is not a valid record is renamed `*.bad` so it is not read again."""
    if getattr(store, "read_only", False):
        return 0
    files: list[Path] = []
    for folder in spool_dirs(store.location):
        try:
            files += sorted(p for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
        except OSError:
            continue
    if not files:
        return 0
    batch, taken = [], []
    for path in files:
        try:
            batch.append(records.normalise(records.loads(path.read_bytes())))
            taken.append(path)
        except (OSError, ValueError) as exc:  # RecordError is a ValueError
            log.warning("spooled record %s is not valid (%s): set aside as .bad", path, exc)
            try:
                path.rename(path.with_suffix(".bad"))
            except OSError:
                pass
    try:
        added, _present = store.add_many(batch)
    except StoreError as exc:
        log.info("spooled records stay spooled: %s", exc)
        return 0
    for path in taken:
        try:
            path.unlink()
        except OSError:
            pass
    return added


def describe(path: Path) -> str:
    return f"spooled to {path}; the next provisioner command that opens the store merges it"


def record_text(record: dict) -> str:
    """The record as one JSON line (for a message when even the spool cannot be written)."""
    return json.dumps(record, allow_nan=False, default=str) if record else "{}"
