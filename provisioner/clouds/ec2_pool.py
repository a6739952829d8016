"""EC2's side of the warm pool (provisioner/daemon/pools.py): spares are on-demand instances booted
once, then *parked* (stopped: only their EBS volumes bill) and *claimed* for a build (started with
the build's node tags; the daemon then puts the secret bundle into SSM as for any launch, and the
bootstrap, which runs on every boot, reads it).

Order in a claim, for crash safety: the shutdown behaviour goes back to `terminate` (the agent's
`shutdown -h` after its build then ends billing), then StartInstances, then the node tags replace
the pool tag. A daemon killed before the tags leaves a running spare that still carries the pool
tag: it is parked again, and its build's node gets an ordinary launch (no duplicate, no leak).
"""

from __future__ import annotations

import logging
from typing import Any

from provisioner.clouds import ec2_responses as R
from provisioner.clouds.base import Instance
from provisioner.clouds.pacing import grouper

log = logging.getLogger(__name__)
POOL_TAG = "provisioner:pool"
STOP_BATCH = 1000


class ParkingMixin:
    """Ec2Cloud's park / claim (it provides `_call`, `_region_of`, `_describe_ids`, `_write_tags`)."""

    def park(self: Any, ids: list[str]) -> None:
        """Stop these spares; an instance-initiated shutdown stops them too from now on."""
        by_region: dict[str, list[str]] = {}
        for iid in ids:
            by_region.setdefault(self._region_of.get(iid) or self.settings.regions[0], []).append(iid)
        for region, batch_ids in by_region.items():
            for iid in batch_ids:
                self._call(region, "modify_instance_attribute", InstanceId=iid,
                           InstanceInitiatedShutdownBehavior={"Value": "stop"})
            for batch in grouper(batch_ids, STOP_BATCH):
                self._call(region, "stop_instances", InstanceIds=batch)
        log.info("%s", R.event("parked", ids=list(ids)))

    def claim(self: Any, instance_id: str, tags: dict[str, str]) -> Instance:
        """Start a parked spare for a build: shutdown terminates again, then start, then its tags."""
        region = self._region_of.get(instance_id) or self.settings.regions[0]
        self._call(region, "modify_instance_attribute", InstanceId=instance_id,
                   InstanceInitiatedShutdownBehavior={"Value": "terminate"})
        self._call(region, "start_instances", InstanceIds=[instance_id])
        item = self._describe_ids(region, [instance_id]).get(instance_id) or {}
        self._write_tags(region, instance_id, item, tags)
        self._call(region, "delete_tags", Resources=[instance_id], Tags=[{"Key": POOL_TAG}])
        log.info("%s", R.event("claimed", id=instance_id, node=tags.get("provisioner:node")))
        inst = R.instance_of(item, region) if item else None
        merged = {**(inst.tags if inst else {}), **tags}
        merged.pop(POOL_TAG, None)
        if inst is None:
            raise RuntimeError(f"the claimed spare {instance_id} cannot be described")
        return Instance(inst.id, inst.instance_type, inst.market, inst.region, "pending", inst.launched_at,
                        merged, inst.az, inst.address, inst.image)
