"""The typed settings tree: one frozen value per config section, built once by provisioner/config.py
from the validated file merged over DEFAULTS, then passed down (`config.daemon.interval_s`).

Field names are the YAML keys (docs/config-reference.md). Durations a consumer wants in seconds
are also given parsed (`timeout_s` next to `timeout`, which messages and docs print as written).
Nothing here reads YAML or a dict: config.py builds these values, and tests/test_config_tree.py
fails when DEFAULTS gains a key without its field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class DefaultsSection:
    """`defaults:` what a job gets when its label and the flags say nothing."""

    image: str | None
    timeout: str | int | float | None          # as written (`6h`); timeout_s parsed
    policy: str
    runtime_target: float
    scaled_margin: float
    max_price: float | None
    default_runtime: str | int | float | None  # as written; default_runtime_s parsed
    boot_s: float
    disk_gib: float
    mem_headroom: float
    autotune_min_runs: int
    score_source: str
    catalog_max_age_days: float | str          # days, or "never"
    arch: str | None
    timeout_s: float | None = None             # None: no timeout configured (the 6 h rule applies)
    default_runtime_s: float | None = None


@dataclass(frozen=True)
class DockerSection:
    """`docker:` the local-engine cloud (clouds/docker.py turns it into DockerSettings)."""

    instance_image: str | None
    host_cpus: float | None
    host_mem_gib: float | None
    network: str | None
    imds_url: str | None
    gc_after_s: float | None
    retention_s: float | None
    environment: Mapping[str, Any] | None
    init_script: str | None


@dataclass(frozen=True)
class Ec2Section:
    """`ec2:` as written (ids or selectors); clouds/ec2_params.Ec2Settings normalises it per region."""

    subnets: Any                                # [ids or selectors] or {region: [...]}
    security_groups: Any
    instance_profile: str | None
    images: Mapping[str, Mapping[str, Any]] | None
    init_script: str | None
    extra_tags: Mapping[str, Any] | None
    key_name: str | None
    spot_allocation_strategy: str
    ondemand_allocation_strategy: str
    encrypt_root_volume: bool
    sync_s3: str | None


@dataclass(frozen=True)
class JenkinsSection:
    url: str | None
    user: str | None
    token_env: str | None
    token_file: str | None
    managed_atom: str
    sentinel_node: str
    demand_path: str
    agent_url: str | None
    timeout_s: float


@dataclass(frozen=True)
class ApiSection:
    """`daemon.api:` the agent API's caps (docs/security.md); None keeps the built-in value."""

    max_body_bytes: int | None
    records_per_min: int | None
    samples_per_min: int | None
    token_grace_s: float | None


@dataclass(frozen=True)
class DaemonSection:
    owner_id: str | None
    interval_s: float
    listen: str
    max_agents: int | None
    max_per_label: int | None
    max_per_job: int | None
    budget_usd_per_hour: float | None
    boot_timeout_s: float
    orphan_grace_s: float
    report_url: str | None
    remote_fs: str | None
    ondemand_after_interruptions: int | None
    pause_after_boot_failures: int | None
    blocked_offer_ttl_s: float
    lease_ttl_s: float
    launch_workers: int | None
    drain_poll_s: float
    api: ApiSection
    metrics_listen: str | None
    metrics_token_env: str | None
    max_vcpus: float | None
    max_vcpus_per_label: float | None
    max_vcpus_per_class: Any                    # {on-demand|spot: {class: n}} (provisioner/quotas.py)
    service_quotas: bool
    quota_share: float | None
    budget_refresh_s: float | None


@dataclass(frozen=True)
class LabelSection:
    """One `labels:` entry (its key is a label expression): what instances for that label get."""

    init_script: str | None = None
    pool: Any = None                            # pool.PoolSpec, or None: no warm pool
    reuse: Any = None                           # pool.ReuseSpec, or None: one build per agent


@dataclass(frozen=True)
class AlertsSection:
    """`alerts:` as written (validated); `settings` is the parsed value the senders use."""

    sinks: tuple[Mapping[str, Any], ...]
    rules: tuple[Mapping[str, Any], ...]
    rate_limit_s: float | None
    settings: Any = field(default=None, compare=False)   # alerts.config.AlertSettings


# The tree's sections and their types, in DEFAULTS' order (teams and labels are mappings of the
# user's own keys: Mapping[str, ...] and Mapping[str, LabelSection]).
SECTIONS: dict[str, type] = {
    "defaults": DefaultsSection, "docker": DockerSection, "ec2": Ec2Section, "jenkins": JenkinsSection,
    "daemon": DaemonSection, "alerts": AlertsSection,
}
NESTED: dict[tuple[str, str], type] = {("daemon", "api"): ApiSection}
