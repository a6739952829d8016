"""A fake Cloud whose instances are the Jenkins emulator's stand-in agent processes, registered as
the `process` cloud (`register_process_cloud`, called by tests/conftest.py and run_daemon.py): a
config with `cloud: process` and a `process:` section builds it through clouds/registry.py, as the
product builds docker and ec2.

launch = start `java -jar agent.jar -url ... -secret ... -name NODE -webSocket` with the secret from
the launch's secret bundle; terminate = kill it. State lives in a folder (one JSON file per
instance), so a daemon process that is SIGKILLed and restarted sees the instances its predecessor
launched, as it would on EC2. The instance id derives from the client token (EC2's idempotency).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from provisioner import killpoints
from provisioner.catalog.model import Catalog
from provisioner.clouds import registry
from provisioner.clouds.base import OWNER_TAG, BlockedOffers, CloudDefaults, CloudError, Instance, LaunchSpec
from tests.factories import offer


def small_catalog() -> Catalog:
    """Five on-demand offers: plans in microseconds, and c5.large is the cheapest 2-vCPU 4-GiB one."""
    return Catalog([offer("m5.large", vcpu=2, mem=8, price=0.096), offer("c5.large", vcpu=2, mem=4, price=0.085),
                    offer("c5.xlarge", vcpu=4, mem=8, price=0.17), offer("m5.xlarge", vcpu=4, mem=16, price=0.192),
                    offer("r5.large", vcpu=2, mem=16, price=0.126)], "test", "test")


STARTED: list[subprocess.Popen] = []     # every agent process this test process started


def reap_started() -> None:
    """Kill what a test's clouds started and nothing terminated (a failed test, a racing terminate)."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            _kill(proc.pid)


def _optional(*types: type):
    return lambda v: None if v is None or isinstance(v, types) else f"must be {' or '.join(t.__name__ for t in types)}"


# The `process:` config section (yamlfile.check_schema's shape) and its defaults.
PROCESS_SCHEMA = {"folder": _optional(str), "agent_jar": _optional(str), "launch_delay_s": _optional(int, float),
                  "fail_types": _optional(list), "start_agents": _optional(bool), "agent_env": _optional(dict)}
PROCESS_DEFAULTS = {"folder": None, "agent_jar": None, "launch_delay_s": 0.0, "fail_types": [], "start_agents": True,
                    "agent_env": {}}


def register_process_cloud() -> None:
    """`cloud: process` in a config builds a ProcessCloud (the registry's line a new cloud adds)."""
    registry.register("process", "tests.daemon.fakes:ProcessCloud", schema=PROCESS_SCHEMA, defaults=PROCESS_DEFAULTS)


def process_cloud_yaml(folder: Path, agent_jar: Path, **settings) -> str:
    """The config lines that select the process cloud (prepend them to a daemon config's text)."""
    lines = ["cloud: process", "process:", f"  folder: {json.dumps(str(folder))}",
             f"  agent_jar: {json.dumps(str(agent_jar))}"]
    return "\n".join(lines + [f"  {k}: {json.dumps(v)}" for k, v in settings.items()]) + "\n"


class ProcessCloud(CloudDefaults):
    name = "process"         # the secret bundle travels in secret_env (CloudDefaults), as on docker

    @classmethod
    def from_config(cls, config, blocked: BlockedOffers, *, purpose: str = "daemon") -> "ProcessCloud":
        s = config.cloud_section("process")
        if not s.get("folder") or not s.get("agent_jar"):
            raise CloudError("the process cloud needs process.folder and process.agent_jar", code="Config",
                             kind="config")
        return cls(Path(s["folder"]), config.jenkins.url, Path(s["agent_jar"]), blocked=blocked,
                   launch_delay_s=float(s.get("launch_delay_s") or 0), fail_types=tuple(s.get("fail_types") or ()),
                   start_agents=bool(s.get("start_agents", True)), agent_env=dict(s.get("agent_env") or {}))

    def __init__(self, folder: Path, jenkins_url: str, agent_jar: Path, *, blocked: BlockedOffers | None = None,
                 launch_delay_s: float = 0.0, fail_types: tuple[str, ...] = (), start_agents: bool = True,
                 agent_env: dict | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jenkins_url, self.agent_jar = jenkins_url, Path(agent_jar)
        self.blocked = blocked or BlockedOffers()
        self.launch_delay_s = launch_delay_s
        self.fail_types = fail_types
        self.start_agents = start_agents
        self.agent_env = agent_env or {}
        self.launches = 0
        self._lock = threading.Lock()

    def _path(self, iid: str) -> Path:
        return self.folder / f"{iid}.json"

    def launch(self, spec: LaunchSpec) -> Instance:
        offer = next((o for o in spec.candidates if o.key not in self.blocked.current()), None)
        if offer is None:
            raise CloudError("all blocked", code="AllOffersBlocked", kind="capacity")
        if offer.instance_type in self.fail_types:
            self.blocked.block(offer.key)
            raise CloudError("no capacity", code="InsufficientInstanceCapacity", kind="capacity",
                             offers=(offer.key,))
        iid = "i-" + hashlib.sha256(spec.client_token.encode()).hexdigest()[:12]
        with self._lock:
            if self._path(iid).exists():
                return self._instance(json.loads(self._path(iid).read_text()))
            self.launches += 1
        bundle = json.loads(spec.secret_env["PROVISIONER_SECRETS"])
        node = spec.tags["provisioner:node"]
        rec = {"id": iid, "type": offer.instance_type, "market": offer.market, "region": offer.region,
               "price": offer.price, "launched": time.time(), "tags": spec.tags, "pid": None,
               "token": spec.client_token, "node": node, "bundle": bundle,   # a test fake may keep it
               "launcher": os.getpid()}
        self._write(rec)                                  # before the process: a kill leaves a record
        with open(self.folder / "launches.log", "a") as log:
            log.write(json.dumps({"id": iid, "node": node, "at": rec["launched"]}) + "\n")
        killpoints.reached("process.created")             # as docker's create and start
        if self.start_agents:
            rec = self.start_agent(iid)
        if self.launch_delay_s:      # the API call returns late: a crash here leaves an unacknowledged instance
            time.sleep(self.launch_delay_s)
        return self._instance(rec)

    def start_agent(self, iid: str) -> dict:
        """Boot the instance: its agent connects with the secret from the bundle."""
        rec = json.loads(self._path(iid).read_text())
        bundle = rec["bundle"]
        work = self.folder / "work" / iid
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.agent_env, "PROVISIONER_REPORT_URL": bundle.get("report_url", ""),
               "PROVISIONER_REPORT_TOKEN": bundle.get("report_token", ""),
               "PROVISIONER_INSTANCE_TYPE": rec["type"], "PROVISIONER_MARKET": rec["market"],
               "PROVISIONER_REGION": rec["region"], "PROVISIONER_PRICE_USD_PER_HOUR": str(rec["price"])}
        with open(work / "agent.log", "w") as out:
            proc = subprocess.Popen(
                ["java", "-jar", str(self.agent_jar), "-url", self.jenkins_url, "-secret",
                 bundle["agent_secret"], "-name", rec["node"], "-webSocket", "-workDir", str(work)],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        STARTED.append(proc)
        rec["pid"] = proc.pid
        self._write(rec)
        return rec

    def restart_agent(self, iid: str) -> None:
        """The agent process restarts (the machine rebooted): on reconnecting it lists no builds, so
        the controller loses the one it ran."""
        rec = json.loads(self._path(iid).read_text())
        if rec.get("pid"):
            _kill(rec["pid"])
        self.start_agent(iid)

    def _write(self, rec: dict) -> None:
        """Atomically, as EC2 keeps its records: a daemon SIGKILLed in the middle of a plain write
        left an empty file, and describe then missed a running instance (its busy node was retired
        as interrupted and its build failed: CI saw it once in the kill test)."""
        tmp = self.folder / f".{rec['id']}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, self._path(rec["id"]))

    def launch_log(self) -> list[dict]:
        path = self.folder / "launches.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    def by_node(self, node: str) -> dict | None:
        return next((r for r in self.records() if r["node"] == node), None)

    def _instance(self, rec: dict) -> Instance:
        state = "running" if rec.get("pid") is None or _alive(rec["pid"]) else "terminated"
        return Instance(rec["id"], rec["type"], rec["market"], rec["region"], state, rec["launched"],
                        dict(rec["tags"]), address=rec["id"])

    def records(self) -> list[dict]:
        out = []
        for p in sorted(self.folder.glob("i-*.json")):
            try:
                text = p.read_text()
            except OSError:                  # terminated between the listing and the read
                continue
            out.append(json.loads(text))
        return out

    def describe(self, owner: str) -> list[Instance]:
        """As the docker cloud: a record whose agent never started and whose launcher died (killed
        between the record and the start) is removed, so the daemon launches it again."""
        out = []
        for r in self.records():
            if r["tags"].get(OWNER_TAG) != owner:
                continue
            if r.get("pid") is None and r.get("launcher") and not _alive(r["launcher"]):
                started = _agent_pids(self.folder / "work" / r["id"])
                if not started:
                    self._path(r["id"]).unlink(missing_ok=True)
                    continue
                r["pid"] = started[0]         # killed between the start and its record: it runs,
                self._write(r)                # as a container the engine started would
            if self._instance(r).state != "terminated":
                out.append(self._instance(r))
        return out

    def terminate(self, ids: list[str]) -> None:
        for iid in ids:
            p = self._path(iid)
            try:
                rec = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if rec.get("pid"):
                _kill(rec["pid"])
            p.unlink(missing_ok=True)

    def live_agents(self) -> list[int]:
        """Agent processes of this cloud still running, recorded or not (a leak if none should)."""
        return _agent_pids(self.folder / "work")

    def kill_all(self) -> None:
        for rec in self.records():
            if rec.get("pid"):
                _kill(rec["pid"])
        for pid in self.live_agents():                # started but never recorded
            _kill(pid)

    def interrupt(self, iid: str) -> None:
        """A spot interruption: the machine is gone (describe stops listing it)."""
        rec = json.loads(self._path(iid).read_text())
        if rec.get("pid"):
            _kill(rec["pid"])
        self._path(iid).unlink()


def _agent_pids(work: Path) -> list[int]:
    """Processes whose command line names this work folder or one below it (Linux /proc)."""
    prefix = str(work).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:                               # gone meanwhile
            continue
        if any(a == prefix or a.startswith(prefix + b"/") for a in args):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:                                        # a zombie child of this process is gone, too
        pid_done, _ = os.waitpid(pid, os.WNOHANG)
        return pid_done == 0
    except ChildProcessError:
        return True


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
