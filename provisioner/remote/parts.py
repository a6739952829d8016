"""The launcher's side of job mode (`provisioner run --remote`, provisioner/remote/run.py): the plan,
the cloud, the bootstrap and secrets of one instance, how to follow it, and its final record.
Small functions, most of them pure, so that run.py reads as the sequence of steps."""

from __future__ import annotations

import argparse
import json
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from provisioner import bootstrap, records
from provisioner.secret_bundle import make_bundle
from provisioner.backoff import Backoff
from provisioner.catalog.model import SPOT, Offer
from provisioner.clouds.base import Cloud, Instance, work_tags
from provisioner.runner.console import Console

DEFAULT_LOG_GROUP = "/provisioner/jobs"       # the IAM policies grant /provisioner/*
RUN_GRACE_DEFAULT = 10.0                      # `provisioner run --grace`'s own default
USER_TAG, STATE_TAG = "provisioner:user", "provisioner:state"


# ---- plan and cloud ---------------------------------------------------------------------------

def arch_choice(req: Any, args: argparse.Namespace, cloud_name: str, host_arch: str, image: str,
                engine: Any = None) -> Any:
    """The `arch=` the plan gets and why (image_arch.ArchChoice), or None when the request (`req`,
    the declared Requirements) fixes the architecture itself. The docker cloud runs the host's
    architecture only. On EC2 the job's image decides, unless the request names `arch`, or an
    instance type or family (the catalog knows each type's architecture)."""
    from provisioner.remote import image_arch
    if req.mentions_arch:
        return None
    from provisioner.clouds import registry
    if registry.adapter(cloud_name).on_this_host:
        return image_arch.ArchChoice(host_arch, f"the {cloud_name} cloud runs the host's architecture: arch={host_arch}")
    if args.instance_type or req.names_type:
        return None
    return image_arch.for_image(image, engine)


def arch_rule(choice: Any, ec2_arches: frozenset[str] = frozenset()) -> Any:
    """`run --remote`'s architecture rule for the intent, from an ArchChoice (None: the request
    names it). On EC2 an unpinned choice keeps to the architecture of the only AMI configured."""
    from provisioner.intent import ArchRule
    if choice is not None and choice.arch:
        return ArchRule(choice.arch, f"Architecture: {choice.reason}")
    only = sorted(ec2_arches)[0] if len(ec2_arches) == 1 else None
    why = f"; ec2.images has images for {only} only" if only else ""
    if choice is not None:
        return ArchRule(only, f"Architecture: {choice.reason}{why}")
    return ArchRule(only, f"Architecture: the request names it (arch, a type or family){why}")


def plan(args: argparse.Namespace, ctx: Any, job: str, arch: Any = None, *,
         choose: Callable[[Any], Any] | None = None, cloud_name: str | None = None) -> Any:
    """planner.plan_job with the run's flags and `run --remote`'s architecture rule: `arch` (an
    ArchChoice made already) or `choose` (makes it from the declared Requirements, e.g. with
    `arch_choice`). `--instance-type T` means `type=T`. The result carries the intent."""
    from provisioner.clouds import registry
    from provisioner.planner import plan_job
    filters = list(args.filter or [])
    if args.instance_type:
        filters.append(f"type={args.instance_type}")
    cloud_name = cloud_name or getattr(args, "cloud", None) or ctx.config.cloud
    amis = registry.adapter(cloud_name).pinned_arches(ctx.config)     # EC2: the AMIs' architectures
    rule = (lambda req: arch_rule(choose(req) if choose else arch, amis))  # noqa: E731
    return plan_job(ctx, label=args.label, filters=filters, job=job, timeout=args.timeout or None,
                    policy=args.policy, regions=args.region, max_price=args.max_price,
                    no_autotune=args.no_autotune, arch=rule)


def starting_line(candidate: Any) -> str:
    """The original tool's line, e.g. `Starting r5.large spot:True price:0.07/0.13 ...`."""
    o: Offer = candidate.offer
    ondemand = f"{o.ondemand_price:.4f}" if o.ondemand_price is not None else "?"
    return (f"Starting {o.instance_type} spot:{o.market == SPOT} price:{o.price:.4f}/{ondemand} "
            f"perf/price:{candidate.perf_per_price:.0f} score:{candidate.score:.0f} vcpu:{o.vcpu} "
            f"mem:{o.memory_gib:.2f} AZ:{o.az or o.region}")


# ---- the instance's bootstrap -----------------------------------------------------------------

def job_grace_s(args: argparse.Namespace) -> float:
    """On an instance the job gets the spot notice's budget unless --grace says otherwise."""
    return bootstrap.DEFAULT_GRACE_S if args.grace == RUN_GRACE_DEFAULT else float(args.grace)


def job_budget_s(args: argparse.Namespace, spec: Any) -> float:
    """How long the remote `provisioner run` may take, retries and their delays included."""
    attempts = (args.retry or 0) + 1
    delays = sum(Backoff(args.retry_delay, 3600, jitter="none").delay(n) for n in range(attempts - 1))
    return attempts * (spec.timeout_s + job_grace_s(args)) + delays + 60


def run_args(args: argparse.Namespace, spec: Any, job: Any) -> tuple[str, ...]:
    """The remote `provisioner run` options and command; env values travel in the secret bundle."""
    out = ["--image", spec.image, "--timeout", f"{spec.timeout_s:g}s", "--grace", f"{job_grace_s(args):g}s",
           "--job", job.job]
    if job.build:
        out += ["--build", job.build]
    if args.retry:
        out += ["--retry", str(args.retry), "--retry-delay", f"{args.retry_delay:g}s"]
        if args.retry_on:
            out += ["--retry-on", args.retry_on]
    for volume in spec.volumes:
        out += ["--volume", volume]
    for flag, value in (("--workdir", spec.workdir), ("--user", spec.user), ("--gpus", spec.gpus),
                        ("--name", spec.name), ("--log-group", args.log_group)):
        if value:
            out += [flag, value]
    if spec.memory_bytes:
        out += ["--memory", f"{-(-spec.memory_bytes // (1024 * 1024))}M"]
    if spec.cpus:
        out += ["--cpus", f"{spec.cpus:g}"]
    out += ["--network", spec.network]
    for key, value in spec.labels.items():
        out += ["--container-label", f"{key}={value}"]
    for extra in args.docker_args or ():
        out += ["--docker-args", extra]
    return tuple(out + ["--", *spec.command])


def bootstrap_spec(args: argparse.Namespace, spec: Any, job: Any, run_id: str, lifetime_s: float,
                   init_script: str | None = None, transfer: Any = None) -> Any:
    """`transfer` (provisioner/remote/transfer.Transfer): where the synced folder and outputs travel."""
    folders = transfer.bootstrap_fields() if transfer is not None else {}
    return bootstrap.BootstrapSpec(run_id=run_id, expires_at=bootstrap.expires_at(lifetime_s),
                                   run_args=run_args(args, spec, job), grace_s=job_grace_s(args),
                                   log_group=args.log_group or DEFAULT_LOG_GROUP, init_script=init_script,
                                   **folders)


def user_data(offer: Offer, bspec: Any, cloud_name: str) -> str:
    return bootstrap.render_user_data("job", offer, bspec, cloud_name)


def secret_bundle(spec: Any, environ: Mapping[str, str]) -> dict:
    """The job's environment, and the daemon's report URL/token when this run has them."""
    return make_bundle(report_url=environ.get("PROVISIONER_REPORT_URL"),
                       report_token=environ.get("PROVISIONER_REPORT_TOKEN"), job_env=spec.env)


def secret_env(cloud_name: str, bundle: dict) -> dict[str, str]:
    return bootstrap.secret_env(cloud_name, bundle)


def launching_user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def tags(owner: str, job: Any, run_id: str, expires: str) -> dict[str, str]:
    """The run's tags. Its state lives with it (`provisioner:state`, `provisioner:user`), so `ps`
    from any machine with the same credentials sees it; nothing here ties it to the launcher's
    process: a run ends by its own end or its expiry, never because its launcher went away."""
    return {**work_tags(owner, job=job.job, expires_at=expires, build=job.build, run_id=run_id, team=job.team),
            USER_TAG: launching_user(), STATE_TAG: "running"}


# ---- following ---------------------------------------------------------------------------------

def follower(cloud: Cloud, instance: Instance, events: Any, tag: object, log_group: str) -> Any:
    """The cloud's follower of the instance's output (docker: the container; EC2: CloudWatch)."""
    return cloud.follower(instance, events, tag, log_group)


def signal_instance(cloud: Cloud, instance: Instance, name: str) -> None:
    """Ask the instance's bootstrap to stop the job (docker: a signal to the container)."""
    try:
        cloud.client.api.kill(instance.id, signal=name)     # type: ignore[attr-defined]
    except Exception:
        pass          # already gone: its end is reported by the follower


def event_text(value: dict) -> str:
    return {"interrupted": "spot interruption notice; the job was stopped",
            "expired": "maximum lifetime reached; the job was stopped",
            "idle": "idle; the agent was stopped"}.get(str(value.get("event")), json.dumps(value))


# ---- the record and the summary --------------------------------------------------------------

def final_record(outcome: Any, instance: Instance | None, best: Any, job: Any, spec: Any, result: Any,
                 args: argparse.Namespace, *, instance_s: float, cloud: str,
                 terminated_at: float | None = None) -> dict:
    """The remote run's usage record (the one the instance's `provisioner run` produced, else one
    made here), plus what only the launcher knows: instance, boot and instance time and cost."""
    offer = best.offer
    if instance is not None and instance.instance_type and instance.instance_type != offer.instance_type:
        offer = offer._replace(instance_type=instance.instance_type, market=instance.market)
    record = dict(outcome.record or {})
    if not record.get("run_id"):
        ran = max(0.0, instance_s - (outcome.ready_s or 0.0))
        record = {"job": job.job, "build": job.build, "run_id": str(uuid.uuid4()),
                  "start": records.iso_utc(datetime.now(timezone.utc) - timedelta(seconds=ran)),
                  "duration_s": round(ran, 3), "instance_type": offer.instance_type, "region": offer.region,
                  "market": offer.market, "vcpu": offer.vcpu, "price_usd_per_hour": offer.price,
                  "ondemand_usd_per_hour": offer.ondemand_price,
                  "cost_usd": round(offer.price * ran / 3600, 6), "image": spec.image,
                  "triggered_by": job.triggered_by, "team": job.team}
    record["exit_code"] = outcome.exit_code
    if outcome.exit_code == 124:
        record["timed_out"] = True
    if outcome.exit_code in (129, 130, 143) and not record.get("interrupted"):
        record["interrupted"] = True
    # What the user asked for (the instance's runner only saw the limits the plan gave it).
    req = result.requirements
    record["requested"] = " && ".join(x for x in [args.label, *(args.filter or [])] if x) or None
    record["requested_vcpu"] = req.vcpu
    record["requested_mem_gib"] = req.mem_gib
    for key in ("triggered_by", "team", "build"):
        if record.get(key) is None:
            record[key] = getattr(job, key)
    record.update(cloud=cloud, instance_id=instance.id if instance else None,
                  boot_s=round(outcome.ready_s, 3) if outcome.ready_s is not None else None,
                  instance_s=round(instance_s, 3),
                  instance_cost_usd=round(offer.price * instance_s / 3600, 6), remote=True,
                  terminated_at=records.iso_utc(datetime.fromtimestamp(terminated_at, timezone.utc))
                  if terminated_at else None)
    return records.normalise(record)


def store_and_summarise(record: dict, ctx: Any, console: Console, summary_json: str | None,
                        after: Any = None) -> None:
    """Store the record, run `after(record)` (S3 copy, alerts: guarded by the caller), print the summary."""
    from provisioner.runner.summary import summary_line
    try:
        with ctx.open_history() as store:
            store.add(record)
    except Exception as exc:
        console.warn(f"usage record not written to the history store: {exc}")
    if after is not None:
        after(record)
    notional = " (notional EC2 price)" if _notional_prices(record.get("cloud")) else ""
    boot = f"{record['boot_s']:.2f} s" if record.get("boot_s") is not None else "n/a"
    console.info(f"Remote: instance {record.get('instance_id')} {record.get('instance_type')} "
                 f"{record.get('market')} {record.get('region')}; boot {boot}, instance "
                 f"{record['instance_s']:.2f} s, instance cost ${record['instance_cost_usd']:.6f}{notional}")
    console.info(f"Summary: {summary_line(record)}")
    if summary_json:
        target = Path(summary_json)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(record, summary_line=summary_line(record)), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)


def _notional_prices(cloud_name: Any) -> bool:
    """Whether that cloud's prices are the catalog's EC2 prices it does not charge (docker)."""
    from provisioner.clouds import registry
    try:
        return bool(registry.adapter(str(cloud_name)).notional_prices)
    except ValueError:                  # a record of a cloud not registered here
        return False
