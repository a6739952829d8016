"""User-data for an instance: agent_bootstrap/*.sh.j2 rendered with jinja2.

`render_user_data(mode, plan, spec, cloud)` gives the same script for EC2 and the docker cloud but
for one block, where the secret bundle comes from (EC2: an SSM SecureString read then deleted;
docker: the container environment). An agent's script names no node: the bundle does, so the agents
of one batched launch share one script. The script never holds a secret: agent secret, report token
and the job's environment travel in the bundle (`secret_env` / `provisioner.agent.secret_bundle.put_ssm`).
Modes: `job` (one `provisioner run`, then shut down: `run --remote`) and `agent` (an ephemeral
inbound Jenkins agent: the daemon).
"""

from __future__ import annotations

import functools
import os
import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from provisioner import __version__, init_scripts
from provisioner import secret_bundle
from provisioner.catalog.model import Offer
from provisioner.clouds.base import Cloud
from provisioner.records import iso_utc

TEMPLATES = {"job": "job.sh.j2", "agent": "agent.sh.j2"}
TEMPLATE_DIR_ENV = "PROVISIONER_BOOTSTRAP_DIR"
DEFAULT_GRACE_S = 90.0          # of the 120 s spot notice; see provisioner/agent/watcher.py
DEFAULT_WORK_DIR = "/var/lib/jenkins-agent"


@dataclass(frozen=True)
class BootstrapSpec:
    """What the instance does, apart from the plan and the secrets."""

    run_id: str                                  # job: names the secret parameter; the instance's
                                                 # run (agent: '', the bundle carries it)
    expires_at: str                              # ISO UTC: the maximum lifetime (expires-at tag)
    run_args: tuple[str, ...] = ()               # job: `provisioner run` options, `--`, command
    jenkins_url: str | None = None               # agent: the controller
    work_dir: str = DEFAULT_WORK_DIR             # agent: -workDir
    idle_timeout_s: float | None = None          # agent: stop after this long without a build
    grace_s: float = DEFAULT_GRACE_S
    log_group: str | None = None                 # EC2: CloudWatch Logs group for the job's output
    checkpoint_s3: str | None = None             # s3://bucket/prefix synced on a spot notice
    init_script: str | None = None               # the admin's (provisioner/init_scripts.py)
    # job: `run --remote --sync/--output` (provisioner/remote/transfer.py). EC2: the tree is read from
    # sync_s3 before the job and the outputs put to output_s3 after it; docker: sync_root is the
    # host folder the launcher filled. The job sees them at sync_mount / output_mount.
    sync_s3: str | None = None
    output_s3: str | None = None
    sync_root: str | None = None
    sync_mount: str | None = None
    output_mount: str | None = None

    @property
    def secret_parameter(self) -> str:
        return secret_bundle.parameter_name(self.run_id)


def expires_at(lifetime_s: float, now: datetime | None = None) -> str:
    """The ISO time `lifetime_s` from now: the value of the expires-at tag and of the bootstrap's."""
    moment = (now or datetime.now(timezone.utc)) + timedelta(seconds=lifetime_s)
    return iso_utc(moment.replace(microsecond=0))


def template_dir() -> Path:
    """$PROVISIONER_BOOTSTRAP_DIR, else the installed `agent_bootstrap` package data, else the
    checkout's agent_bootstrap/ next to the package (an editable install)."""
    override = os.environ.get(TEMPLATE_DIR_ENV)
    if override:
        return Path(override)
    beside = Path(__file__).resolve().parent.parent / "agent_bootstrap"
    if (beside / "_base.sh.j2").is_file():
        return beside
    try:
        import agent_bootstrap
        return Path(agent_bootstrap.__file__).resolve().parent
    except ImportError:
        raise FileNotFoundError("the agent_bootstrap templates are not installed (package data "
                                f"of agent_bootstrap); set {TEMPLATE_DIR_ENV}") from None


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _q(value: Any) -> str:
    return shlex.quote(_fmt(value))


def _qjoin(values: Sequence[Any]) -> str:
    return " ".join(_q(v) for v in values)


def clouds() -> tuple[str, ...]:
    """The clouds a bootstrap renders for: the registered ones (clouds/registry.py)."""
    from provisioner.clouds import registry
    return registry.names()


@functools.lru_cache(maxsize=4)
def _environment(folder: str) -> Any:
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    env.filters["q"] = _q
    env.filters["qjoin"] = _qjoin
    return env


def _offer(plan: Any) -> Offer:
    """The offer to put in the instance's environment: a Plan's chosen one, a Candidate's, or an Offer."""
    if hasattr(plan, "chosen"):
        return plan.chosen.offer
    if hasattr(plan, "offer"):
        return plan.offer
    return plan


def render_user_data(mode: str, plan: Any, spec: BootstrapSpec, cloud: Cloud | str) -> str:
    """The bootstrap script for `mode` ('job' | 'agent') on `cloud` (a Cloud, or a registered cloud's name)."""
    cloud_name = getattr(cloud, "name", cloud)
    if mode not in TEMPLATES:
        raise ValueError(f"unknown bootstrap mode {mode!r} (job or agent)")
    if cloud_name not in clouds():
        raise ValueError(f"unknown cloud {cloud_name!r} ({' or '.join(clouds())})")
    if mode == "job" and not spec.run_args:
        raise ValueError("job mode needs the `provisioner run` arguments")
    if mode == "agent" and not spec.jenkins_url:
        raise ValueError("agent mode needs the Jenkins URL (the node name comes with the secret bundle)")
    template = _environment(str(template_dir())).get_template(TEMPLATES[mode])
    from provisioner.clouds import registry
    text = template.render(mode=mode, template=TEMPLATES[mode], cloud=cloud_name, offer=_offer(plan),
                           secrets_from=registry.adapter(cloud_name).bundle_source,
                           ships_logs=registry.adapter(cloud_name).ships_logs,
                           spec=spec, version=__version__, init_delimiter=init_scripts.DELIMITER)
    if spec.init_script:
        init_scripts.check_size(text, cloud_name)
    return text


def secret_env(cloud: Cloud | str, bundle: Mapping[str, Any]) -> dict[str, str]:
    """The LaunchSpec.secret_env that carries the bundle, by the cloud's own rule (Cloud.secret_env:
    the docker cloud's container environment; EC2 none, its bundle goes to SSM after launch).
    `cloud`: a Cloud, or a registered cloud's name."""
    from provisioner.clouds import registry
    rule = getattr(cloud, "secret_env", None)
    if not callable(rule):
        rule = registry.adapter(getattr(cloud, "name", cloud)).secret_env
    return rule(dict(bundle))


EVERY_BOOT_BOUNDARY = "==provisioner-every-boot=="


def every_boot(script: str) -> str:
    """EC2 user-data that cloud-init runs on every boot, not only the first: a MIME multi-part whose
    cloud-config part sets the user-scripts module to `always`. A warm spare (daemon/pools.py) is
    booted once, stopped, and started for a build later: its bootstrap must run again then."""
    b = EVERY_BOOT_BOUNDARY
    return (f'Content-Type: multipart/mixed; boundary="{b}"\nMIME-Version: 1.0\n\n'
            f'--{b}\nContent-Type: text/cloud-config; charset="us-ascii"\n\n'
            "#cloud-config\ncloud_final_modules:\n- [scripts-user, always]\n\n"
            f'--{b}\nContent-Type: text/x-shellscript; charset="us-ascii"\n\n'
            f"{script.rstrip()}\n--{b}--\n")
