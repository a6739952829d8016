"""The usage record of one attempt (docs/contracts.md) and the human summary printed after it."""

from __future__ import annotations

import fnmatch
import getpass
import os
from dataclasses import dataclass
from typing import Any, Mapping

from provisioner import records
from provisioner.runner import EXIT_OOM
from provisioner.runner.container import Attempt
from provisioner.runner.images import ImageInfo
from provisioner.runner.instance_price import Pricing
from provisioner.runner.spec import ContainerSpec
from provisioner.units import GIB, MIB, format_duration


@dataclass(frozen=True)
class JobInfo:
    """Who and what the run is for (from --job/--build and the Jenkins environment)."""

    job: str
    build: str | None = None
    team: str | None = None
    triggered_by: str | None = None
    node: str | None = None
    queue_id: str | None = None
    requested: str | None = None
    parent_run_id: str | None = None     # the usage record of the Jenkins build this run is part of

    @classmethod
    def from_env(cls, job: str | None, build: str | None, environ: Mapping[str, str],
                 teams: Mapping[str, Any] | None = None) -> "JobInfo":
        job = job or environ.get("JOB_NAME") or "adhoc"
        build = build or environ.get("BUILD_NUMBER") or None
        user = environ.get("BUILD_USER_ID")
        if not user:
            try:
                user = getpass.getuser()
            except (KeyError, OSError):
                user = None
        return cls(job=job, build=build,
                   team=environ.get("PROVISIONER_TEAM") or team_for(job, teams or {}),
                   triggered_by=user, node=environ.get("NODE_NAME") or None,
                   queue_id=environ.get("PROVISIONER_QUEUE_ID") or None,
                   requested=environ.get("PROVISIONER_REQUESTED") or None,
                   parent_run_id=environ.get("PROVISIONER_BUILD_RUN_ID") or None)


def team_for(job: str, teams: Mapping[str, Any]) -> str | None:
    """The config's `teams`: {pattern: team} or {team: [patterns]}, fnmatch patterns on job names."""
    for key, value in teams.items():
        if isinstance(value, str) and fnmatch.fnmatchcase(job, key):
            return value
        if isinstance(value, list) and any(fnmatch.fnmatchcase(job, p) for p in value if isinstance(p, str)):
            return key
    return None


def build_record(attempt: Attempt, job: JobInfo, spec: ContainerSpec, image: ImageInfo,
                 pricing: Pricing, *, attempt_no: int = 1, host_vcpu: int | None = None,
                 log_lines_dropped: int | None = None) -> dict[str, Any]:
    """The usage record of one attempt, validated (records.normalise)."""
    usage = attempt.usage
    vcpu = pricing.vcpu or (spec.cpus if spec.cpus else None) or host_vcpu or os.cpu_count()
    record: dict[str, Any] = {
        "kind": "run", "parent_run_id": job.parent_run_id, "result": None,
        "job": job.job, "build": job.build, "run_id": attempt.run_id, "start": attempt.start,
        "duration_s": attempt.duration_s, "exit_code": attempt.exit_code,
        "instance_type": pricing.instance_type, "region": pricing.region, "market": pricing.market,
        "vcpu": vcpu,
        "cpu_avg_pct": usage.get("cpu_avg_pct"), "cpu_max_pct": usage.get("cpu_max_pct"),
        "mem_avg_bytes": usage.get("mem_avg_bytes"), "mem_max_bytes": usage.get("mem_max_bytes"),
        "gpu_count": usage.get("gpu_count"), "gpu_util_avg_pct": usage.get("gpu_util_avg_pct"),
        "gpu_util_max_pct": usage.get("gpu_util_max_pct"),
        "gpu_mem_max_bytes": usage.get("gpu_mem_max_bytes"),
        "price_usd_per_hour": pricing.price_usd_per_hour,
        "ondemand_usd_per_hour": pricing.ondemand_usd_per_hour,
        "cost_usd": pricing.cost(attempt.duration_s),
        "timed_out": attempt.timed_out, "oom_killed": attempt.oom_killed,
        "interrupted": attempt.interrupted, "image": image.ref,
        "requested": job.requested,
        "requested_vcpu": spec.cpus,
        "requested_mem_gib": round(spec.memory_bytes / GIB, 6) if spec.memory_bytes else None,
        "triggered_by": job.triggered_by, "team": job.team, "node": job.node,
        "queue_id": job.queue_id,
        # extra fields (kept and exported by the history store)
        "container_name": attempt.container_name, "container_exit_code": attempt.container_exit_code,
        "image_digest": image.digest or image.id, "attempt": attempt_no,
        "signal": attempt.signal, "log_lines": attempt.log_lines,
        "log_lines_dropped": log_lines_dropped,
        "console_lines_dropped": getattr(attempt, "console_lines_dropped", 0) or None,
    }
    return records.normalise(record)


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def fmt_pct(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.0f}%"


def exit_note(record: Mapping[str, Any], timeout_s: float | None = None) -> str:
    code = record["exit_code"]
    if record.get("signal"):
        return f"{code} (interrupted by {record['signal']})"
    if record.get("timed_out"):
        after = f" after {format_duration(timeout_s)}" if timeout_s else ""
        return f"{code} (timed out{after})"
    if record.get("oom_killed") and code == EXIT_OOM:
        return f"{code} (OOM: killed for running out of memory)"
    if record.get("interrupted"):
        return f"{code} (killed by a signal from outside)"
    return str(code)


def summary_lines(record: Mapping[str, Any], timeout_s: float | None = None) -> list[str]:
    """The closing lines after the job: exit code, usage, duration, cost."""
    lines = [f"Exit code: {exit_note(record, timeout_s)}",
             f"Memory: max {fmt_bytes(record.get('mem_max_bytes'))}, "
             f"avg {fmt_bytes(record.get('mem_avg_bytes'))}",
             f"CPU: avg {fmt_pct(record.get('cpu_avg_pct'))}, max {fmt_pct(record.get('cpu_max_pct'))}"
             f" (100% = one vCPU; {record.get('vcpu') or '?'} vCPU available)"]
    if record.get("gpu_count"):
        lines.append(f"GPU: {record['gpu_count']} device(s), utilisation avg "
                     f"{fmt_pct(record.get('gpu_util_avg_pct'))}, max "
                     f"{fmt_pct(record.get('gpu_util_max_pct'))}; memory max "
                     f"{fmt_bytes(record.get('gpu_mem_max_bytes'))}")
    lines.append(f"Duration: {format_duration(record['duration_s'])} ({record['duration_s']:.1f} s)")
    if record.get("cost_usd") is not None:
        where = ", ".join(x for x in (record.get("instance_type"), record.get("market"),
                                      record.get("region")) if x)
        lines.append(f"Estimated cost: ${record['cost_usd']:.4f} ({where} at "
                     f"${record['price_usd_per_hour']:.4f}/h)")
    else:
        lines.append("Estimated cost: unknown (no instance type: use --instance-type)")
    if record.get("log_lines_dropped"):
        lines.append(f"Log lines dropped by log sinks: {record['log_lines_dropped']}")
    if record.get("console_lines_dropped"):
        lines.append(f"Lines not shown on the console (its reader went away): "
                     f"{record['console_lines_dropped']} of {record.get('log_lines')}")
    return lines


def summary_line(record: Mapping[str, Any]) -> str:
    """One line for Jenkins' build description and the Groovy step."""
    parts = [f"exit {exit_note(record)}", format_duration(record["duration_s"]),
             f"CPU avg {fmt_pct(record.get('cpu_avg_pct'))} max {fmt_pct(record.get('cpu_max_pct'))}",
             f"mem max {fmt_bytes(record.get('mem_max_bytes'))}"]
    if record.get("gpu_count"):
        parts.append(f"GPU avg {fmt_pct(record.get('gpu_util_avg_pct'))}")
    if record.get("cost_usd") is not None:
        parts.append(f"${record['cost_usd']:.4f} on {record.get('instance_type')}")
    return " | ".join(parts)

