"""The Engine API's container-create request from docker SDK `containers.create` keyword arguments.

`ContainerSpec.create_kwargs` speaks the SDK's language (its golden test, and the SDK fallback,
use it as is). The unix-socket engine sends the same JSON the SDK would: this is the SDK's own
translation (docker/models/containers.py `_create_container_args`, docker/types/containers.py
`ContainerConfig` and `HostConfig`) for the keyword arguments `provisioner run` can produce, checked
against the SDK in tests/runner/test_engine_create.py. Pure: no I/O but reading the docker client
config's proxy section (`proxy_environment`), which the SDK also injects into every container.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any, Mapping

BYTE_UNITS = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}

# containers.create keyword argument -> the Engine API's container config key
CONFIG_KEYS = {"hostname": "Hostname", "working_dir": "WorkingDir", "labels": "Labels",
               "stop_signal": "StopSignal", "image": "Image"}
# keyword arguments copied into HostConfig when truthy / when not None (the SDK's own conditions)
HOST_IF_SET = {"ipc_mode": "IpcMode", "privileged": "Privileged", "cap_add": "CapAdd",
               "cap_drop": "CapDrop", "cpu_shares": "CpuShares", "cpuset_cpus": "CpusetCpus",
               "pids_limit": "PidsLimit", "nano_cpus": "NanoCpus", "tmpfs": "Tmpfs"}
HOST_IF_NOT_NONE = {"read_only": "ReadonlyRootfs", "security_opt": "SecurityOpt", "init": "Init"}
OTHER = {"command", "name", "environment", "stdin_open", "tty", "user", "entrypoint", "platform",
         "volumes", "network_mode", "mem_limit", "memswap_limit", "mem_reservation", "shm_size",
         "devices", "group_add", "sysctls", "extra_hosts", "ulimits", "device_requests"}


class CreateArgumentError(ValueError):
    """A value the SDK would refuse too (e.g. `--shm-size lots`): the create fails, exit 125."""


def parse_bytes(value: Any) -> int | float:
    """docker SDK `utils.parse_bytes`: 512, '512', '64m', '1g', '1gb' (powers of 1024)."""
    if isinstance(value, (int, float)):
        return value
    s = str(value)
    if not s:
        return 0
    if s[-2:-1].isalpha() and s[-1] in "bB":
        s = s[:-1]
    suffix = s[-1].lower()
    digits = s
    if suffix.isdigit():
        suffix = "b"
    else:
        digits = s[:-1]
    if suffix not in BYTE_UNITS:
        raise CreateArgumentError(f"The specified value for memory ({s}) should specify the units. "
                                  "The postfix should be one of the `b` `k` `m` `g` characters")
    try:
        return int(float(digits) * BYTE_UNITS[suffix])
    except ValueError:
        raise CreateArgumentError(f"Failed converting the string value for memory ({digits}) "
                                  "to an integer.") from None


def _devices(devices: list) -> list[dict]:
    out = []
    for device in devices:
        if isinstance(device, dict):
            out.append(device)
            continue
        parts = str(device).split(":")
        out.append({"PathOnHost": parts[0], "PathInContainer": parts[1] if len(parts) > 1 else parts[0],
                    "CgroupPermissions": parts[2] if len(parts) > 2 else "rwm"})
    return out


def _ulimit(u: Mapping[str, Any]) -> dict:
    return {"Name": u.get("name", u.get("Name")), "Soft": u.get("soft", u.get("Soft")),
            "Hard": u.get("hard", u.get("Hard"))}


def _device_request(r: Mapping[str, Any]) -> dict:
    def get(key: str, default: Any) -> Any:
        value = r.get(key, r.get(key[0].upper() + key[1:]))
        return default if value is None else value
    ids = r.get("device_ids", r.get("DeviceIDs"))
    return {"Driver": get("driver", ""), "Count": get("count", 0),
            "DeviceIDs": [] if ids is None else ids, "Capabilities": get("capabilities", []),
            "Options": get("options", {})}


def _volume_target(bind: str) -> str:
    """The container path of a `SRC:DST[:MODE]` bind (docker SDK `_host_volume_from_bind`)."""
    bits = bind.split(":", 1)
    if len(bits) == 1 or bits[1] in ("ro", "rw"):
        return bits[0]
    if bits[1].endswith((":ro", ":rw")):
        return bits[1][:-3]
    return bits[1]


def host_config(kw: Mapping[str, Any]) -> dict[str, Any]:
    host: dict[str, Any] = {}
    if kw.get("mem_limit") is not None:
        host["Memory"] = parse_bytes(kw["mem_limit"])
    if kw.get("memswap_limit") is not None:
        host["MemorySwap"] = parse_bytes(kw["memswap_limit"])
    if kw.get("mem_reservation"):
        host["MemoryReservation"] = parse_bytes(kw["mem_reservation"])
    if kw.get("shm_size") is not None:
        host["ShmSize"] = parse_bytes(kw["shm_size"])
    for key, name in HOST_IF_SET.items():
        if kw.get(key):
            host[name] = kw[key]
    for key, name in HOST_IF_NOT_NONE.items():
        if kw.get(key) is not None:
            host[name] = kw[key]
    host["NetworkMode"] = kw.get("network_mode") or "default"
    if kw.get("devices"):
        host["Devices"] = _devices(kw["devices"])
    if kw.get("group_add"):
        host["GroupAdd"] = [str(g) for g in kw["group_add"]]
    if kw.get("sysctls"):
        host["Sysctls"] = {k: str(v) for k, v in kw["sysctls"].items()}
    if kw.get("volumes"):
        host["Binds"] = list(kw["volumes"])
    hosts = kw.get("extra_hosts")
    if hosts is not None:
        host["ExtraHosts"] = [f"{k}:{v}" for k, v in sorted(hosts.items())] if isinstance(hosts, dict) else hosts
    if kw.get("ulimits") is not None:
        host["Ulimits"] = [_ulimit(u) for u in kw["ulimits"]]
    if kw.get("device_requests") is not None:
        host["DeviceRequests"] = [_device_request(r) for r in kw["device_requests"]]
    return host


def create_request(kwargs: Mapping[str, Any], proxy_env: Mapping[str, str] | None = None
                   ) -> tuple[dict[str, str], dict[str, Any]]:
    """(query, body) of `POST /containers/create` for `containers.create(**kwargs)`."""
    unknown = set(kwargs) - set(CONFIG_KEYS) - set(HOST_IF_SET) - set(HOST_IF_NOT_NONE) - OTHER
    if unknown:
        raise TypeError(f"create_request does not translate {sorted(unknown)}")
    kw = dict(kwargs)
    command, entrypoint = kw.get("command"), kw.get("entrypoint")
    env = kw.get("environment")
    if isinstance(env, dict):
        env = [k if v is None else f"{k}={v}" for k, v in env.items()]
    if proxy_env:  # prepended: the job's own variables win
        env = [f"{k}={v}" for k, v in proxy_env.items()] + list(env or [])
    stdin_open = bool(kw.get("stdin_open"))
    body: dict[str, Any] = {
        "User": str(kw["user"]) if kw.get("user") is not None else None,
        "Tty": bool(kw.get("tty")), "OpenStdin": stdin_open, "StdinOnce": stdin_open,
        "AttachStdin": stdin_open, "AttachStdout": True, "AttachStderr": True,
        "Env": env or None,
        "Cmd": shlex.split(command) if isinstance(command, str) else command,
        "Entrypoint": shlex.split(entrypoint) if isinstance(entrypoint, str) else entrypoint,
        "Volumes": {_volume_target(v): {} for v in kw["volumes"]} if kw.get("volumes") else None,
        "NetworkDisabled": False, "HostConfig": host_config(kw)}
    for key, name in CONFIG_KEYS.items():
        body[name] = kw.get(key)
    query = {"name": kw["name"]} if kw.get("name") else {}
    if kw.get("platform"):
        query["platform"] = kw["platform"]
    return query, {k: v for k, v in body.items() if v is not None}


def proxy_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The proxy variables docker's client config asks for in every container (`proxies.default`
    of the first of $DOCKER_CONFIG/config.json, ~/.docker/config.json, ~/.dockercfg that exists),
    as the SDK and the docker CLI add them."""
    home = os.path.expanduser("~")
    paths = [os.path.join(environ["DOCKER_CONFIG"], "config.json")] if environ.get("DOCKER_CONFIG") else []
    paths += [os.path.join(home, ".docker", "config.json"), os.path.join(home, ".dockercfg")]
    path = next((p for p in paths if os.path.exists(p)), None)  # the SDK's find_config_file
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            config = json.load(f)
        proxies = (config.get("proxies") or {}).get("default") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    env: dict[str, str] = {}
    for key, name in (("httpProxy", "http_proxy"), ("httpsProxy", "https_proxy"),
                      ("ftpProxy", "ftp_proxy"), ("noProxy", "no_proxy")):
        if proxies.get(key):
            env[name] = env[name.upper()] = proxies[key]
    return env
