"""The configuration file: one YAML document, validated against SCHEMA with errors naming key and line.

Reading and checking go through provisioner.yamlfile (YAML 1.2, duplicate and unknown keys, file:line).

Every default lives in DEFAULTS below, so the whole behaviour without a file is visible in one place.
Sections and keys follow docs/contracts.md ('Where things live'); unknown keys are errors.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from provisioner import paths
from provisioner.alerts.config import AlertSettings, Rule, SinkConfig
from provisioner.alerts.validate import RUN_KINDS, validate_rules, validate_sinks, validate_teams
from provisioner.catalog.devices import IMAGE_SLOTS
from provisioner.clouds import registry
from provisioner.clouds.ec2_selectors import problem as selector_problem
from provisioner.config_tree import (NESTED, SECTIONS, AlertsSection, DaemonSection, DefaultsSection, DockerSection,
                                     Ec2Section, JenkinsSection, LabelSection)
from provisioner.errors import ConfigError, UsageError
from provisioner.quotas import config_problem as quota_caps_problem
from provisioner.init_script_size import size_problems
from provisioner.init_scripts import script_problem, validate_labels
from provisioner.pool import parse_pool, parse_reuse
from provisioner.units import parse_duration_s
from provisioner.yamlfile import Document, check_schema, parse_yaml, read_text

POLICIES = ("cheapest", "fastest", "deadline")

DEFAULTS: dict[str, Any] = {
    "cloud": "docker",
    "regions": ["us-east-1"],
    "history": None,                 # None: $XDG_STATE_HOME/provisioner/history.sqlite3
    "defaults": {
        "image": "python:3.11-slim",
        "timeout": "6h",
        "policy": "deadline",
        "runtime_target": 0.8,       # share of the timeout a plan must fit in (5760 s for 2 h)
        "scaled_margin": 0.25,       # a runtime scaled from other types x (1 + this) must fit the target
        "max_price": None,           # USD per hour, per job
        "default_runtime": "1h",     # assumed runtime on the cheapest fitting offer, no history
        "boot_s": 90,                # instance boot + agent connect, billed
        "disk_gib": 30,              # root volume when the label names no disk
        "mem_headroom": 0.2,         # autotuned memory = peak x (1 + headroom) + 0.5 GiB
        "autotune_min_runs": 3,
        "score_source": "composite",  # see provisioner/catalog/load.py
        "catalog_max_age_days": 30,
        # x86_64 | arm64 | any: what the daemon and `plan` plan unless a label names `arch`
        # (None: x86_64; on the docker cloud, the host's architecture). See docs/planning.md.
        "arch": None,
    },
    "docker": {"instance_image": "provisioner-agent:latest", "host_cpus": None, "host_mem_gib": None,
               "network": "host", "imds_url": "", "gc_after_s": 60, "retention_s": 86400, "environment": {},
               "init_script": None},             # run by every instance after the base bootstrap
    "ec2": {"subnets": [], "security_groups": [], "instance_profile": None, "images": {}, "init_script": None,
            "extra_tags": {}, "key_name": None,
            "spot_allocation_strategy": "price-capacity-optimized",
            "ondemand_allocation_strategy": "lowest-price", "encrypt_root_volume": True,
            "sync_s3": None},              # run --remote --sync/--output: s3://BUCKET/PREFIX/
    "jenkins": {"url": None, "user": None, "token_env": "JENKINS_TOKEN", "token_file": None,
                "managed_atom": "ec2", "sentinel_node": "autoscaler-sentinel",
                "demand_path": "auto",       # auto: /scriptText when the account may, else REST + why
                "agent_url": None,           # the URL agents connect to (default: url)
                "timeout_s": 15},
    "daemon": {"owner_id": None, "interval_s": 5, "listen": "127.0.0.1:9108", "max_agents": 20,
               "max_per_label": None, "max_per_job": None, "budget_usd_per_hour": None,
               "boot_timeout_s": 600, "orphan_grace_s": 300,
               "report_url": None,          # what agents post usage to (default: http://<listen>)
               "remote_fs": "/home/jenkins/agent",
               "ondemand_after_interruptions": 2,   # a job interrupted this often plans on-demand (0: never)
               "pause_after_boot_failures": 3,      # agents of one image/config dying before connecting
               #                                      this often in a row: its demand is held (0: never)
               "blocked_offer_ttl_s": 600,  # an offer that failed to boot is skipped this long
               "lease_ttl_s": 30,
               "launch_workers": 8,         # launches run in parallel within a tick
               "drain_poll_s": 1,           # between ticks: drain agents that started their one build (0: off)
               # the agent API's caps (docs/security.md): per agent, a minute; 0: no rate limit
               "api": {"max_body_bytes": 32768, "records_per_min": 30, "samples_per_min": 120,
                       "token_grace_s": 900},
               "metrics_listen": None,      # HOST:PORT: /metrics (and /healthz) there, not on `listen`
               "metrics_token_env": None,   # env var holding a bearer token /metrics then requires
               # vCPU caps (docs/operations.md): all agents, each label, {on-demand|spot: {class: n}}
               "max_vcpus": None, "max_vcpus_per_label": None, "max_vcpus_per_class": None,
               "service_quotas": True,      # on EC2, read the account's vCPU quotas at start (false: never)
               "quota_share": 1.0,          # the share of each account quota this daemon may fill
               "budget_refresh_s": 60},     # enforced team budgets: recorded spend re-read this often
    "teams": {},
    # per label expression (canonical form decides): {init_script: ...}; see provisioner/init_scripts.py
    "labels": {},
    "alerts": {"sinks": [], "rules": [], "rate_limit_s": 900},
}


# ---- schema: each leaf is a checker(value) -> error message or None -------------------------

def _type(*types: type, nullable: bool = True) -> Callable[[Any], str | None]:
    names = " or ".join(t.__name__ for t in types)

    def check(v: Any) -> str | None:
        if v is None and nullable:
            return None
        if isinstance(v, bool) and bool not in types:
            return f"must be {names}, not a boolean"
        return None if isinstance(v, types) else f"must be {names}, not {type(v).__name__}"
    return check


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)} (got {v!r})"


def _cloud_name(v: Any) -> str | None:
    """A registered cloud (clouds/registry.py: docker, ec2, and any a deployment registers)."""
    names = registry.names()
    return None if v in names else f"must be one of {', '.join(names)} (got {v!r})"


def _duration(v: Any) -> str | None:
    try:
        parse_duration_s(v)
    except UsageError as exc:
        return str(exc)
    return None


def _fraction(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 else \
        f"must be a number in (0, 1], got {v!r}"


def _margin(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 else \
        f"must be a number in [0, 1], got {v!r}"


def _init_script(v: Any) -> str | None:
    return None if v is None else script_problem(v)


def _days_or_never(v: Any) -> str | None:
    return None if v == "never" else _positive(v)


def _positive(v: Any) -> str | None:
    if v is None:
        return None
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else \
        f"must be a positive number, got {v!r}"


def _str_list(v: Any) -> str | None:
    return None if isinstance(v, list) and all(isinstance(x, str) for x in v) else \
        "must be a list of strings"


def _id_list(v: Any) -> str | None:
    """A list of ids or selectors ({tags: {...}} / {name: PATTERN}: clouds/ec2_selectors.py)."""
    if not isinstance(v, list):
        return "must be a list of ids or selectors"
    return next((f"item {i + 1}: {msg}" for i, x in enumerate(v) if (msg := selector_problem(x))), None)


def _ids_by_region(v: Any) -> str | None:
    """A list of ids (or selectors) for every region, or {region: [ids]}."""
    if isinstance(v, dict):
        bad = [f"{k}: {msg}" for k, ids in v.items() if (msg := _id_list(ids))]
        return f"must map each region to a list of ids or selectors ({'; '.join(bad)})" if bad else None
    msg = _id_list(v)
    return None if msg is None else f"must be a list of ids or selectors, or a mapping of region to one ({msg})"


def _images(v: Any) -> str | None:
    slots = IMAGE_SLOTS
    if not isinstance(v, dict):
        return f"must map region to {{{'|'.join(slots)}: ami-...}}"
    for region, images in v.items():
        if not isinstance(images, dict) or any(k not in slots for k in images):
            return f"{region}: must map {', '.join(slots)} to an AMI id or selector"
        bad = [f"{slot}: {msg}" for slot, a in images.items() if (msg := selector_problem(a, image=True))]
        if bad:
            return f"{region}.{bad[0]}"
    return None


def _http_url(v: Any) -> str | None:
    if v is None:
        return None
    return None if isinstance(v, str) and re.match(r"^https?://[^/\s]+", v) else \
        f"must be an http:// or https:// URL, got {v!r}"


def _s3_url(v: Any) -> str | None:
    if v is None:
        return None
    return None if isinstance(v, str) and re.match(r"^s3://[^/\s]+", v) else \
        f"must be s3://BUCKET/PREFIX/, got {v!r}"


def _listen(v: Any) -> str | None:
    m = re.fullmatch(r"(.+):(\d{1,5})", v) if isinstance(v, str) else None
    return None if m and 0 <= int(m.group(2)) <= 65535 else f"must be HOST:PORT, got {v!r}"


def _count(v: Any) -> str | None:
    if v is None:
        return None
    return None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else \
        f"must be a whole number >= 0, got {v!r}"


def _int_between(v: Any, low: int, high: int) -> str | None:
    if v is None:
        return None
    return None if isinstance(v, int) and not isinstance(v, bool) and low <= v <= high else \
        f"must be a whole number from {low} to {high}, got {v!r}"


def _non_negative(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else \
        f"must be a number >= 0, got {v!r}"


def _label_atom(v: Any) -> str | None:
    return None if isinstance(v, str) and re.fullmatch(r"[^&|!<>()\s\"']+", v) else \
        f"must be one Jenkins label atom (no spaces or operators), got {v!r}"


def _node_name(v: Any) -> str | None:
    return None if isinstance(v, str) and v and not re.search(r"[?*/\\%!@#$^&|<>\[\]:;\s]", v) \
        and not v.endswith(".") else f"must be a valid Jenkins node name, got {v!r}"


_STR, _INT, _DICT, _LIST = _type(str), _type(int), _type(dict), _type(list)

SCHEMA: dict[str, Any] = {
    "cloud": _cloud_name,
    "regions": _str_list,
    "history": _STR,
    "defaults": {"image": _STR, "timeout": _duration, "policy": _one_of(*POLICIES),
                 "runtime_target": _fraction, "scaled_margin": _margin, "max_price": _positive,
                 "default_runtime": _duration,
                 "boot_s": _positive, "disk_gib": _positive, "mem_headroom": _type(int, float),
                 "autotune_min_runs": _INT,
                 "score_source": _one_of("composite", "sparecores-stressng-div16", "sparecores-geekbench6",
                                         "ec2instances-coremark"), "catalog_max_age_days": _days_or_never,
                 "arch": _one_of("x86_64", "arm64", "any")},
    "docker": {"init_script": _init_script, "instance_image": _STR, "host_cpus": _positive, "host_mem_gib": _positive,
               "network": _STR, "imds_url": _STR, "gc_after_s": _positive, "retention_s": _positive, "environment": _DICT},
    "ec2": {"init_script": _init_script, "subnets": _ids_by_region, "security_groups": _ids_by_region, "instance_profile": _STR,
            "images": _images, "extra_tags": _DICT, "key_name": _STR,
            "spot_allocation_strategy": _one_of("price-capacity-optimized", "capacity-optimized",
                                                "lowest-price", "diversified"),
            "ondemand_allocation_strategy": _one_of("lowest-price", "prioritized"),
            "encrypt_root_volume": _type(bool), "sync_s3": _s3_url},
    "jenkins": {"url": _http_url, "user": _STR, "token_env": _STR, "token_file": _STR,
                "managed_atom": _label_atom, "sentinel_node": _node_name,
                "demand_path": _one_of("auto", "script", "rest"), "agent_url": _http_url,
                "timeout_s": _positive},
    "daemon": {"owner_id": _STR, "interval_s": _positive, "listen": _listen, "max_agents": _count,
               "max_per_label": _count, "max_per_job": _count, "budget_usd_per_hour": _positive,
               "boot_timeout_s": _positive, "orphan_grace_s": _positive, "report_url": _http_url,
               "remote_fs": _STR, "ondemand_after_interruptions": _count, "blocked_offer_ttl_s": _positive,
               "pause_after_boot_failures": _count,
               "lease_ttl_s": _positive, "launch_workers": _count, "drain_poll_s": _non_negative,
               "api": {"max_body_bytes": lambda v: _int_between(v, 1024, 16 << 20),
                       "records_per_min": _count, "samples_per_min": _count, "token_grace_s": _positive},
               "metrics_listen": lambda v: None if v is None else _listen(v), "metrics_token_env": _STR,
               "max_vcpus": _positive, "max_vcpus_per_label": _positive, "max_vcpus_per_class": quota_caps_problem,
               "service_quotas": _type(bool, nullable=False), "quota_share": _fraction,
               "budget_refresh_s": _positive},
    "teams": validate_teams,
    "labels": validate_labels,
    "alerts": {"sinks": validate_sinks, "rules": validate_rules, "rate_limit_s": _positive},
}


@dataclass(frozen=True)
class Config:
    """The merged configuration (defaults, then the file), where it came from, and its typed tree.

    The typed sections (config_tree.py) are built once, here, from `data`; everything else reads
    them as attributes (`config.daemon.interval_s`), never `data` by key."""

    data: dict
    path: str | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)  # key path -> line
    cloud: str = field(init=False, compare=False, repr=False)
    history: str | None = field(init=False, compare=False, repr=False)
    defaults: DefaultsSection = field(init=False, compare=False, repr=False)
    docker: DockerSection = field(init=False, compare=False, repr=False)
    ec2: Ec2Section = field(init=False, compare=False, repr=False)
    jenkins: JenkinsSection = field(init=False, compare=False, repr=False)
    daemon: DaemonSection = field(init=False, compare=False, repr=False)
    alerts: AlertsSection = field(init=False, compare=False, repr=False)
    teams: Mapping[str, Any] = field(init=False, compare=False, repr=False)
    labels: Mapping[str, LabelSection] = field(init=False, compare=False, repr=False)
    clouds: Mapping[str, Any] = field(init=False, compare=False, repr=False)   # registered clouds' own

    def __post_init__(self) -> None:
        for name, value in _tree(self.data, self.path, self.line).items():
            object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple:
        # copies and pickles carry what the tree is built from (its read-only mappings do not pickle)
        return (Config, (self.data, self.path, self.lines))

    def line(self, path: str) -> int | None:
        """The line where the file gives `path` (or its nearest parent); None when it does not."""
        return Document(self.data, self.lines).line(path)

    @property
    def regions(self) -> list[str]:
        return list(self.data["regions"])

    def cloud_section(self, name: str) -> Any:
        """A registered cloud's own section, as its registry entry types it (registry.register)."""
        try:
            return self.clouds[name]
        except KeyError:
            raise ValueError(f"no config section for the cloud {name!r} (registered with one: "
                             f"{', '.join(self.clouds) or 'none'})") from None

    def init_script(self, cloud_name: str) -> str | None:
        """The cloud's own `init_script` (docker.init_script, ec2.init_script, or a registered
        cloud's section's), run by every instance it launches; None when it has none."""
        # a cloud's section is the one named like it: a built-in typed one, or its registry entry's
        section = getattr(self, cloud_name) if cloud_name in SECTIONS else self.clouds.get(cloud_name)
        if isinstance(section, Mapping):
            return section.get("init_script") or None
        return getattr(section, "init_script", None) or None


# ---- the typed tree: the one place the merged dict is read by key ---------------------------------

def _tree(data: dict, where: str | None, line: Callable[[str], int | None]) -> dict[str, Any]:
    """The typed sections of a validated, merged config (config_tree.py)."""
    tree: dict[str, Any] = {name: _section(cls, data[name], DEFAULTS[name], name) for name, cls in SECTIONS.items()}
    d = tree["defaults"]
    tree["defaults"] = replace(d, timeout_s=_seconds(d.timeout), default_runtime_s=_seconds(d.default_runtime))
    tree["alerts"] = replace(tree["alerts"], settings=_alert_settings(data["alerts"], where, line))
    tree["cloud"], tree["history"] = data["cloud"], data["history"]
    tree["teams"] = MappingProxyType(copy.deepcopy(dict(data["teams"] or {})))
    tree["labels"] = MappingProxyType({expr: _label(expr, entry) for expr, entry in (data["labels"] or {}).items()
                                       if isinstance(entry, dict)})
    tree["clouds"] = MappingProxyType({name: entry.typed(data.get(name) or {})
                                       for name, entry in registry.sections().items() if name not in SECTIONS})
    return tree


def typed_section(name: str, values: Mapping[str, Any]) -> Any:
    """A section's typed value from some of its keys merged over DEFAULTS (not validated: tests
    and benches build settings from a few keys this way)."""
    merged = {**copy.deepcopy(DEFAULTS[name]), **values}
    return _section(SECTIONS[name], merged, DEFAULTS[name], name)


def _label(expr: str, entry: dict) -> LabelSection:
    """One `labels:` entry, its pool and reuse parsed (provisioner/pool.py's grammar)."""
    pool, reuse = entry.get("pool"), entry.get("reuse")
    return LabelSection(init_script=entry.get("init_script"),
                        pool=None if pool is None else parse_pool(expr, pool, f"labels.{expr!r}.pool"),
                        reuse=None if reuse is None else parse_reuse(reuse, f"labels.{expr!r}.reuse"))


def _section(cls: type, values: dict | None, keys: dict, name: str) -> Any:
    """One section's dataclass from its merged values: each of its YAML keys (`keys`) is a field."""
    values = values or {}
    missing = sorted(set(keys) - {f.name for f in fields(cls)})
    if missing:                          # a key added to DEFAULTS needs its field in config_tree.py
        raise TypeError(f"config_tree.{cls.__name__} has no field for {name}.{missing[0]}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in keys:           # derived fields (timeout_s...) are set by _tree
            continue
        value = copy.deepcopy(values.get(f.name))
        nested = NESTED.get((name, f.name))
        if nested is not None:
            value = _section(nested, value, keys[f.name], f"{name}.{f.name}")
        elif isinstance(value, list):
            value = tuple(value) if cls is AlertsSection else value
        kwargs[f.name] = value
    return cls(**kwargs)


def _seconds(value: Any) -> float | None:
    return None if value is None or value == "" else parse_duration_s(value)


def _alert_settings(section: dict | None, where: str | None, line: Callable[[str], int | None]) -> AlertSettings:
    """The parsed alerts; a rule naming a sink that is not configured is the file's error (exit 2)."""
    try:
        return parse_alerts(section)
    except UsageError as exc:
        raise ConfigError(where or "<config>", [("alerts.rules", line("alerts.rules"),
                                                 str(exc).removeprefix("alerts.rules "))]) from None


def parse_alerts(section: Mapping[str, Any] | None) -> AlertSettings:
    """AlertSettings from a validated `alerts` section (the config's defaults when None): what
    `config.alerts.settings` holds (tests build one from a mapping)."""
    section = section or {}
    sinks = tuple(SinkConfig(s["name"], s["type"], {k: v for k, v in s.items() if k not in ("name", "type")})
                  for s in section.get("sinks") or [])
    rules = []
    for r in section.get("rules") or []:
        on = (r["on"],) if isinstance(r["on"], str) else tuple(r["on"])
        rules.append(Rule(on=on, jobs=tuple(r.get("jobs") or ()), teams=tuple(r.get("teams") or ()),
                          sinks=tuple(r.get("sinks") or ()), rate_limit_s=r.get("rate_limit_s"),
                          budget_usd=r.get("budget_usd"), period=r.get("period", "month"),
                          thresholds=tuple(sorted(r.get("thresholds") or [1.0])),
                          enforce=bool(r.get("enforce", False))))
    known = {s.name for s in sinks}
    for i, rule in enumerate(rules, 1):
        unknown = [n for n in rule.sinks if n not in known]
        if unknown:
            raise UsageError(f"alerts.rules item {i}: unknown sink {', '.join(unknown)} "
                             f"(configured: {', '.join(sorted(known)) or 'none'})")
    if sinks and not rules:
        rules.append(Rule(on=RUN_KINDS))
    return AlertSettings(sinks=sinks, rules=tuple(rules), rate_limit_s=float(section.get("rate_limit_s") or 900))


def parse_config(text: str, where: str = "<config>") -> Config:
    """Validate YAML text and merge it over DEFAULTS; ConfigError lists every problem."""
    doc = parse_yaml(text, where)
    schema, defaults = _with_registered_clouds()
    problems = check_schema(doc, schema)
    if problems:
        raise ConfigError(where, problems)
    merged = copy.deepcopy(defaults)
    for name, value in (doc.data or {}).items():
        if isinstance(schema[name], dict) and isinstance(value, dict):
            merged[name].update(value)
        elif value is not None:
            merged[name] = value
    config = Config(merged, where, doc.lines)
    too_large = size_problems(config)
    if too_large:
        raise ConfigError(where, [(path, None, msg) for path, msg in too_large])
    return config


def _with_registered_clouds() -> tuple[dict, dict]:
    """SCHEMA and DEFAULTS plus the sections of clouds registered with their own (registry.register)."""
    extra = {name: e for name, e in registry.sections().items() if name not in SCHEMA}
    if not extra:
        return SCHEMA, DEFAULTS
    return ({**SCHEMA, **{n: e.schema for n, e in extra.items()}},
            {**DEFAULTS, **{n: dict(e.defaults) for n, e in extra.items()}})


def load_config(flag: str | None = None) -> Config:
    """The configuration found by docs/contracts.md's order ('Where things live'); built-in defaults when there is none."""
    path = paths.resolve_config_path(flag)
    if path is None:
        return Config(copy.deepcopy(DEFAULTS), None)
    return parse_config(read_config_text(path), str(path))


def read_config_text(path: str | Path) -> str:
    """The file's text; ConfigError (exit 2) when it cannot be read or is not UTF-8."""
    return read_text(str(path))
