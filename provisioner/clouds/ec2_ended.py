"""EC2 instances that ended before their agent connected (the daemon's boot-failure check).

One DescribeInstances per region and tick lists this owner's instances that are stopping, stopped,
shutting down or terminated; each is reported once (an instance stays listed as terminated for
about an hour). Its console output is read where EC2 has it (best effort: it is often empty in the
first minutes), and the last lines go with the report. The daemon decides whether it was a boot
failure (daemon/bootfail.py: only when its node never connected).
"""

from __future__ import annotations

import base64
from typing import Any

from provisioner.clouds.base import OWNER_TAG, CloudError

ENDED_STATES = ("shutting-down", "stopping", "stopped", "terminated")
NOT_THE_IMAGE = ("Server.SpotInstance", "Server.InsufficientInstanceCapacity")


def console_tail(cloud: Any, region: str, instance_id: str, lines: int) -> tuple[str, ...]:
    try:
        out = cloud._call(region, "get_console_output", InstanceId=instance_id).get("Output") or ""
        text = base64.b64decode(out).decode("utf-8", "replace") if out else ""
    except (CloudError, ValueError):
        return ()
    return tuple(text.splitlines()[-lines:])


def collect(cloud: Any, owner: str) -> list:
    from provisioner.daemon.bootfail import BOOT_CONFIG_TAG, LOG_TAIL_LINES, Ended
    from provisioner.clouds.ec2_responses import instance_of
    reported: set[str] = cloud.__dict__.setdefault("_ended_reported", set())
    filters = [{"Name": f"tag:{OWNER_TAG}", "Values": [owner]},
               {"Name": "instance-state-name", "Values": list(ENDED_STATES)}]
    out, listed = [], set()
    for region in cloud.settings.regions:
        for item in cloud._items(region, filters):
            iid = item["InstanceId"]
            listed.add(iid)
            if iid in reported:
                continue
            reported.add(iid)
            code = (item.get("StateReason") or {}).get("Code") or ""
            if code.startswith(NOT_THE_IMAGE):
                continue                   # spot reclaimed it, or no capacity: not the image's fault
            inst = instance_of(item, region)
            reason = (item.get("StateReason") or {}).get("Message") or (item.get("State") or {}).get("Name", "")
            out.append(Ended(instance=iid, node=inst.tag("node"), image=item.get("ImageId") or "",
                             config=inst.tags.get(BOOT_CONFIG_TAG, ""), code="instance-stopped",
                             detail=str(reason)[:200], log_tail=console_tail(cloud, region, iid, LOG_TAIL_LINES),
                             offer=(inst.instance_type, region, inst.market)))
    reported &= listed
    return out
