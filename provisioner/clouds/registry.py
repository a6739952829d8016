"""The one place a cloud is chosen by its name: `cloud:` in the config names an entry here, and
`make_cloud` builds that adapter. Each entry names its adapter class as "module:Class", imported
only when that cloud is used (the docker SDK and boto3 cost time to import), so nothing else in the
product imports an adapter module (tests/test_import_graph.py checks it).

An adapter class has `from_config(config, blocked, purpose=...)` (a classmethod building the cloud;
`purpose` is "daemon" for the autoscaler or "run" for `provisioner run --remote`) and the methods
of clouds.base.Cloud; what it does not override comes from clouds.base.CloudDefaults. An entry may
bring its own config section: its key validators (yamlfile.check_schema's shape) and defaults.

    register("process", "tests.daemon.process_cloud:ProcessCloud", schema={...}, defaults={...})

adds a cloud (the tests register their process cloud this way); see docs/adding-a-cloud.md. Its
section is then `config.cloud_section("process")`: a read-only mapping of the validated, merged
section, or what `register(..., settings=)` builds from it, once, when the config is loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from provisioner.clouds.base import BlockedOffers, Cloud

PURPOSES = ("daemon", "run")


@dataclass(frozen=True)
class Entry:
    name: str
    adapter: str | type                         # "module:Class", or the class itself
    schema: dict[str, Any] | None = None        # its own config section's validators (None: config.py has them)
    defaults: dict[str, Any] = field(default_factory=dict)
    settings: Callable[[Mapping[str, Any]], Any] | None = None   # its section's typed value

    def typed(self, section: Mapping[str, Any]) -> Any:
        """Its own config section as the config carries it (Config.cloud_section)."""
        return self.settings(section) if self.settings is not None else MappingProxyType(dict(section))

    def load(self) -> Any:
        if not isinstance(self.adapter, str):
            return self.adapter
        module, _, attr = self.adapter.partition(":")
        return getattr(importlib.import_module(module), attr)


_ENTRIES: dict[str, Entry] = {
    "docker": Entry("docker", "provisioner.clouds.docker:DockerCloud"),
    "ec2": Entry("ec2", "provisioner.clouds.ec2:Ec2Cloud"),
}


def register(name: str, adapter: str | type, *, schema: dict[str, Any] | None = None,
             defaults: dict[str, Any] | None = None,
             settings: Callable[[Mapping[str, Any]], Any] | None = None) -> None:
    """Make `cloud: NAME` build this adapter (registering a name again replaces its entry);
    `settings` types its own section (None: a read-only mapping)."""
    if not name or not name[0].isalpha() or not name.replace("_", "").isalnum():
        raise ValueError(f"a cloud's name is a word of letters, digits and _: {name!r}")
    _ENTRIES[name] = Entry(name, adapter, schema, dict(defaults or {}), settings)


def names() -> tuple[str, ...]:
    """The clouds `cloud:` may name, in registration order."""
    return tuple(_ENTRIES)


def entry(name: str) -> Entry:
    try:
        return _ENTRIES[name]
    except KeyError:
        raise ValueError(f"unknown cloud {name!r} (one of: {', '.join(_ENTRIES)})") from None


def adapter(name: str) -> Any:
    """The adapter class of a registered cloud (its class-level rules: secret_env, user_data_limit...)."""
    return entry(name).load()


def sections() -> dict[str, Entry]:
    """The registered clouds that bring their own config section."""
    return {n: e for n, e in _ENTRIES.items() if e.schema is not None}


def make_cloud(config: Any, blocked: BlockedOffers | None = None, *, name: str | None = None,
               purpose: str = "daemon") -> Cloud:
    """The cloud the config names (or `name`), built by its adapter."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    return adapter(name or config.cloud).from_config(config, blocked or BlockedOffers(), purpose=purpose)
