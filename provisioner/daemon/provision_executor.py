"""Carrying out a Provision: node, secret, launch spec, instance (the only action with many steps).

Order matters for crash safety: the attempt is persisted first, then the node is created (Jenkins
keeps it across restarts), then the instance is launched with a token derived from the node. A
crash anywhere leaves a state the next tick recognises: a node without instance gets its launch
(same token: no duplicate); an instance always has its node already (a batched EC2 launch tags its
instances with their nodes right after the request, and finishes that on `describe` after a crash).
The agent secret and report token travel in the secret bundle (bootstrap.secret_env on the docker
cloud, an SSM parameter on EC2), never in user-data, tags or logs. On EC2 the bundle is put after
the launch, so `hand_over` can put it again for a booting agent after a restart (an unread one is
kept), and `forget` deletes the unread bundles of terminated instances.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from provisioner.clouds.base import Cloud, Instance, LaunchSpec, work_tags
from provisioner.daemon.bootfail import BOOT_CONFIG_TAG, config_hash
from provisioner.daemon.jenkins import JenkinsClient, JenkinsError
from provisioner.daemon.model import InFlight, NodeMeta, Provision
from provisioner.daemon.state import Attempts, Tokens
from provisioner.init_scripts import InitScripts
from provisioner.labels import node_label_string
from provisioner.records import iso_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentSettings:
    owner: str
    jenkins_url: str                 # what agents connect to
    report_url: str                  # what agents post usage to
    remote_fs: str = "/home/jenkins/agent"
    default_timeout_s: float = 6 * 3600
    boot_timeout_s: float = 600
    idle_timeout_s: float | None = 900
    extra_tags: tuple[tuple[str, str], ...] = ()
    init_scripts: InitScripts = InitScripts()       # the admin's, per cloud and label


def launch_tags(owner: str, p: Provision, expires_at: str, team: str | None) -> dict[str, str]:
    """docs/contracts.md tags: owner, node, queue-id, job, team, expires-at (build and run-id come later)."""
    return work_tags(owner, job=p.item.job, expires_at=expires_at, node=p.node, queue_id=p.item.id, team=team)


@dataclass(frozen=True)
class Prepared:
    """A Provision made ready to launch: its node exists, its spec and secret bundle are built."""

    provision: Provision
    spec: LaunchSpec
    bundle: dict = field(repr=False)
    at: float


class ProvisionExecutor:
    """Executes Provision actions against Jenkins and the cloud, in three steps: `prepare` (node,
    secret, spec; one per provision), the cloud's launch (several specs may share one request), and
    `launched` (the secret hand-over, the log line); the daemon's loop runs them in that order."""

    def __init__(self, settings: AgentSettings, client: JenkinsClient, cloud: Cloud, attempts: Attempts,
                 tokens: Tokens, *, after_launch: Callable[[Instance, dict], None] | None = None,
                 after_terminate: Callable[[list[Instance]], None] | None = None,
                 clock: Callable[[], float] = time.time):
        self.s, self.client, self.cloud = settings, client, cloud
        self.attempts, self.tokens = attempts, tokens
        self.after_launch = after_launch          # EC2: put the bundle into SSM for the instance
        self.after_terminate = after_terminate    # EC2: remove bundles that no instance will read
        self.clock = clock
        self.reuse_labels: frozenset[str] = frozenset()   # EC2: canonical labels whose agents are reused

    @property
    def hands_over(self) -> bool:
        """Whether bundles travel apart from the launch (EC2), so a missing one can be put later."""
        return self.after_launch is not None

    def hand_over(self, node: str, instance: Instance) -> None:
        """Put the bundle of `node` for `instance` again (a restart between a launch and its
        hand-over, or a hand-over that failed); a bundle still waiting to be read is left as it is."""
        if self.after_launch is not None:
            self.after_launch(instance, self.bundle(node, self.client.node_secret(node)))

    def forget(self, instances: list[Instance]) -> None:
        """These instances are terminated: their bundles, if never read, are removed."""
        if self.after_terminate is not None and instances:
            self.after_terminate(instances)

    def prepare(self, p: Provision, spare_s: float = 0.0) -> Prepared:
        now = self.clock()
        offer = p.plan.chosen.offer
        self.attempts.record(p.item.key, p.attempt)
        if p.create_node:
            meta = NodeMeta(self.s.owner, p.item.id, p.item.since, p.item.job, p.item.label or "",
                            p.attempt, offer.key, offer.price, now)
            try:
                self.client.create_node(p.node, node_label_string(list(p.plan.node_labels)),
                                        meta.description(), self.s.remote_fs)
            except JenkinsError as exc:
                if not (exc.code == "400" and "already exists" in str(exc)):
                    raise                          # a crash after creation: the node is ours, go on
        secret = self.client.node_secret(p.node)
        spec, bundle = self.spec(p, secret, now, spare_s)
        return Prepared(p, spec, bundle, now)

    def launched(self, ready: Prepared, instance: Instance) -> InFlight:
        """The instance is up: hand its bundle over (EC2), log it, and count it in flight."""
        p, offer = ready.provision, ready.provision.plan.chosen.offer
        if self.after_launch is not None:
            self.after_launch(instance, ready.bundle)
        log.info("%s", json.dumps({"event": "agent.launched", "node": p.node, "queue_id": p.item.id,
                                   "job": p.item.job, "label": p.item.label, "attempt": p.attempt,
                                   "instance": instance.id, "instance_type": instance.instance_type,
                                   "market": instance.market, "region": instance.region,
                                   "price_usd_per_hour": offer.price}))
        return InFlight(instance, offer.price, ready.at)

    def spec(self, p: Provision, secret: str, now: float, spare_s: float = 0.0) -> tuple[LaunchSpec, dict]:
        """The LaunchSpec and the secret bundle. The user-data holds neither the secret nor the node
        (the bundle names it), so agents planned alike share one script and can share one request.
        Timeout, team and market come from the plan's intent (the label is not read again)."""
        from provisioner import bootstrap
        intent = p.plan.intent
        timeout = intent.timeout_s if intent is not None else self.s.default_timeout_s
        # then the instance stops itself; a warm spare (daemon/pools.py) may first wait `spare_s`
        lifetime = timeout + self.s.boot_timeout_s + 600 + spare_s
        idle = self.s.idle_timeout_s + spare_s if self.s.idle_timeout_s else self.s.idle_timeout_s
        expires = iso_utc(_utc(_minute(now) + lifetime))   # whole minutes: one script per tick
        bspec = bootstrap.BootstrapSpec(run_id="", expires_at=expires, jenkins_url=self.s.jenkins_url,
                                        work_dir=self.s.remote_fs, idle_timeout_s=idle,
                                        init_script=self.s.init_scripts.for_label(p.item.label))
        user_data = bootstrap.render_user_data("agent", p.plan, bspec, self.cloud)
        bundle = self.bundle(p.node, secret)
        if self.reuse_labels and self.hands_over and _canonical(p.item.label) in self.reuse_labels:
            bundle["reuse"] = "1"                  # its watcher polls for the next build (agent/nextbuild.py)
        tags = dict(self.s.extra_tags)
        tags.update(launch_tags(self.s.owner, p, expires, intent.team if intent is not None else None))
        tags[BOOT_CONFIG_TAG] = self.boot_config(p.item.label)
        spot_only = bool(intent is not None and intent.spot_only)   # `spot` fails over to spot only
        spec = LaunchSpec(candidates=tuple(c.offer for c in p.plan.candidates) or (p.plan.chosen.offer,),
                          user_data=user_data, tags=tags, client_token=p.token,
                          disk_gib=int(p.plan.disk_gib), spot_only=spot_only,
                          secret_env=bootstrap.secret_env(self.cloud, bundle))
        return spec, bundle

    def boot_config(self, label: str | None) -> str:
        """The hash of what an agent for `label` boots with besides its image (daemon/bootfail.py):
        a boot-failure pause lifts when it changes."""
        from provisioner import __version__
        return config_hash(__version__, getattr(self.cloud, "name", ""), self.s.jenkins_url, self.s.remote_fs,
                           self.s.init_scripts.for_label(label) or "")

    def bundle(self, node: str, secret: str) -> dict:
        """The secret bundle of one agent: its secret, where and how it reports, and who it is."""
        from provisioner import secret_bundle
        return secret_bundle.make_bundle(agent_secret=secret, report_url=self.s.report_url,
                                   report_token=self.tokens.for_node(node), node_name=node,
                                   run_id=node)          # the node name is unique per attempt


def _canonical(label: str | None) -> str | None:
    from provisioner.labels import canonical_expression
    try:
        return canonical_expression(label) if label else None
    except Exception:                              # noqa: BLE001 - not a label that reuses agents
        return None


def _minute(epoch: float) -> float:
    """Rounded up to the next whole minute, so launches of one tick get the same expiry."""
    return -(-epoch // 60) * 60


def _utc(epoch: float):
    from datetime import datetime, timezone
    return datetime.fromtimestamp(epoch, timezone.utc).replace(microsecond=0)
