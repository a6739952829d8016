"""From `provisioner run`'s parsed options and the config to the runner's inputs: the ContainerSpec,
and what follows each stored record. Used by the `run` command (cli/run.py) and by a remote run
(remote/run.py), which runs the same spec on an instance; nothing here imports the CLI."""

from __future__ import annotations

import argparse
from typing import Any, Callable, Mapping

from provisioner.errors import UsageError


def build_spec(args: argparse.Namespace, ctx: Any, environ: Mapping[str, str]):
    """The ContainerSpec from parsed options and the config. Env files are read here (125)."""
    from provisioner.runner.docker_args import parse_extra_args
    from provisioner.intent import default_timeout_s
    from provisioner.runner.spec import ContainerSpec, parse_env_args, parse_label, read_env_file
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    defaults = ctx.config.defaults
    image = args.image or defaults.image
    if not image:
        raise UsageError("no image: give --image or set defaults.image in the config")
    env: dict[str, str] = {}
    for path in args.env_file or []:
        env.update(read_env_file(path, environ))
    env.update(parse_env_args(args.env, environ))
    return ContainerSpec(
        image=image, command=tuple(command),
        timeout_s=args.timeout or default_timeout_s(defaults),
        grace_s=args.grace, env=env, volumes=tuple(args.volume or ()), workdir=args.workdir,
        user=args.user, gpus=args.gpus, **instance_ceiling(args.cpus, args.memory, environ),
        network=args.network, name=args.name,
        labels=dict(parse_label(t) for t in args.container_label or ()),
        extra=parse_extra_args(args.docker_args or ()))


def instance_ceiling(cpus: float | None, memory: int | None, environ: Mapping[str, str]) -> dict:
    """On a docker-cloud instance (PROVISIONER_CPUS / PROVISIONER_MEMORY in bytes), builds are
    sibling containers on the host: the instance's size is their default and their ceiling."""
    def number(name: str) -> float | None:
        try:
            value = float(environ.get(name, ""))
        except ValueError:
            return None
        return value if value > 0 else None
    cap_cpus, cap_mem = number("PROVISIONER_CPUS"), number("PROVISIONER_MEMORY")
    if cap_cpus is not None:
        cpus = min(cpus, cap_cpus) if cpus else cap_cpus
    if cap_mem is not None:
        memory = min(memory, int(cap_mem)) if memory else int(cap_mem)
    return {"cpus": cpus, "memory_bytes": memory}


def after_record(ctx: Any, usage_s3: str | None, standalone: bool,
                 warn: Callable[[str], None]) -> Callable[[dict], Any] | None:
    """What follows each stored record: the S3 copy (--usage-s3), and alerts for a run no daemon
    serves (with a reporter, the daemon raises them). Each is guarded: one failing skips nothing."""
    steps: list[tuple[str, Callable[[dict], Any]]] = []
    if usage_s3:
        from provisioner.export import export_records
        steps.append(("usage record not written to S3", lambda record: export_records([record], usage_s3)))
    alerts = ctx.config.alerts.settings
    if standalone and alerts.sinks:  # with sinks and no rules, the default rules apply
        from provisioner.alerts.dispatch import alert_on_record
        location = ctx.history_location
        steps.append(("alerts not raised", lambda record: alert_on_record(alerts, location, record)))
    if not steps:
        return None

    def after(record: dict) -> None:
        for what, step in steps:
            try:
                step(record)
            except Exception as exc:  # a warning, never a changed exit code
                warn(f"{what}: {exc}")
    return after
