"""How a reused agent gets its next build's bundle (daemon/reuse.py), per cloud.

* docker cloud (`CloudHandover`): the cloud's `recycle` copies the bundle into the instance container
  and stops its agent at once; the old agent is gone when the call returns.
* EC2 (`SsmHandover`): the bundle goes into the SSM SecureString `/provisioner/agents/<id>.next`,
  tagged with the instance's ARN (the same hand-over as a launch's: never user-data or tags). The
  instance's watcher polls for it while idle, stops its agent and recycles (agent/nextbuild.py);
  the parameter is deleted on the instance once the old agent is gone and the workspace wiped, so
  `recycled` is true only from then on.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from provisioner.clouds.base import Instance


class CloudHandover:
    def __init__(self, cloud: Any):
        self.cloud = cloud
        self.bundle_reuse = False            # the docker cloud needs no poll flag in the bundle

    def recycle(self, inst: Instance, bundle_json: str) -> None:
        self.cloud.recycle(inst.id, bundle_json)

    def recycled(self, inst: Instance) -> bool:
        return True


class SsmHandover:
    def __init__(self, ssm_for_region: Callable[[str], Any], account_id: Callable[[], str]):
        self.ssm, self.account_id = ssm_for_region, account_id
        self.bundle_reuse = True             # the agent polls only when its bundle says so

    def recycle(self, inst: Instance, bundle_json: str) -> None:
        from provisioner.agent import secrets
        ssm = self.ssm(inst.region)
        name = secrets.next_parameter_name(inst.id)
        arn = f"arn:aws:ec2:{inst.region}:{self.account_id()}:instance/{inst.id}"
        bundle = secrets.decode(bundle_json, "the next bundle")
        try:
            secrets.put_ssm(ssm, name, bundle, arn)
        except ssm.exceptions.ParameterAlreadyExists:   # an earlier hand-over never taken: this one
            secrets.delete_ssm(ssm, name)
            secrets.put_ssm(ssm, name, bundle, arn)

    def recycled(self, inst: Instance) -> bool:
        """Has the instance deleted the parameter? (Its tags are read: the daemon may not read values.)"""
        from botocore.exceptions import ClientError

        from provisioner.agent import secrets
        try:
            self.ssm(inst.region).list_tags_for_resource(ResourceType="Parameter",
                                                         ResourceId=secrets.next_parameter_name(inst.id))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("InvalidResourceId", "ParameterNotFound"):
                return True
            raise
        return False


def handover_for(cloud: Any, launcher: Any) -> Any:
    """The hand-over of this cloud, or None where agents cannot be reused (one build each)."""
    if callable(getattr(cloud, "recycle", None)):
        return CloudHandover(cloud)
    if getattr(cloud, "name", "") == "ec2" and getattr(launcher, "hands_over", False):
        from provisioner import aws
        clients: dict[str, Any] = {}
        account: dict[str, str] = {}
        lock = threading.Lock()

        def ssm(region: str) -> Any:
            with lock:
                if region not in clients:
                    clients[region] = aws.client("ssm", region=region)
                return clients[region]

        def account_id() -> str:
            if "id" not in account:
                account["id"] = aws.client("sts").get_caller_identity()["Account"]
            return account["id"]
        return SsmHandover(ssm, account_id)
    return None
