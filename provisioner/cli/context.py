"""What every command needs, built lazily from the global options: config and history store."""

from __future__ import annotations

import argparse
from functools import cached_property

from provisioner import paths
from provisioner.config import Config, load_config


class Context:
    def __init__(self, args: argparse.Namespace):
        self.args = args

    @cached_property
    def config(self) -> Config:
        return load_config(getattr(self.args, "config", None))

    @cached_property
    def history_location(self) -> str:
        return paths.resolve_history(getattr(self.args, "history", None), self.config.history)

    def open_history(self, create: bool = True):
        from provisioner.history import open_store
        return open_store(self.history_location, create=create)
