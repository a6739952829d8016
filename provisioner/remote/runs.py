"""Remote runs you can leave and come back to: what `provisioner ps`, `logs`, `stop` and `attach` read.

A remote run's state lives where the run lives, never only on the launching machine:
- docker cloud: the instance container's labels (`provisioner:run-id`, `provisioner:user`, ...),
  its status (running / exited) and its output. Finished runs' containers are kept for
  `docker.retention_s`.
- EC2: the instance's tags (`provisioner:state`, `provisioner:user`, `provisioner:run-id`, ...), its
  state, and its CloudWatch Logs stream (named after the instance id).
The instance's job supervisor prints the usage record as the last structured line of that output
(`::provisioner-record:: {json}`): a launcher that died (SIGKILL, a laptop asleep) loses nothing,
because the next `ps`, `logs` or `history` on the launching machine imports the records of its
runs that it has not seen yet (`import_unseen`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from provisioner import records
from provisioner.agent import markers
from provisioner.errors import UsageError

RUN_TAG, USER_TAG, STATE_TAG = "provisioner:run-id", "provisioner:user", "provisioner:state"
OWNER_TAG, LOG_GROUP_TAG, PRICE_TAG = "provisioner:owner", "provisioner:log-group", "provisioner:price"
USAGE_S3_TAG = "provisioner:usage-s3"          # `run --usage-s3`: an imported record goes there too
ENDED = "ended"


@dataclass
class RunView:
    run_id: str
    job: str
    instance_id: str
    instance_type: str
    market: str
    region: str
    state: str                        # running | stopping | ended
    started: float                    # epoch seconds
    ended: float | None
    price: float | None
    user: str
    owner: str
    cloud: str
    tags: dict = field(default_factory=dict)

    def elapsed_s(self, now: float) -> float:
        return max(0.0, (self.ended or now) - self.started) if self.started else 0.0

    def cost_usd(self, now: float) -> float | None:
        return None if self.price is None else round(self.price * self.elapsed_s(now) / 3600, 6)

    def as_json(self, now: float) -> dict:
        return {"run_id": self.run_id, "job": self.job, "instance_id": self.instance_id,
                "instance_type": self.instance_type, "market": self.market, "region": self.region,
                "state": self.state, "user": self.user, "cloud": self.cloud,
                "started": _iso(self.started), "ended": _iso(self.ended) if self.ended else None,
                "elapsed_s": round(self.elapsed_s(now), 1), "cost_usd": self.cost_usd(now)}


def _iso(epoch: float) -> str:
    return records.iso_utc(datetime.fromtimestamp(epoch, timezone.utc))


def _price(tags: dict) -> float | None:
    try:
        return float(tags[PRICE_TAG])
    except (KeyError, ValueError):
        return None


# ---- the clouds ------------------------------------------------------------------------------

class DockerRuns:
    """Remote runs on the local engine (one container each)."""

    name = "docker"
    stop_terminates = False     # `stop`: the signal ends the container's job; the container ends with it

    def __init__(self, client: Any):
        self.client = client

    def list(self, user: str | None) -> list[RunView]:
        filters = {"label": ["provisioner:kind=instance", RUN_TAG] + ([f"{USER_TAG}={user}"] if user else [])}
        out = []
        # sparse: one request for the whole list (not one inspect per container); only ended runs'
        # end times are looked up, a few at a time.
        found = self.client.containers.list(all=True, sparse=True, ignore_removed=True, filters=filters)
        live = {c.id: c.attrs.get("State") in ("created", "running", "restarting", "paused") for c in found}
        ended = [cid for cid, running in live.items() if not running]
        ends: dict[str, float | None] = {}
        if ended:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=min(8, len(ended))) as pool:
                ends = dict(zip(ended, pool.map(self._finished, ended)))
        for c in found:
            labels = c.attrs.get("Labels") or {}
            name = (c.attrs.get("Names") or ["/" + c.id])[0].lstrip("/")
            running = live[c.id]
            finished = ends.get(c.id)
            try:
                started = float(labels.get("provisioner:launched-at", "0"))
            except ValueError:
                started = 0.0
            out.append(RunView(labels[RUN_TAG], labels.get("provisioner:job", ""), name,
                               labels.get("provisioner:instance-type", ""), labels.get("provisioner:market", ""),
                               labels.get("provisioner:region", ""),
                               labels.get(STATE_TAG, "running") if running else ENDED, started, finished,
                               _price(labels), labels.get(USER_TAG, ""), labels.get(OWNER_TAG, ""), "docker",
                               dict(labels)))
        return out

    def _finished(self, cid: str) -> float | None:
        from provisioner.runner.sampler import parse_engine_time
        try:
            return parse_engine_time(self.client.api.inspect_container(cid)["State"].get("FinishedAt"))
        except Exception:
            return None

    def lines(self, run: RunView, follow: bool, since: float | None = None) -> Iterator[str]:
        from provisioner.runner.console import LineSplitter
        splitter = LineSplitter()
        kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "stream": True, "follow": follow}
        if since:
            kwargs["since"] = int(since)
        try:
            for chunk in self.client.api.logs(run.instance_id, **kwargs):
                yield from splitter.feed(chunk)
        except Exception:               # removed while we read
            pass
        yield from splitter.flush()

    def signal(self, run: RunView) -> None:
        try:
            self.client.api.kill(run.instance_id, signal="SIGTERM")
        except Exception:
            pass                        # it ended meanwhile

    def alive(self, run: RunView) -> bool:
        try:
            return self.client.containers.get(run.instance_id).status in ("created", "running", "restarting")
        except Exception:
            return False

    def terminate(self, run: RunView) -> None:
        try:
            self.client.api.kill(run.instance_id, signal="SIGKILL")
        except Exception:
            pass                        # kept (exited) for its retention: logs and record


class Ec2Runs:
    """Remote runs on EC2: instance tags and the CloudWatch Logs stream named after the instance."""

    name = "ec2"
    stop_terminates = True      # `stop`: the instance's shutdown stops the job; its record is logged

    def __init__(self, regions: list[str], client: Callable[..., Any]):
        self.regions, self.client = regions, client

    def list(self, user: str | None) -> list[RunView]:
        filters = [{"Name": "tag-key", "Values": [RUN_TAG]}]
        if user:
            filters.append({"Name": f"tag:{USER_TAG}", "Values": [user]})
        out = []
        for region in self.regions:
            ec2 = self.client("ec2", region=region)
            for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
                for res in page.get("Reservations") or []:
                    for item in res.get("Instances") or []:
                        out.append(self._view(item, region))
        return out

    def _view(self, item: dict, region: str) -> RunView:
        tags = {t["Key"]: t["Value"] for t in item.get("Tags") or []}
        state = item.get("State", {}).get("Name", "")
        ended = state in ("shutting-down", "terminated", "stopped")
        launched = item.get("LaunchTime")
        started = launched.timestamp() if hasattr(launched, "timestamp") else 0.0
        market = "spot" if item.get("InstanceLifecycle") == "spot" else "ondemand"
        return RunView(tags[RUN_TAG], tags.get("provisioner:job", ""), item["InstanceId"], item.get("InstanceType", ""),
                       market, region, ENDED if ended else tags.get(STATE_TAG, "running"), started,
                       _ec2_end(item) if ended else None, _price(tags), tags.get(USER_TAG, ""),
                       tags.get(OWNER_TAG, ""), "ec2", tags)

    def lines(self, run: RunView, follow: bool, since: float | None = None) -> Iterator[str]:
        from provisioner.remote.parts import DEFAULT_LOG_GROUP
        logs = self.client("logs", region=run.region)
        group = run.tags.get(LOG_GROUP_TAG) or DEFAULT_LOG_GROUP
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": run.instance_id, "startFromHead": True}
        if since:
            kwargs["startTime"] = int(since * 1000)
        quiet_since = time.monotonic()
        while True:
            try:
                page = logs.get_log_events(**kwargs)
            except logs.exceptions.ResourceNotFoundException:
                page = {}
            events = page.get("events") or []
            for event in events:
                yield event.get("message", "")
            if page.get("nextForwardToken"):
                kwargs["nextToken"] = page["nextForwardToken"]
            if events:
                quiet_since = time.monotonic()
                continue
            if not follow or (not self.alive(run) and time.monotonic() - quiet_since > 5):
                return
            time.sleep(1.0)

    def alive(self, run: RunView) -> bool:
        page = self.client("ec2", region=run.region).describe_instances(InstanceIds=[run.instance_id])
        items = [i for r in page.get("Reservations") or [] for i in r.get("Instances") or []]
        return bool(items) and items[0]["State"]["Name"] in ("pending", "running")

    def signal(self, run: RunView) -> None:
        self.client("ec2", region=run.region).create_tags(
            Resources=[run.instance_id], Tags=[{"Key": STATE_TAG, "Value": "stopping"}])

    def terminate(self, run: RunView) -> None:
        self.client("ec2", region=run.region).terminate_instances(InstanceIds=[run.instance_id])


def _ec2_end(item: dict) -> float | None:
    reason = item.get("StateTransitionReason") or ""       # "User initiated (2026-01-02 03:04:05 GMT)"
    if "(" in reason and "GMT" in reason:
        try:
            return datetime.strptime(reason[reason.index("(") + 1:reason.index(" GMT")],
                                     "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            return None
    return None


def runs_backend(ctx: Any, cloud_name: str | None) -> Any:
    """Where `ps`/`stop`/`logs` find remote runs: the cloud's own backend (Cloud.runs)."""
    from provisioner.clouds import registry
    from provisioner.clouds.base import CloudError
    name = cloud_name or ctx.config.cloud
    try:
        backend = registry.adapter(name).runs(ctx.config)
    except CloudError as exc:
        raise UsageError(str(exc)) from None
    if backend is None:
        raise UsageError(f"the {name} cloud runs no remote jobs (provisioner run --remote)")
    return backend


# ---- finding one run, its record -------------------------------------------------------------

def find(backend: Any, run_id: str) -> RunView:
    """The run with this id (a unique prefix will do); unknown or ambiguous: UsageError (exit 2)."""
    runs = [r for r in backend.list(None) if r.run_id == run_id or r.instance_id == run_id]
    if not runs and len(run_id) >= 4:
        runs = [r for r in backend.list(None) if r.run_id.startswith(run_id)]
    if not runs:
        raise UsageError(f"no remote run {run_id!r} on the {backend.name} cloud (see `provisioner ps --all`)")
    if len({r.run_id for r in runs}) > 1:
        raise UsageError(f"run id {run_id!r} is ambiguous: " + ", ".join(sorted(r.run_id for r in runs)))
    return runs[0]


def record_of(lines: Iterator[str] | list[str]) -> dict | None:
    """The last usage record marker in a run's output."""
    found = None
    for line in lines:
        parsed = markers.parse(line)
        if parsed and parsed[0] == "record":
            found = parsed[1]
    return found


def imported_record(record: dict, run: RunView) -> dict:
    """The instance's record, completed with what the run's tags say (as the launcher would)."""
    out = dict(record)
    out.update(cloud=run.cloud, instance_id=run.instance_id, remote=True)
    for key, value in (("instance_type", run.instance_type), ("market", run.market), ("region", run.region)):
        out.setdefault(key, value)
    return records.normalise(out)


# ---- records of this machine's runs that it has not seen -------------------------------------

def _seen_path() -> Any:
    from provisioner.paths import state_dir
    return state_dir() / "remote-runs-seen"


def note_launched(run_id: str, cloud: str) -> None:
    """This machine launched this run (so `history` knows which clouds hold records to import)."""
    _append("remote-runs-launched", f"{run_id} {cloud}")


def pending() -> dict[str, set[str]]:
    """Runs launched here whose record was not seen yet, by cloud."""
    from provisioner.paths import state_dir
    done, out = seen(), {}
    try:
        text = (state_dir() / "remote-runs-launched").read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] not in done:
            out.setdefault(parts[1], set()).add(parts[0])
    return out


def owner_id() -> str:
    """Whose remote runs these are: the machine that launched them (remote/run.py tags them with it)."""
    import socket
    return f"remote:{socket.gethostname()}"


def import_pending(ctx: Any, warn: Callable[[str], None]) -> int:
    """`history`'s import: only when this machine has runs whose record it has not seen."""
    from provisioner.remote.parts import launching_user
    count = 0
    for cloud, ids in pending().items():
        try:
            backend = runs_backend(ctx, cloud)
            runs = [r for r in backend.list(launching_user()) if r.run_id in ids]
            count += import_unseen(ctx, backend, runs, owner_id(), warn)
        except Exception as exc:        # the cloud not reachable now: next time
            warn(f"records of remote runs on {cloud} not imported now: {exc}")
    return count


def _append(name: str, line: str) -> None:
    from provisioner.paths import state_dir
    try:
        path = state_dir() / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(line + "\n")
    except OSError:
        pass


def seen() -> set[str]:
    try:
        return set(_seen_path().read_text().split())
    except OSError:
        return set()


def mark_seen(run_id: str) -> None:
    _append("remote-runs-seen", run_id)       # lost: only costs a re-read of that run's output later


def import_unseen(ctx: Any, backend: Any, runs: list[RunView], owner: str, warn: Callable[[str], None]) -> int:
    """Store the records of ended runs launched from this machine (`owner`) not seen before."""
    done = seen()
    todo = [r for r in runs if r.state == ENDED and r.owner == owner and r.run_id not in done]
    count = 0
    for run in todo:
        record = record_of(backend.lines(run, follow=False))
        if record is None:
            continue                    # not written (yet): tried again next time
        full = imported_record(record, run)
        try:
            with ctx.open_history() as store:
                store.add(full)
        except Exception as exc:
            warn(f"usage record of run {run.run_id} not imported: {exc}")
            continue
        if run.tags.get(USAGE_S3_TAG):
            try:
                from provisioner.export import export_records
                export_records([full], run.tags[USAGE_S3_TAG])
            except Exception as exc:
                warn(f"usage record of run {run.run_id} not written to S3: {exc}")
        mark_seen(run.run_id)
        count += 1
    if count:
        warn(f"imported the usage record of {count} finished remote run(s) launched from this machine")
    return count
