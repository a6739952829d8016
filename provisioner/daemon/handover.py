"""How a reused agent gets its next build's bundle (daemon/reuse.py), per cloud.

* docker cloud (`CloudHandover`): the cloud's `recycle` copies the bundle into the instance container
  and stops its agent at once; the old agent is gone when the call returns.
* a cloud that hands its agents their bundle out of band (`Cloud.next_build_handover`; EC2:
  clouds/ec2_nextbuild.py, through SSM): the agent polls for it and recycles itself.
"""

from __future__ import annotations

from typing import Any

from provisioner.clouds.base import Instance


class CloudHandover:
    def __init__(self, cloud: Any):
        self.cloud = cloud
        self.bundle_reuse = False            # the docker cloud needs no poll flag in the bundle

    def recycle(self, inst: Instance, bundle_json: str) -> None:
        self.cloud.recycle(inst.id, bundle_json)

    def recycled(self, inst: Instance) -> bool:
        return True


def handover_for(cloud: Any, executor: Any) -> Any:
    """The hand-over of this cloud, or None where agents cannot be reused (one build each)."""
    if callable(getattr(cloud, "recycle", None)):
        return CloudHandover(cloud)
    out_of_band = getattr(cloud, "next_build_handover", None)
    return out_of_band() if callable(out_of_band) and getattr(executor, "hands_over", False) else None
