"""Extra `docker run` parameters (`--docker-args "--shm-size 1g --ulimit nofile=1024:2048"`).

A documented subset is translated into docker SDK `containers.create` keyword arguments; anything
else is refused with a clear message (exit 2), so nothing is silently ignored. Options that
`provisioner run` has itself (--env, --volume, ...) are refused with a pointer to them, and those it
manages (--rm, --detach, --init, ...) are refused because the runner decides them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Callable

from provisioner.errors import UsageError


def _list(key: str) -> Callable[[dict, str], None]:
    def add(kw: dict, value: str) -> None:
        kw.setdefault(key, []).append(value)
    return add


def _scalar(key: str, convert: Callable[[str], Any] = str) -> Callable[[dict, str], None]:
    def put(kw: dict, value: str) -> None:
        kw[key] = convert(value)
    return put


def _pair(key: str, sep: str = "=") -> Callable[[dict, str], None]:
    def put(kw: dict, value: str) -> None:
        name, found, val = value.partition(sep)
        if not found or not name:
            raise UsageError(f"expected NAME{sep}VALUE, got {value!r}")
        kw.setdefault(key, {})[name] = val
    return put


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"expected a whole number, got {value!r}") from None


def _ulimit(kw: dict, value: str) -> None:
    from docker.types import Ulimit
    name, found, limits = value.partition("=")
    soft, _, hard = limits.partition(":")
    if not found or not name or not soft:
        raise UsageError(f"expected NAME=SOFT[:HARD], got {value!r}")
    kw.setdefault("ulimits", []).append(Ulimit(name=name, soft=_int(soft), hard=_int(hard or soft)))


def _tmpfs(kw: dict, value: str) -> None:
    path, _, opts = value.partition(":")
    kw.setdefault("tmpfs", {})[path] = opts


def _add_host(kw: dict, value: str) -> None:
    host, found, ip = value.partition(":")
    if not found or not host or not ip:
        raise UsageError(f"expected HOST:IP, got {value!r}")
    kw.setdefault("extra_hosts", {})[host] = ip


def _entrypoint(kw: dict, value: str) -> None:
    kw["entrypoint"] = shlex.split(value) if value else [""]


# name -> (takes a value, apply(kwargs, value)). This table is the documented subset.
SUPPORTED: dict[str, tuple[bool, Callable[[dict, str], None]]] = {
    "--shm-size": (True, _scalar("shm_size")),
    "--ulimit": (True, _ulimit),
    "--cap-add": (True, _list("cap_add")),
    "--cap-drop": (True, _list("cap_drop")),
    "--device": (True, _list("devices")),
    "--tmpfs": (True, _tmpfs),
    "--add-host": (True, _add_host),
    "--security-opt": (True, _list("security_opt")),
    "--pids-limit": (True, _scalar("pids_limit", _int)),
    "--hostname": (True, _scalar("hostname")),
    "--ipc": (True, _scalar("ipc_mode")),
    "--read-only": (False, lambda kw, _v: kw.__setitem__("read_only", True)),
    "--privileged": (False, lambda kw, _v: kw.__setitem__("privileged", True)),
    "--entrypoint": (True, _entrypoint),
    "--memory-swap": (True, _scalar("memswap_limit")),
    "--memory-reservation": (True, _scalar("mem_reservation")),
    "--cpuset-cpus": (True, _scalar("cpuset_cpus")),
    "--cpu-shares": (True, _scalar("cpu_shares", _int)),
    "--sysctl": (True, _pair("sysctls")),
    "--group-add": (True, _list("group_add")),
    "--stop-signal": (True, _scalar("stop_signal")),
    "--platform": (True, _scalar("platform")),
    "--label": (True, _pair("labels")),
}
ALIASES = {"-l": "--label", "-h": "--hostname"}
OWN_OPTIONS = {"-e": "--env", "--env": "--env", "--env-file": "--env-file", "-v": "--volume",
               "--volume": "--volume", "-w": "--workdir", "--workdir": "--workdir",
               "-u": "--user", "--user": "--user", "--gpus": "--gpus", "-m": "--memory",
               "--memory": "--memory", "--cpus": "--cpus", "--network": "--network",
               "--net": "--network", "--name": "--name"}
MANAGED = {"--rm", "-d", "--detach", "-i", "--interactive", "-it", "--init", "--restart",
           "-a", "--attach", "--cidfile", "--log-driver", "-t", "--tty"}


@dataclass(frozen=True)
class ExtraArgs:
    """Parsed extra parameters: the tokens as given (for display) and the SDK kwargs."""

    tokens: tuple[str, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_extra_args(texts: list[str] | tuple[str, ...]) -> ExtraArgs:
    """Each text is shell-split; raise UsageError naming the first parameter not supported."""
    tokens: list[str] = []
    for text in texts:
        try:
            tokens.extend(shlex.split(text))
        except ValueError as exc:
            raise UsageError(f"--docker-args {text!r}: {exc}") from None
    kwargs: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, has_eq, inline = token.partition("=")
        name = ALIASES.get(name, name)
        if name in OWN_OPTIONS:
            raise UsageError(f"--docker-args: use provisioner run's own {OWN_OPTIONS[name]} "
                             f"option instead of {token!r}")
        if name in MANAGED:
            raise UsageError(f"--docker-args: {name} is managed by provisioner run and cannot be set")
        if name not in SUPPORTED:
            known = ", ".join(sorted(SUPPORTED))
            raise UsageError(f"--docker-args: unsupported parameter {token!r} (supported: {known})")
        takes_value, apply = SUPPORTED[name]
        if takes_value:
            if has_eq:
                value = inline
            elif i + 1 < len(tokens):
                i += 1
                value = tokens[i]
            else:
                raise UsageError(f"--docker-args: {name} needs a value")
        else:
            if has_eq:
                raise UsageError(f"--docker-args: {name} takes no value")
            value = ""
        try:
            apply(kwargs, value)
        except UsageError as exc:
            raise UsageError(f"--docker-args {name}: {exc}") from None
        i += 1
    return ExtraArgs(tuple(tokens), kwargs)
