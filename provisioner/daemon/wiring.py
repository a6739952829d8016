"""Builds a running daemon from the configuration (the command line and the tests use this)."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from provisioner import paths
from provisioner.clouds import registry
from provisioner.clouds.base import BlockedOffers, Cloud, Instance
from provisioner.config import Config
from provisioner.errors import ConfigError
from provisioner.daemon.db import DaemonDb
from provisioner.daemon.drains import Drains
from provisioner.daemon.agents import AgentBook
from provisioner.daemon.bootwatch import BootWatch, alert_sender
from provisioner.daemon.http import AgentApi, ApiLimits, DaemonHttpServer, Health, metrics_server, parse_listen
from provisioner.daemon.jenkins import JenkinsClient
from provisioner.daemon.provision_executor import AgentSettings, ProvisionExecutor
from provisioner.daemon.lease import Lease
from provisioner.daemon.loop import Daemon
from provisioner.daemon.metrics import DaemonMetrics
from provisioner.daemon.model import Settings
from provisioner.daemon.plan_cache import PlanCache
from provisioner.daemon.queue import QueueReader
from provisioner.daemon.state import Attempts, Tokens, load_secret
from provisioner.quotas import class_limits
from provisioner.init_scripts import InitScripts
from provisioner.intent import default_timeout_s

log = logging.getLogger("provisioner.daemon")


@dataclass
class Parts:
    daemon: Daemon
    http: DaemonHttpServer
    closers: list[Callable[[], None]] = field(default_factory=list)
    metrics_http: DaemonHttpServer | None = None      # daemon.metrics_listen: /metrics apart

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:                      # closing must not hide the real exit
                log.debug("close failed", exc_info=True)


def settings_from_config(config: Config, owner: str) -> Settings:
    """The loop's Settings (daemon/model.py): `config.daemon` and `config.jenkins` plus what is
    decided at start (the owner, the vCPU class caps per region)."""
    j, d = config.jenkins, config.daemon
    return Settings(owner=owner, managed_atom=j.managed_atom, max_agents=d.max_agents,
                    max_per_label=d.max_per_label, max_per_job=d.max_per_job,
                    budget_usd_per_hour=d.budget_usd_per_hour, boot_timeout_s=float(d.boot_timeout_s),
                    orphan_grace_s=float(d.orphan_grace_s),
                    ondemand_after_interruptions=int(d.ondemand_after_interruptions),
                    interval_s=float(d.interval_s), max_vcpus=d.max_vcpus,
                    pause_after_boot_failures=int(d.pause_after_boot_failures),
                    max_vcpus_per_label=d.max_vcpus_per_label,
                    class_caps=class_limits(d.max_vcpus_per_class, None, config.regions))


def account_quotas(config: Config, cloud: Cloud | str, client_for: Callable[[str], Any] | None = None) -> dict:
    """The account's vCPU quotas per (region, class, market) times daemon.quota_share, read once at
    start where the cloud has them (EC2; daemon.service_quotas: true); {} elsewhere, when false, or
    when unreadable. `cloud`: the cloud, or a registered cloud's name."""
    d = config.daemon
    if d.service_quotas is False:
        return {}
    found = _ask(registry.adapter(cloud) if isinstance(cloud, str) else cloud, "vcpu_quotas",
                 config.regions, client_for)
    if found is None:
        return {}
    share = float(d.quota_share or 1.0)
    log.info("%s", json.dumps({"event": "daemon.quotas", "read": len(found.limits), "problems": list(found.problems)[:20],
                               "share": share}))
    return {k: v * share for k, v in found.limits.items()}


def _ask(cloud: Any, rule: str, *args: Any, default: Any = None) -> Any:
    """A cloud's answer to one of clouds.base.Cloud's questions; `default` for a stand-in object
    that is no full Cloud (some tests build a daemon over one)."""
    method = getattr(cloud, rule, None)
    return method(*args) if callable(method) else default


def state_location(history_location: str) -> str:
    """Where the lease and attempts live: the history store itself (created and migrated here)."""
    from provisioner.history import open_store
    open_store(history_location).close()         # migration 2: daemon_lease, daemon_attempts
    if history_location.startswith(("postgresql://", "postgres://")):
        return history_location
    return str(Path(history_location).expanduser())


def build(config: Config, history_location: str, token: str | None, *, owner: str,
          listen: str | None = None, cloud: Cloud | None = None, catalog: Any = None,
          prices: Callable[[Instance], tuple[float, Any]] | None = None,
          quota_clients: Callable[[str], Any] | None = None) -> Parts:
    """Everything wired and the HTTP port open; `parts.daemon.run(stop)` starts the loop."""
    from provisioner.history import open_store
    j, d = config.jenkins, config.daemon
    settings = settings_from_config(config, owner)
    blocked = BlockedOffers(ttl_s=float(d.blocked_offer_ttl_s))
    if cloud is None:
        cloud = registry.make_cloud(config, blocked)
    elif hasattr(cloud, "blocked"):
        blocked = cloud.blocked                   # one blocked set: the cloud's failures and our boot timeouts
    quotas = account_quotas(config, cloud, quota_clients)
    if quotas:
        settings = replace(settings, class_quotas=quotas)
    if catalog is None:
        from provisioner.catalog import load_catalog
        defaults = config.defaults
        catalog = load_catalog(score_source=defaults.score_source,
                               max_age_days=defaults.catalog_max_age_days)
    location = state_location(history_location)

    def store():
        return open_store(history_location)

    client = JenkinsClient(j.url, j.user, token, timeout=float(j.timeout_s))
    reader = QueueReader(client, j.demand_path)
    limits = ApiLimits.from_config(d.api)
    book = AgentBook(grace_s=limits.token_grace_s)
    tokens = Tokens(load_secret(paths.state_dir()), book)
    metrics_token = _metrics_token(config)
    metrics = DaemonMetrics()
    health = Health(stuck_after_s=max(60.0, 6 * settings.interval_s))
    plan_cache = PlanCache(config, catalog, store, blocked.current, settings.managed_atom)
    alerts = config.alerts.settings

    spend = team_spend(config, history_location, store)

    def on_record(record: dict) -> None:
        plan_cache.invalidate(record["job"])
        if spend is not None:
            spend.invalidate(record)
        if alerts.sinks:                          # sinks may be slow: off the request thread
            from provisioner.alerts.dispatch import alert_on_record
            threading.Thread(target=alert_on_record, args=(alerts, history_location, record),
                             name="alerts", daemon=True).start()
    drains = Drains(client, on_observed=book.nodes_seen)   # the loop and the agent API drain through one book
    boot = BootWatch(cloud, None, metrics, settings.pause_after_boot_failures,
                     alert_sender(alerts, history_location))
    api = AgentApi(tokens, metrics, store, on_record=on_record, on_report=drains.drain_reporting,
                   node_builds=client.node_builds, build_result=client.build_result, limits=limits,
                   on_event=boot.report)
    separate = d.metrics_listen
    http = DaemonHttpServer(parse_listen(listen or d.listen), metrics, health, api,
                            metrics_token=metrics_token, serve_metrics=not separate).start()
    parts = Parts(None, http, [http.stop])       # type: ignore[arg-type]  # set just below
    try:
        if separate:
            parts.metrics_http = metrics_server(parse_listen(separate), metrics, health, metrics_token)
            parts.closers.append(parts.metrics_http.stop)
        db = DaemonDb(location)
        parts.closers.append(db.close)
        attempts = Attempts(location, owner, db=db)
        lease = Lease(location, owner, ttl_s=float(d.lease_ttl_s), db=db)
        after_launch, after_terminate = _ask(cloud, "secret_handover") or (None, None)
        agent = AgentSettings(owner=owner, jenkins_url=j.agent_url or j.url,
                              report_url=d.report_url or http.url, remote_fs=d.remote_fs,
                              default_timeout_s=default_timeout_s(config.defaults),
                              boot_timeout_s=settings.boot_timeout_s,
                              idle_timeout_s=settings.boot_timeout_s + settings.orphan_grace_s,
                              extra_tags=tuple(sorted(_ask(cloud, "launch_tags", default={}).items())),
                              init_scripts=InitScripts.from_config(config, getattr(cloud, "name", "docker")))
        executor = ProvisionExecutor(agent, client, cloud, attempts, tokens, after_launch=after_launch,
                                     after_terminate=after_terminate)
        boot.cloud, boot.executor = cloud, executor
        parts.daemon = Daemon(settings=settings, client=client, reader=reader, cloud=cloud, plan_cache=plan_cache,
                              executor=executor, attempts=attempts, metrics=metrics, health=health,
                              blocked=blocked, lease=lease, sentinel=j.sentinel_node,
                              prices=prices or catalog_prices(catalog),
                              launch_workers=int(d.launch_workers) or 1,
                              drain_poll_s=float(d.drain_poll_s), drains=drains, agents=book, boot=boot,
                              spend=spend)
        parts.daemon.pools = _pool_keeper(config, parts.daemon, drains)
    except BaseException:
        parts.close()
        raise
    log.info("%s", json.dumps({"event": "daemon.started", "owner": owner, "jenkins": j.url,
                               "cloud": getattr(cloud, "name", type(cloud).__name__), "listen": http.url,
                               "settings": _loggable(settings)}, default=str))
    return parts


def _loggable(settings: Settings) -> dict:
    """Settings for the start line: the (region, class, market) keys of the vCPU limits as text."""
    out = dict(settings.__dict__)
    for name in ("class_caps", "class_quotas"):
        out[name] = {" ".join(k): v for k, v in out[name].items()}
    return out


def team_spend(config: Config, history_location: str, store: Callable[[], Any]) -> Any:
    """The team-budget reader when some alert rule is a budget (None: no budget rules)."""
    from provisioner.daemon.spend import TeamSpend, alert_dispatcher
    settings = config.alerts.settings
    if not any("budget" in r.on and r.budget_usd for r in settings.rules):
        return None
    return TeamSpend(settings, config.teams, store,
                     dispatch=alert_dispatcher(settings, history_location),
                     refresh_s=float(config.daemon.budget_refresh_s or 60))


def _metrics_token(config: Config) -> str | None:
    """The bearer token /metrics requires: the value of `daemon.metrics_token_env` (None: none)."""
    import os
    name = config.daemon.metrics_token_env
    if not name:
        return None
    value = os.environ.get(name, "").strip()
    if len(value) < 16:
        raise ConfigError(config.path or "<config>", [("daemon.metrics_token_env", None,
                          f"the environment variable {name} must hold a token of 16 characters or more "
                          f"({'it is not set' if not value else 'it is shorter'})")])
    return value


def catalog_prices(catalog: Any) -> Callable[[Instance], tuple[float, Any]]:
    """(USD/h, offer) of an instance: its price label (docker cloud) or the catalog's offer."""
    def price(inst: Instance) -> tuple[float, Any]:
        offer = catalog.find(inst.instance_type, inst.region or "us-east-1", inst.market or "on-demand")
        tagged = inst.tags.get("provisioner:price")
        try:
            value = float(tagged) if tagged else (offer.price if offer else 0.0)
        except ValueError:
            value = offer.price if offer else 0.0
        return value, offer
    return price


def _pool_keeper(config: Config, daemon: Daemon, drains: Drains) -> Any:
    """The warm pool's keeper when any `labels:` entry has a pool (else None: nothing changes)."""
    from provisioner.pool import pools_from_config, reuse_from_config
    specs = pools_from_config(config.labels)
    reuse = reuse_from_config(config.labels)
    if not specs and not reuse:
        return None
    from provisioner.daemon.pool_metrics import PoolMetrics
    from provisioner.daemon.pools import PoolKeeper
    metrics = PoolMetrics(daemon.metrics.registry)
    keeper = PoolKeeper(specs, settings=daemon.s, plan_cache=daemon.plan_cache, executor=daemon.executor,
                        cloud=daemon.cloud, client=daemon.client, drains=drains, metrics=metrics)
    metrics.keeper = keeper
    from provisioner.daemon.handover import handover_for
    handover = handover_for(daemon.cloud, daemon.executor) if reuse else None
    if handover is not None:
        from provisioner.daemon.reuse import ReuseKeeper
        keeper.reuse = ReuseKeeper(reuse, settings=daemon.s, executor=daemon.executor, cloud=daemon.cloud,
                                   client=daemon.client, drains=drains, metrics=metrics, handover=handover)
        daemon.executor.reuse_labels = frozenset(reuse)
    elif reuse:
        log.warning("%s", json.dumps({"event": "reuse.unsupported", "cloud": getattr(daemon.cloud, "name", "?"),
                                      "detail": "this cloud cannot hand an agent its next build: one build per agent"}))
    return keeper
