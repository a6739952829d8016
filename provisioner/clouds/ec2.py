"""The `ec2` Cloud adapter: one CreateFleet per batch of launches, describe by owner tag, batched
terminate.

`launch` is one CreateFleet (one instance, every tag in the request). `launch_many` groups launches
that differ only in their per-instance tags (`ec2_params.batch_groups`) into one CreateFleet per
batch and round (ec2_batch.py); `describe` finishes that assignment for instances a crash left
without it.

The requests come from the pure functions in `ec2_params`; this module only sends them, maps AWS
errors to CloudError (keeping the code), retries throttling, blocks offers that had no capacity and
falls back from spot to on-demand. Clients come from an injected factory `(service, region)`, by
default `provisioner.aws.client` with botocore's retries off: the retry policy is ours (below).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError,
                                 EndpointConnectionError, NoCredentialsError,
                                 ParamValidationError, PartialCredentialsError, ReadTimeoutError)

from provisioner import killpoints
from provisioner.catalog.model import Offer
from provisioner.clouds import ec2_params as P
from provisioner.clouds import ec2_responses as R
from provisioner.clouds import ec2_selectors as selectors
from provisioner.clouds.base import BATCH_TAG, OWNER_TAG, BlockedOffers, CloudError, Instance, LaunchSpec
from provisioner.clouds.ec2_batch import BatchLaunchMixin
from provisioner.clouds.ec2_pool import ParkingMixin
from provisioner.clouds.ec2_seam import Ec2Seam
from provisioner.clouds.pacing import Backoff, grouper

log = logging.getLogger(__name__)

ClientFactory = Callable[[str, str], Any]      # (service, region) -> boto3 client

TERMINATE_BATCH = 1000          # TerminateInstances takes at most 1000 ids per call
DESCRIBE_PAGE = 1000            # DescribeInstances' largest page
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")  # 'stopped' still bills EBS
MAX_ROUNDS = 4                  # requests per launch: spot, on-demand, and another region's pair
SELECTOR_TTL_S = 600.0          # image/subnet/security-group selectors are looked up again after this
FILTER_VALUES = 200             # DescribeInstances takes at most 200 values per filter


def default_clients(service: str, region: str) -> Any:
    from provisioner import aws
    return aws.client(service, region=region, max_attempts=1)   # our Backoff retries, not botocore


class Ec2Cloud(BatchLaunchMixin, ParkingMixin, Ec2Seam):
    """The Cloud protocol on EC2. `calls` counts API calls by operation; `errors` failures by code."""

    name = "ec2"

    def __init__(self, clients: ClientFactory | None = None, settings: P.Ec2Settings | None = None, *,
                 blocked: BlockedOffers | None = None, backoff: Backoff = Backoff(),
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 workers: int = 8):
        self._configured = settings or P.Ec2Settings()   # may hold selectors (ec2_selectors.py)
        self._resolved: tuple[float, P.Ec2Settings, list] | None = None
        self._selecting = threading.Lock()
        self.workers = max(1, workers)              # batches of one launch_many sent side by side
        self._count = threading.Lock()              # counters and clients are shared by those threads
        self._setup = threading.Lock()              # and so are the template and image look-ups
        self.blocked = blocked if blocked is not None else BlockedOffers()
        self.backoff = backoff
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.last_launch_calls: dict[str, int] = {}
        self._make = clients or default_clients
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clients: dict[str, Any] = {}
        self._templates: set[tuple[str, str]] = set()           # (region, template name) known to exist
        self._image_info: dict[tuple[str, str], tuple[str, int]] = {}  # (region, ami) -> (root device, GiB)
        self._region_of: dict[str, str] = {}                    # instance id -> region

    # ---- settings ----------------------------------------------------------------------------

    @property
    def settings(self) -> P.Ec2Settings:
        """The configured settings with every selector resolved to ids (looked up again after
        SELECTOR_TTL_S: a newly baked image or a new subnet is picked up without a restart)."""
        if not selectors.has_selectors(self._configured):
            return self._configured
        return self.resolve_selectors()[0]

    def resolve_selectors(self) -> tuple[P.Ec2Settings, list]:
        """(resolved settings, what each selector matched); CloudError(kind=config) when one matches nothing."""
        with self._selecting:
            now = time.monotonic()
            if self._resolved is None or now - self._resolved[0] > SELECTOR_TTL_S:
                settings, found = selectors.resolve(
                    self._configured, lambda region, op, request: self._call(region, op, **request))
                self._resolved = (now, settings, found)
            return self._resolved[1], self._resolved[2]

    # ---- launch ------------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> Instance:
        """One instance from the best candidate with capacity; CloudError when none could start."""
        before = Counter(self.calls)
        try:
            return self._launch(spec)
        finally:
            self.last_launch_calls = dict(self.calls - before)

    def _launch(self, spec: LaunchSpec) -> Instance:
        failures: list[CloudError] = []
        for i, round_offers in enumerate(self._rounds(spec)):
            try:
                return self._launch_round(spec, round_offers, first=i == 0)
            except CloudError as exc:
                if exc.kind not in ("capacity", "quota"):
                    raise
                failures.append(self._blocked_by(exc))
        raise R.combined(failures)

    def _rounds(self, spec: LaunchSpec) -> list[tuple[Offer, ...]]:
        """The requests to try, one per (region, market), blocked offers left out; a CloudError before
        any API call for a configuration or tag problem, or when every offer is blocked."""
        offers = self._launchable(P.with_ondemand_twins(spec))
        P.launch_tags(spec, self.settings)                       # tag problems: before any API call
        P.encoded_user_data(spec.user_data)
        rounds = P.launch_rounds(offers, self.blocked.current())
        if not rounds:
            raise CloudError("every candidate offer is blocked after recent launch failures: "
                             + ", ".join("/".join(o.key) for o in offers), code="AllOffersBlocked",
                             kind="capacity", offers=tuple(o.key for o in offers))
        return rounds[:MAX_ROUNDS]

    def _blocked_by(self, exc: CloudError) -> CloudError:
        """Block the offers a capacity or quota error names (the next round tries others)."""
        for key in exc.offers:
            self.blocked.block(key)
        log.warning("%s", R.event("launch-failed", code=exc.code, kind=exc.kind,
                                 offers=["/".join(k) for k in exc.offers]))
        return exc

    def _launchable(self, offers: list[Offer]) -> list[Offer]:
        """Offers the configuration can launch; a config CloudError (before any call) if none."""
        if not offers:
            raise CloudError("a spot-only launch without spot candidates", code="Config", kind="config")
        ok, problems = [], []
        for offer in offers:
            missing = P.config_problems(self.settings, offer)
            (problems.extend(missing) if missing else ok.append(offer))
        if not ok:
            raise CloudError("cannot launch on EC2: " + "; ".join(dict.fromkeys(problems)),
                             code="Config", kind="config")
        for problem in dict.fromkeys(problems):
            log.warning("skipping candidates: %s", problem)
        return ok

    def _launch_round(self, spec: LaunchSpec, offers: Sequence[Offer], first: bool) -> Instance:
        region, market = offers[0].region, offers[0].market
        params = P.launch_params(spec, self.settings, offers=offers,
                                 token=P.client_token(spec.client_token, region, market, first),
                                 **self._round_inputs(region, spec, offers))
        self._log_launch(params, offers, spec.user_data)
        ids, errors, response = self._create_fleet(region, params, offers)
        killpoints.reached("ec2.fleet-created")
        if not ids:
            raise R.fleet_failure(errors, offers)
        if ids[1:]:                                    # target capacity 1: never expected
            log.warning("fleet returned %d instances; terminating %s", len(ids), ids[1:])
            self._terminate_in(region, ids[1:])
        item = self._describe_ids(region, ids[:1]).get(ids[0])
        instance = R.instance_of(item, region) if item else R.from_fleet(ids[0], region, response)
        self._log_launched(instance)
        return instance

    def _write_tags(self, region: str, instance_id: str, item: dict | None, tags: dict[str, str]) -> None:
        """One CreateTags on an instance and its EBS volumes; a failure is logged (describe retries)."""
        try:
            self._call(region, "create_tags", Resources=[instance_id, *R.volume_ids(item or {})],
                       Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())])
        except CloudError as exc:
            log.warning("%s", R.event("tag-failed", id=instance_id, code=exc.code, kind=exc.kind))

    def _round_inputs(self, region: str, spec: LaunchSpec, offers: Sequence[Offer]) -> dict[str, Any]:
        """What a round's request needs from EC2: the base template and the images' root devices
        (looked up once per process: batches sent side by side wait for the first to ask)."""
        with self._setup:
            roots = self._images(region, offers)
            template = self._ensure_template(region, spec.tags[OWNER_TAG])
        return {"template_name": template, "root_devices": {a: r[0] for a, r in roots.items()},
                "min_disk_gib": {a: r[1] for a, r in roots.items()}}

    def _create_fleet(self, region: str, params: dict, offers: Sequence[Offer]
                      ) -> tuple[list[str], list[dict], dict]:
        """Send one CreateFleet: (instance ids, per-override errors, the response)."""
        try:
            response = self._call(region, "create_fleet", **params)
        except CloudError as exc:
            if exc.kind in ("capacity", "quota"):
                raise R.offer_error(exc.code, str(exc), offers) from None
            raise
        ids = [i for inst in response.get("Instances") or [] for i in inst.get("InstanceIds") or []]
        errors = response.get("Errors") or []
        with self._count:
            self.errors.update(e.get("ErrorCode", "Unknown") for e in errors)
        return ids, errors, response

    def _log_launch(self, params: dict, offers: Sequence[Offer], user_data: str, **extra: Any) -> None:
        log.info("%s", R.event("launch", region=offers[0].region, market=offers[0].market,
                              token=params["ClientToken"], types=[o.instance_type for o in offers],
                              subnets=list(self.settings.subnets_in(offers[0].region)),
                              user_data=P.user_data_fingerprint(user_data), **extra))

    def _log_launched(self, instance: Instance) -> None:
        log.info("%s", R.event("launched", id=instance.id, type=instance.instance_type,
                              market=instance.market, region=instance.region, az=instance.az,
                              node=instance.tags.get(P.NODE_TAG)))

    def _ensure_template(self, region: str, owner: str) -> str:
        request = P.template_request(self.settings, region, owner)
        name = request["LaunchTemplateName"]
        if (region, name) not in self._templates:
            try:
                self._call(region, "create_launch_template", **request)
            except CloudError as exc:
                if exc.code != "InvalidLaunchTemplateName.AlreadyExistsException":
                    raise                                  # same name = same content: reuse it
            self._templates.add((region, name))
        return name

    def _images(self, region: str, offers: Sequence[Offer]) -> dict[str, tuple[str, int]]:
        """{AMI: (root device name, snapshot GiB)} for these offers' images; one DescribeImages for
        those not asked before in this process. A missing image or a wrong architecture is config."""
        wanted = {P.image_for(self.settings, o): o.arch for o in offers}
        unknown = sorted(ami for ami in wanted if ami and (region, ami) not in self._image_info)
        if unknown:
            try:
                found = self._call(region, "describe_images", ImageIds=unknown).get("Images") or []
            except CloudError as exc:
                if exc.kind != "config":
                    raise
                found = []
            for image in found:
                if image.get("Architecture") not in (None, wanted[image["ImageId"]]):
                    raise CloudError(f"image {image['ImageId']} configured for {region} "
                                     f"{wanted[image['ImageId']]} is {image['Architecture']} (ec2.images)",
                                     code="ImageArchitecture", kind="config")
                root = image.get("RootDeviceName") or "/dev/xvda"
                size = max((m.get("Ebs", {}).get("VolumeSize") or 0 for m in image.get("BlockDeviceMappings", [])
                            if m.get("DeviceName") == root), default=0)
                self._image_info[(region, image["ImageId"])] = (root, int(size))
            missing = [ami for ami in unknown if (region, ami) not in self._image_info]
            if missing:
                raise CloudError(f"image {', '.join(missing)} configured for {region} does not exist "
                                 "there (ec2.images)", code="InvalidAMIID.NotFound", kind="config")
        return {ami: self._image_info[(region, ami)] for ami in wanted if ami}

    def _describe_ids(self, region: str, ids: list[str]) -> dict[str, dict]:
        """{id: DescribeInstances item} for new instances (AZ, address, volumes); a new id can be
        invisible for a moment, so ask once more after 1 s for those not found."""
        found: dict[str, dict] = {}
        for iid in ids:
            self._region_of[iid] = region
        for attempt in range(2):
            missing = [i for i in ids if i not in found]
            if not missing:
                break
            if attempt:
                self._sleep(1.0)
            try:
                reservations = self._call(region, "describe_instances",
                                          InstanceIds=missing).get("Reservations") or []
                found.update((i["InstanceId"], i) for r in reservations for i in r.get("Instances", []))
            except CloudError as exc:
                if exc.kind != "not-found":
                    raise
        return found

    # ---- describe and terminate ----------------------------------------------------------------

    def describe(self, owner: str) -> list[Instance]:
        """Every instance carrying this owner tag and not terminated, in every configured region.

        A batched instance without its node tag (the daemon stopped between the batch's CreateFleet
        and its CreateTags) gets its node here, by the launch's own rule (`ec2_params.recovered_nodes`),
        written with one CreateTags per instance and returned with it. Only `provisioner:node` and
        `Name` are recovered: the batch tags do not hold queue ids or jobs, and the daemon matches
        instances to nodes by the node tag."""
        filters = [{"Name": f"tag:{OWNER_TAG}", "Values": [owner]},
                   {"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
        out: list[Instance] = []
        for region in self.settings.regions:
            items = self._items(region, filters)
            for item in items:
                self._region_of[item["InstanceId"]] = region
            out += self._finish_batches(region, items)
        return out

    def ended(self, owner: str) -> list:
        """This owner's instances that stopped or terminated, each once (ec2_ended.py)."""
        from provisioner.clouds import ec2_ended
        return ec2_ended.collect(self, owner)

    def image_identity(self, offer: Offer) -> str:
        """The AMI the next launch of `offer` boots (a boot-failure pause lifts when it changes)."""
        return P.image_for(self.settings, offer) or ""

    def _items(self, region: str, filters: list[dict]) -> list[dict]:
        """Every DescribeInstances item matching these filters in one region, page by page."""
        items: list[dict] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Filters": filters, "MaxResults": DESCRIBE_PAGE}
            if token:
                kwargs["NextToken"] = token
            page = self._call(region, "describe_instances", **kwargs)
            items += [i for r in page.get("Reservations") or [] for i in r.get("Instances") or []]
            token = page.get("NextToken")
            if not token:
                return items

    def _finish_batches(self, region: str, items: list[dict]) -> list[Instance]:
        """These instances, the batched ones still without a node tag assigned and tagged now."""
        instances = [R.instance_of(item, region) for item in items]
        waiting = sorted({i.tags[BATCH_TAG] for i in instances if R.unassigned(i)})
        if not waiting:
            return instances
        members = [m for batch in grouper(waiting, FILTER_VALUES)   # terminated members keep their place
                   for m in self._items(region, [{"Name": f"tag:{BATCH_TAG}", "Values": batch}])]
        nodes = P.recovered_nodes((m["InstanceId"], R.tags_of(m)) for m in members)
        out = []
        for item, instance in zip(items, instances):
            if instance.id in nodes:
                tags = P.node_tags(nodes[instance.id], instance.tags)
                self._write_tags(region, instance.id, item, tags)
                log.warning("%s", R.event("batch-recovered", id=instance.id, node=tags[P.NODE_TAG]))
                instance = replace(instance, tags={**instance.tags, **tags})
            out.append(instance)
        return out

    def terminate(self, ids: list[str]) -> None:
        """Terminate these instances; ids already terminated or unknown everywhere are fine."""
        unknown: list[str] = []
        by_region: dict[str, list[str]] = {}
        for iid in dict.fromkeys(ids):
            region = self._region_of.get(iid)
            (by_region.setdefault(region, []).append(iid) if region else unknown.append(iid))
        for region, known in by_region.items():
            self._terminate_in(region, known)
        for region in self.settings.regions:      # an id from another process: find its region
            if not unknown:
                break
            unknown = self._terminate_in(region, unknown)
        for iid in ids:
            self._region_of.pop(iid, None)          # a long-running daemon must not grow this map
        if ids:
            log.info("%s", R.event("terminate", ids=list(dict.fromkeys(ids)), not_found=unknown))

    def _terminate_in(self, region: str, ids: list[str]) -> list[str]:
        """Terminate in one region, batched; return the ids that region does not know."""
        missing: list[str] = []
        for batch in grouper(ids, TERMINATE_BATCH):
            while batch:                            # each NotFound removes at least one id
                try:
                    self._call(region, "terminate_instances", InstanceIds=batch)
                    break
                except CloudError as exc:
                    if exc.kind != "not-found":
                        raise
                    gone = set(re.findall(r"i-[0-9a-f]+", str(exc))) & set(batch) or set(batch)
                    missing += [i for i in batch if i in gone]
                    batch = [i for i in batch if i not in gone]
        return missing

    # ---- the one call funnel ---------------------------------------------------------------------

    def _client(self, region: str) -> Any:
        with self._count:                           # one client per region, whichever thread asks first
            if region not in self._clients:
                self._clients[region] = self._make("ec2", region)
            return self._clients[region]

    def _call(self, region: str, operation: str, **kwargs: Any) -> dict:
        """Call one EC2 operation: count it, retry throttling and transient faults, map errors."""
        for attempt in range(self.backoff.attempts):
            with self._count:
                self.calls[operation] += 1
            try:
                return getattr(self._client(region), operation)(**kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "Unknown")
                message = exc.response.get("Error", {}).get("Message", str(exc))
                kind = P.error_kind(code)
                retryable = kind == "throttle" or code in P.TRANSIENT_CODES
            except (NoCredentialsError, PartialCredentialsError) as exc:
                raise CloudError(f"no AWS credentials found ({exc}): set AWS_PROFILE or "
                                 "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or give the daemon an "
                                 "instance role", code="NoCredentials", kind="auth") from None
            except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError) as exc:
                code, message, kind, retryable = type(exc).__name__, str(exc), "other", True
            except ParamValidationError as exc:       # a value from the config that EC2 cannot take
                raise CloudError(f"{operation}: {exc}", code="ParamValidation", kind="config") from None
            except BotoCoreError as exc:
                raise CloudError(f"{operation} failed: {exc}", code=type(exc).__name__) from None
            with self._count:
                self.errors[code] += 1
            if not retryable or attempt + 1 == self.backoff.attempts:
                raise R.client_error(operation, region, code, message, kind)
            delay = self.backoff.delay(attempt, self._rng)
            log.info("%s throttled or unavailable (%s); retry %d in %.2fs", operation, code,
                     attempt + 1, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")
