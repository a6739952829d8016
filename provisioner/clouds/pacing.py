"""How the EC2 adapter paces its calls: full-jitter backoff between retries, and batches of ids."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

from provisioner.backoff import Backoff  # noqa: F401 (the EC2 adapter's pacing: its defaults)

T = TypeVar("T")


def grouper(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive batches of at most `size` items (the one batching helper)."""
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
