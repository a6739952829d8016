"""What to run: a frozen ContainerSpec built from the command line, and the pure translations of it
into docker SDK `containers.create` arguments and an equivalent `docker run` line (env masked)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from provisioner.errors import UsageError
from provisioner.runner import LaunchError
from provisioner.runner.docker_args import ExtraArgs
from provisioner.units import MIB

MASK = "***"


@dataclass(frozen=True)
class ContainerSpec:
    """One container to run. `env` holds secrets: it is kept out of repr and every printed line."""

    image: str
    command: tuple[str, ...] = ()
    timeout_s: float = 6 * 3600.0
    grace_s: float = 10.0
    env: dict[str, str] = field(default_factory=dict, repr=False)
    volumes: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    gpus: str | None = None
    memory_bytes: int | None = None
    cpus: float | None = None
    network: str = "none"
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    extra: ExtraArgs = field(default_factory=ExtraArgs)

    def container_name(self, run_id: str) -> str:
        return self.name or run_id

    def environment(self, run_id: str) -> dict[str, str]:
        """The container's environment: BUILD_TAG is the container name unless the user set it."""
        env = dict(self.env)
        env.setdefault("BUILD_TAG", self.container_name(run_id))
        return env

    @property
    def stop_signal(self) -> str:
        return str(self.extra.kwargs.get("stop_signal") or "SIGTERM")

    def create_kwargs(self, run_id: str, system_labels: Mapping[str, str]) -> dict[str, Any]:
        """Keyword arguments for `client.containers.create` (pure; see the golden test)."""
        kw: dict[str, Any] = {k: v for k, v in self.extra.kwargs.items() if k != "labels"}
        labels = {**self.extra.kwargs.get("labels", {}), **self.labels, **system_labels}
        kw.update(image=self.image, command=list(self.command) or None,
                  name=self.container_name(run_id), environment=self.environment(run_id),
                  labels=labels, init=True, network_mode=self.network, stdin_open=False, tty=False)
        if self.volumes:
            kw["volumes"] = list(self.volumes)
        if self.workdir:
            kw["working_dir"] = self.workdir
        if self.user:
            kw["user"] = self.user
        if self.memory_bytes:
            kw["mem_limit"] = self.memory_bytes
        if self.cpus:
            kw["nano_cpus"] = int(round(self.cpus * 1e9))
        if self.gpus:
            kw["device_requests"] = [gpu_device_request(self.gpus)]
        return kw

    def docker_run_line(self, run_id: str) -> str:
        """The equivalent `docker run` command line, every --env value masked."""
        parts = ["docker", "run", "--rm", "--init", "--name", self.container_name(run_id),
                 "--network", self.network]
        for key in self.environment(run_id):
            parts += ["--env", f"{key}={MASK}"]
        for volume in self.volumes:
            parts += ["--volume", volume]
        for flag, value in (("--workdir", self.workdir), ("--user", self.user),
                            ("--gpus", self.gpus)):
            if value:
                parts += [flag, value]
        if self.memory_bytes:
            mem = self.memory_bytes
            parts += ["--memory", f"{mem // MIB}m" if mem % MIB == 0 else str(mem)]
        if self.cpus:
            parts += ["--cpus", f"{self.cpus:g}"]
        for key, value in self.labels.items():
            parts += ["--label", f"{key}={value}"]
        parts += list(self.extra.tokens)
        parts.append(self.image)
        parts += list(self.command)
        return shlex.join(parts)


# ---- parsing of the command line's values -------------------------------------------------------

def parse_env_args(values: list[str] | None, environ: Mapping[str, str]) -> dict[str, str]:
    """`KEY=VALUE`, or `KEY` alone to pass this process's value (skipped when unset, like docker)."""
    env: dict[str, str] = {}
    for value in values or []:
        key, found, val = value.partition("=")
        if not key or key != key.strip() or any(c.isspace() for c in key):
            raise UsageError(f"--env: bad variable name in {key!r}; use KEY=VALUE or KEY")
        _set_env(env, key, found, val, environ)
    return env


def _set_env(env: dict[str, str], key: str, found: str, val: str, environ: Mapping[str, str]) -> None:
    """KEY=VALUE sets VALUE; KEY alone passes this process's value, and is skipped when unset."""
    if found:
        env[key] = val
    elif key in environ:
        env[key] = environ[key]


def read_env_file(path: str, environ: Mapping[str, str]) -> dict[str, str]:
    """docker's env-file format: KEY=VALUE lines (taken literally), KEY alone (from this process's
    environment), blank lines and # comments ignored. Unreadable or malformed: LaunchError (125)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise LaunchError(f"cannot read env file {path}: {reason}") from None
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        key, found, val = stripped.partition("=")
        if not key or any(c.isspace() for c in key):
            raise LaunchError(f"env file {path}, line {number}: bad variable name {key!r}")
        _set_env(env, key, found, val, environ)
    return env


def parse_volume(text: str) -> str:
    """`SRC:DST[:ro|rw|...]`; a SRC starting with . or ~ is made absolute (docker needs that)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"--volume {text!r}: use SRC:DST or SRC:DST:MODE")
    src, dst = parts[0], parts[1]
    if not dst.startswith("/"):
        raise UsageError(f"--volume {text!r}: the container path must be absolute")
    if src.startswith((".", "~")):
        src = str(Path(os.path.expanduser(src)).resolve())
    return ":".join([src, dst, *parts[2:]])


def parse_label(text: str) -> tuple[str, str]:
    key, found, value = text.partition("=")
    if not found or not key:
        raise UsageError(f"--container-label {text!r}: use KEY=VALUE")
    if key.startswith("provisioner:"):
        raise UsageError(f"--container-label {text!r}: the provisioner: prefix is reserved")
    return key, value


def parse_gpus(text: str) -> str:
    """Validate docker's --gpus syntax: `all`, a count, or `device=0,1` (indices or UUIDs)."""
    value = text.strip().strip('"')
    if value == "all" or (value.isdigit() and int(value) > 0):
        return value
    if value.startswith("device=") and value[len("device="):].strip(","):
        return value
    raise UsageError(f"--gpus {text!r}: use all, a number of GPUs, or device=ID[,ID...]")


def gpu_device_request(gpus: str) -> Any:
    from docker.types import DeviceRequest
    if gpus == "all":
        return DeviceRequest(count=-1, capabilities=[["gpu"]])
    if gpus.isdigit():
        return DeviceRequest(count=int(gpus), capabilities=[["gpu"]])
    ids = [d for d in gpus[len("device="):].split(",") if d]
    return DeviceRequest(device_ids=ids, capabilities=[["gpu"]])


def gpu_selection(gpus: str | None) -> list[str] | int | None:
    """Which host GPUs the container gets, for sampling: None (none), -1 (all), N (the first N),
    or a list of indices/UUIDs."""
    if not gpus:
        return None
    if gpus == "all":
        return -1
    if gpus.isdigit():
        return int(gpus)
    return [d for d in gpus[len("device="):].split(",") if d]
