"""The `docker` Cloud adapter: an instance is a container on the local engine (docs/contracts.md).

- Its entrypoint is the rendered user-data (the same script as on EC2 but for the secret source),
  copied to /var/lib/provisioner/user-data before the start, as cloud-init would.
- `--cpus` / `--memory` follow the instance type, clamped to what the host has; the clamp is
  recorded in the labels (`provisioner:clamped`). The limits are also in the instance's
  environment (PROVISIONER_CPUS, PROVISIONER_MEMORY) because the builds it starts are siblings on
  the host engine, not children: `provisioner run` caps its job container at them.
- It holds the Docker socket, so its builds run on the host's engine. That is the on-premises
  trade-off of this cloud: an instance (and the Jenkins build on it) is as trusted as the host's
  docker group. Build containers themselves never get the socket.
- It uses the host's network (the agent must reach Jenkins and the daemon, which may listen on
  127.0.0.1) and its hostname is the instance id, which is how its builds' containers
  (owner label `<instance id>:<pid>`) are found again; `terminate` removes those too.
- Labels are the provisioner:* tags; describe finds instances by the owner label. A container
  that exited is a terminated instance: describe leaves it out, and removes it once it has been
  gone for `gc_after_s` (its launcher reads the exit code and logs first). A remote run's instance
  (it has a `provisioner:run-id` label) is kept for `retention_s` instead: `provisioner ps` and
  `logs` read its state, output and usage record from it after it ended.
- The instance id derives from the launch's client token, so a repeated launch returns the same
  instance (the idempotency EC2's ClientToken gives).
- A launch is three calls (create, copy the user-data, start). A launcher killed between them leaves
  a `created` container that would never boot: each container names its launcher process
  (`provisioner:launcher`, host:pid:start-time), and describe removes a `created` one whose launcher
  is gone (or that this process is no longer launching), so the daemon launches it again at once
  with the same token instead of waiting out the boot timeout and blocking a healthy offer.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import tarfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from provisioner import killpoints
from provisioner.catalog.model import SPOT, Offer
from provisioner.clouds.base import (OWNER_TAG, TAG_PREFIX, BlockedOffers, CloudDefaults, CloudError, Instance,
                                     LaunchSpec)

log = logging.getLogger(__name__)

KIND_LABEL, KIND = "provisioner:kind", "instance"
LAUNCHER_LABEL = "provisioner:launcher"          # host:pid:start-ticks of the process that launched it
STOP_GRACE_S = 10                                # SIGTERM to SIGKILL when terminating a running instance
FOREIGN_GRACE_S = 300.0                          # a half-made container another host launched: then gone
USER_DATA_PATH = "/var/lib/provisioner/user-data"
GIB = 1024 ** 3
STATES = {"created": "pending", "running": "running", "restarting": "running", "paused": "running",
          "removing": "shutting-down"}           # exited / dead: terminated


@dataclass(frozen=True)
class DockerSettings:
    instance_image: str = "provisioner-agent:latest"
    host_cpus: float | None = None               # None: what the engine reports
    host_mem_gib: float | None = None
    network: str = "host"                        # the agent reaches Jenkins / the daemon on this host
    socket: str = "/var/run/docker.sock"
    imds_url: str = ""                           # no instance metadata here; tests serve a stub
    gc_after_s: float = 60.0
    retention_s: float = 86400.0                 # finished remote runs' containers (logs, record)
    environment: Mapping[str, str] | None = None  # extra variables for instances (proxies, tuning)

    @classmethod
    def from_config(cls, section: Any) -> "DockerSettings":
        """From `config.docker` (config_tree.DockerSection); what it leaves None keeps the default here."""
        known = {k: getattr(section, k) for k in cls.__dataclass_fields__ if getattr(section, k, None) is not None}
        return cls(**known)


def instance_id_for(client_token: str) -> str:
    """A stable id per client token, shaped like an EC2 id (and a valid container/host name)."""
    return "i-" + hashlib.sha256(client_token.encode()).hexdigest()[:17]


def clamp(offer: Offer, host_cpus: float, host_mem_gib: float) -> tuple[float, float, str]:
    """(cpus, memory GiB, note): the instance type's size within the host's; the note says what
    was cut ('' when nothing was)."""
    cpus, mem = float(offer.vcpu), float(offer.memory_gib)
    notes = []
    if cpus > host_cpus:
        notes.append(f"cpus {cpus:g}->{host_cpus:g}")
        cpus = host_cpus
    if mem > host_mem_gib:
        notes.append(f"memory-gib {mem:g}->{host_mem_gib:g}")
        mem = host_mem_gib
    return cpus, mem, ", ".join(notes)


def container_params(spec: LaunchSpec, offer: Offer, settings: DockerSettings, *, host_cpus: float,
                     host_mem_gib: float, instance_id: str, launched_at: float) -> dict[str, Any]:
    """The `containers.create` keyword arguments of one instance (pure; see the golden test)."""
    cpus, mem_gib, clamped = clamp(offer, host_cpus, host_mem_gib)
    mem_bytes = int(mem_gib * GIB)
    labels = {k: str(v) for k, v in spec.tags.items()}
    labels.update({
        KIND_LABEL: KIND, "provisioner:instance-type": offer.instance_type,
        "provisioner:market": offer.market, "provisioner:region": offer.region,
        "provisioner:az": offer.az or "", "provisioner:price": f"{offer.price:g}",
        "provisioner:cpus": f"{cpus:g}", "provisioner:memory-gib": f"{mem_gib:g}",
        "provisioner:clamped": clamped, "provisioner:launched-at": f"{launched_at:.3f}"})
    environment = {**(settings.environment or {}), **spec.secret_env, "PROVISIONER_CLOUD": "docker",
                   "PROVISIONER_INSTANCE_ID": instance_id, "PROVISIONER_CPUS": f"{cpus:g}", "PROVISIONER_MEMORY": str(mem_bytes),
                   "PROVISIONER_IMDS_URL": settings.imds_url}
    return {
        "image": settings.instance_image, "name": instance_id, "hostname": instance_id,
        "entrypoint": ["/bin/sh", USER_DATA_PATH], "command": [], "labels": labels,
        "environment": environment, "network_mode": settings.network,
        "nano_cpus": int(round(cpus * 1e9)), "mem_limit": mem_bytes, "memswap_limit": mem_bytes,
        "init": True,                     # PID 1 passes SIGTERM on to the bootstrap
        "volumes": {settings.socket: {"bind": "/var/run/docker.sock", "mode": "rw"}},
        "detach": True, "stdin_open": False, "tty": False,
    }


def _start_ticks(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (/proc, field 22): with the pid it names one
    process, whatever pid reuse does. None when the process is gone (or there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def launcher_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or ''}"


def launcher_alive(who: str, launched_at: float, now: float) -> bool:
    """Is the process named by a `provisioner:launcher` label still running? One on another host
    (a shared engine) counts as alive for FOREIGN_GRACE_S after the launch."""
    host, _, rest = who.partition(":")
    pid, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return now - launched_at < FOREIGN_GRACE_S
    if ticks:
        return _start_ticks(int(pid)) == ticks
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _user_data_tar(user_data: str) -> bytes:
    buf = io.BytesIO()
    data = user_data.encode()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in ("var", "var/lib", "var/lib/provisioner"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo(USER_DATA_PATH.lstrip("/"))
        info.size, info.mode = len(data), 0o700
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class DockerCloud(CloudDefaults):
    """The Cloud protocol on the local Docker engine (the secret bundle travels in the container's
    environment: CloudDefaults.secret_env)."""

    name = "docker"
    on_this_host = True          # containers on this host: its folders and its architecture
    signals_jobs = True          # `run --remote` signals the container; its exit is reported
    notional_prices = True       # the catalog's EC2 prices, for comparison: nothing is charged

    @classmethod
    def from_config(cls, config: Any, blocked: BlockedOffers, *, purpose: str = "daemon") -> "DockerCloud":
        return cls(settings=DockerSettings.from_config(config.docker), blocked=blocked)

    @classmethod
    def runs(cls, config: Any) -> Any:
        from provisioner.remote.runs import DockerRuns
        return DockerRuns(cls().client)

    def follower(self, instance: Instance, events: Any, tag: object, log_group: str) -> Any:
        """The container's output."""
        from provisioner.remote.follow import DockerFollower
        return DockerFollower(self.client, instance.id, events, tag).start()

    @classmethod
    def existence_problems(cls, config: Any, note: Callable[[str], None]) -> list[tuple[str, str]]:
        """The instance image, with java and the bootstrap (daemon/deepcheck.py)."""
        from provisioner.daemon import deepcheck
        return deepcheck.docker_problems(config.docker.instance_image)

    def __init__(self, client: Any = None, settings: DockerSettings | None = None, *,
                 blocked: BlockedOffers | None = None, clock: Callable[[], float] = time.time):
        self.settings = settings or DockerSettings()
        self.blocked = blocked if blocked is not None else BlockedOffers()
        self._client = client
        self._clock = clock
        self._host: tuple[float, float] | None = None
        self._me = launcher_id()
        self._creating: set[str] = set()           # instance ids this process is launching now
        self._lock = threading.Lock()
        self._exited: dict[str, Any] = {}          # agent containers describe saw exited, not yet reported
        self._reported: set[str] = set()           # ... and those `ended` has reported
        self._watching = False                     # a daemon reads `ended`: keep exited ones until then

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker
            try:
                self._client = docker.from_env()
            except Exception as exc:
                raise CloudError(f"Docker engine not reachable: {exc}", code="EngineUnreachable",
                                 kind="config") from None
        return self._client

    def host_limits(self) -> tuple[float, float]:
        """(vCPUs, memory GiB) of the host: the settings, else what the engine reports."""
        if self._host is None:
            cpus, mem = self.settings.host_cpus, self.settings.host_mem_gib
            if cpus is None or mem is None:
                info = self._call(self.client.info)
                cpus = cpus if cpus is not None else float(info.get("NCPU") or 1)
                mem = mem if mem is not None else round(float(info.get("MemTotal") or GIB) / GIB, 2)
            self._host = (float(cpus), float(mem))
        return self._host

    # ---- launch ------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> Instance:
        """Start the first candidate that is not blocked (the local engine has no capacity errors)."""
        if not spec.tags.get(OWNER_TAG):
            raise CloudError(f"the launch has no {OWNER_TAG} tag: describe and cleanup could never find it",
                             code="Config", kind="config")
        blocked = self.blocked.current()
        offers = [o for o in spec.candidates if o.key not in blocked and (not spec.spot_only or o.market == SPOT)]
        if not offers:
            raise CloudError("every candidate offer is blocked after recent launch failures: "
                             + ", ".join("/".join(o.key) for o in spec.candidates), code="AllOffersBlocked",
                             kind="capacity", offers=tuple(o.key for o in spec.candidates))
        offer = offers[0]
        instance_id = instance_id_for(spec.client_token)
        with self._lock:
            self._creating.add(instance_id)
        try:
            return self._launch(spec, offer, instance_id)
        finally:
            with self._lock:
                self._creating.discard(instance_id)

    def _launch(self, spec: LaunchSpec, offer: Offer, instance_id: str) -> Instance:
        existing = self._get(instance_id)
        if existing is not None and existing.status != "created":
            return self._instance(existing)        # the same token: the launch already happened
        cpus, mem = self.host_limits()
        params = container_params(spec, offer, self.settings, host_cpus=cpus, host_mem_gib=mem,
                                  instance_id=instance_id, launched_at=self._clock())
        params["labels"][LAUNCHER_LABEL] = self._me
        # a container the same token created but never started (its launcher died): finish it
        container = existing if existing is not None else self._create(params)
        try:
            killpoints.reached("docker.created")
            self._call(container.put_archive, "/", _user_data_tar(spec.user_data))
            killpoints.reached("docker.copied")
            self._call(container.start)
        except BaseException:                      # never leave a container that cannot boot
            self._remove(container)
            raise
        log.info("launched %s (%s %s) image %s cpus %s memory %s GiB%s", instance_id, offer.instance_type,
                 offer.market, self.settings.instance_image, params["labels"]["provisioner:cpus"],
                 params["labels"]["provisioner:memory-gib"],
                 f" (clamped: {params['labels']['provisioner:clamped']})" if params["labels"]["provisioner:clamped"] else "")
        container.reload()
        return self._instance(container)

    def _create(self, params: dict) -> Any:
        import docker.errors
        try:
            return self.client.containers.create(**params)
        except docker.errors.ImageNotFound:
            raise CloudError(f"the instance image {params['image']} is not on this engine: build it with "
                             "`python -m provisioner.clouds.docker_image` (or set docker.instance_image)",
                             code="ImageNotFound", kind="config") from None
        except docker.errors.APIError as exc:
            if exc.status_code == 409:             # a concurrent launch with the same token won
                found = self._get(params["name"])
                if found is not None:
                    return found
            raise CloudError(f"cannot create the instance container: {_reason(exc)}", code="DockerError") from None

    # ---- describe and terminate --------------------------------------------------------------

    def describe(self, owner: str) -> list[Instance]:
        """Instances (running or starting) carrying this owner label; exited ones past the grace
        are removed on the way."""
        found = self._call(self.client.containers.list, all=True, ignore_removed=True,   # one gone meanwhile
                           filters={"label": [f"{OWNER_TAG}={owner}", f"{KIND_LABEL}={KIND}"]})
        out = []
        exited: dict[str, Any] = {}
        for container in found:
            if container.status == "created" and self._abandoned(container):
                log.warning("removing half-made instance %s: its launcher %s died between create and "
                            "start", container.name, (container.labels or {}).get(LAUNCHER_LABEL, "?"))
                self._remove_with_builds(container.name)
            elif container.status in STATES:
                out.append(self._instance(container))
            elif self._watching and container.name not in self._reported and self._agent(container):
                exited[container.name] = container   # `ended` reports it first (bootfail.py)
            elif self._exited_for(container) >= self.keep_for(container):
                self._remove_with_builds(container.name)
        with self._lock:
            self._exited = exited
            self._reported &= {c.name for c in found}
        return out

    def ended(self, owner: str) -> list[Any]:
        """Agent instances that exited since the last call (as seen by the last `describe`), each
        with its exit code and the last lines of its log: the daemon tells a dead agent within one
        tick. From the first call on, describe keeps an exited agent container until it has been
        reported here (the daemon then terminates it, or the usual garbage collection removes it)."""
        from provisioner.daemon.bootfail import BOOT_CONFIG_TAG, LOG_TAIL_LINES, Ended
        self._watching = True
        with self._lock:
            exited, self._exited = self._exited, {}
        out = []
        for name, container in exited.items():
            labels = container.labels or {}
            if labels.get(OWNER_TAG) != owner:
                continue
            state = container.attrs.get("State", {}) or {}
            try:
                raw = container.logs(tail=LOG_TAIL_LINES)
                tail = tuple(raw.decode("utf-8", "replace").splitlines()[-LOG_TAIL_LINES:])
            except Exception as exc:               # removed meanwhile: the exit code still tells
                tail = (f"(log not readable: {_reason(exc)})",)
            code = state.get("ExitCode")
            out.append(Ended(instance=name, node=labels.get("provisioner:node"),
                             image=str(container.attrs.get("Image") or ""), config=labels.get(BOOT_CONFIG_TAG, ""),
                             code="agent-oom-killed" if state.get("OOMKilled") else "agent-exited",
                             exit_code=int(code) if isinstance(code, int) else None, log_tail=tail,
                             offer=(labels.get("provisioner:instance-type", ""), labels.get("provisioner:region", ""),
                                    labels.get("provisioner:market", ""))))
            self._reported.add(name)
        return out

    def image_identity(self, offer: Offer | None = None) -> str:
        """The id of the instance image the next launch boots ('' when it is not on this engine):
        a rebuilt tag has a new id, which is what lifts a boot-failure pause."""
        import docker.errors
        try:
            return str(self.client.images.get(self.settings.instance_image).id)
        except docker.errors.ImageNotFound:
            return ""
        except docker.errors.DockerException as exc:
            raise CloudError(f"Docker engine error: {_reason(exc)}", code="DockerError") from None

    @staticmethod
    def _agent(container: Any) -> bool:
        return not (container.labels or {}).get("provisioner:run-id")

    def keep_for(self, container: Any) -> float:
        """How long an exited instance container stays (a remote run's: its retention)."""
        labels = container.labels or {}
        return self.settings.retention_s if labels.get("provisioner:run-id") else self.settings.gc_after_s

    def terminate(self, ids: list[str]) -> None:
        """Remove these instance containers and the build containers they started; gone is fine."""
        for instance_id in dict.fromkeys(ids):
            self._remove_with_builds(instance_id)

    def _remove_with_builds(self, instance_id: str) -> None:
        try:
            runs = self.client.containers.list(all=True, ignore_removed=True,
                                               filters={"label": "provisioner:kind=run"})
        except Exception as exc:
            log.warning("cannot list build containers of %s: %s", instance_id, exc)
            runs = []
        for run in runs:
            if (run.labels or {}).get("provisioner:owner", "").startswith(instance_id + ":"):
                self._remove(run)
        container = self._get(instance_id)
        if container is not None:
            self._stop(container)
            self._remove(container)
            log.info("terminated %s", instance_id)

    def _stop(self, container: Any) -> None:
        """SIGTERM first, as EC2's shutdown does: the bootstrap stops the agent and the watcher,
        which posts the build's usage record (agent/buildusage.py); SIGKILL after STOP_GRACE_S."""
        try:
            if container.status in ("running", "restarting"):
                container.stop(timeout=STOP_GRACE_S)
        except Exception as exc:                    # gone or stuck: the forced removal follows
            log.debug("stop of %s failed: %s", getattr(container, "name", "?"), exc)

    def recycle(self, instance_id: str, bundle_json: str, state_dir: str = "/run/provisioner") -> None:
        """Agent reuse: hand a running instance its next build's bundle and stop its agent; its
        bootstrap then cleans up after the last build and starts the agent again (agent/recycle.py)."""
        container = self._get(instance_id)
        if container is None:
            raise CloudError(f"instance {instance_id} is gone", code="NotFound", kind="not-found")
        buf = io.BytesIO()
        data = bundle_json.encode()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("next-bundle")
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
        self._call(container.put_archive, state_dir, buf.getvalue())
        # the old agent must be gone before its node is offered again, or Jenkins could hand the next
        # build to the old connection before the workspace is wiped: wait for it (KILL after 10 s)
        stop = (f'pid="$(cat {state_dir}/agent.pid)"; kill -TERM "$pid" || exit 1; i=0; '
                f'while kill -0 "$pid" 2>/dev/null; do i=$((i+1)); [ "$i" -lt 100 ] || kill -KILL "$pid"; '
                f'[ "$i" -lt 150 ] || exit 1; sleep 0.1; done')
        result = self._call(container.exec_run, ["sh", "-c", stop])
        if getattr(result, "exit_code", 0):
            raise CloudError(f"cannot stop the agent of {instance_id} for its next build", code="ExecFailed")

    def image_fingerprint(self) -> str:
        """The instance image's id: a warm spare made from another is rebuilt (daemon/pools.py)."""
        return str(self._call(self.client.images.get, self.settings.instance_image).id)

    # ---- what the launcher of a job-mode instance reads --------------------------------------

    def container(self, instance_id: str) -> Any | None:
        return self._get(instance_id)

    # ---- helpers -----------------------------------------------------------------------------

    def _get(self, name: str) -> Any | None:
        import docker.errors
        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise CloudError(f"Docker engine error: {_reason(exc)}", code="DockerError") from None
        labels = container.labels or {}
        return container if labels.get(KIND_LABEL) == KIND else None

    def _remove(self, container: Any) -> None:
        import docker.errors
        for attempt in range(3):
            try:
                container.remove(force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:   # "removal already in progress"
                if attempt == 2:
                    log.warning("could not remove %s: %s", container.name, _reason(exc))
                time.sleep(0.1 * (attempt + 1))

    def _abandoned(self, container: Any) -> bool:
        """A `created` container no launch is working on any more."""
        labels = container.labels or {}
        who = labels.get(LAUNCHER_LABEL, "")
        if who == self._me:
            with self._lock:
                return container.name not in self._creating
        try:
            launched = float(labels.get("provisioner:launched-at", "0"))
        except ValueError:
            launched = 0.0
        return not launcher_alive(who, launched, self._clock())

    def _exited_for(self, container: Any) -> float:
        from provisioner.runner.sampler import parse_engine_time
        finished = parse_engine_time(container.attrs.get("State", {}).get("FinishedAt"))
        return self._clock() - finished if finished else float("inf")

    def _instance(self, container: Any) -> Instance:
        labels = container.labels or {}
        try:
            launched = float(labels.get("provisioner:launched-at", "0"))
        except ValueError:
            launched = 0.0
        return Instance(id=container.name, instance_type=labels.get("provisioner:instance-type", ""),
                        market=labels.get("provisioner:market", ""), region=labels.get("provisioner:region", ""),
                        state=STATES.get(container.status, "terminated"), launched_at=launched,
                        tags={k: v for k, v in labels.items() if k.startswith(TAG_PREFIX)},
                        az=labels.get("provisioner:az") or None, address=container.name)

    def _call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        import docker.errors
        import requests
        try:
            return fn(*args, **kwargs)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise CloudError(f"Docker engine error: {_reason(exc)}", code="DockerError") from None


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)
