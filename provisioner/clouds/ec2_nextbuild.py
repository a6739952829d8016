"""A reused EC2 agent's next build (daemon/reuse.py): the bundle goes into the SSM SecureString
`/provisioner/agents/<id>.next`, tagged with the instance's ARN (the same hand-over as a launch's:
never user-data or tags). The instance's watcher polls for it while idle, stops its agent and
recycles (agent/nextbuild.py); the parameter is deleted on the instance once the old agent is gone
and the workspace wiped, so `recycled` is true only from then on."""

from __future__ import annotations

from typing import Any, Callable

from provisioner.clouds.base import Instance


class SsmHandover:
    def __init__(self, ssm_for_region: Callable[[str], Any], account_id: Callable[[], str]):
        self.ssm, self.account_id = ssm_for_region, account_id
        self.bundle_reuse = True             # the agent polls only when its bundle says so

    def recycle(self, inst: Instance, bundle_json: str) -> None:
        from provisioner import secret_bundle
        ssm = self.ssm(inst.region)
        name = secret_bundle.next_parameter_name(inst.id)
        arn = f"arn:aws:ec2:{inst.region}:{self.account_id()}:instance/{inst.id}"
        bundle = secret_bundle.decode(bundle_json, "the next bundle")
        try:
            secret_bundle.put_ssm(ssm, name, bundle, arn)
        except ssm.exceptions.ParameterAlreadyExists:   # an earlier hand-over never taken: this one
            secret_bundle.delete_ssm(ssm, name)
            secret_bundle.put_ssm(ssm, name, bundle, arn)

    def recycled(self, inst: Instance) -> bool:
        """Has the instance deleted the parameter? (Its tags are read: the daemon may not read values.)"""
        from botocore.exceptions import ClientError

        from provisioner import secret_bundle
        try:
            self.ssm(inst.region).list_tags_for_resource(ResourceType="Parameter",
                                                         ResourceId=secret_bundle.next_parameter_name(inst.id))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("InvalidResourceId", "ParameterNotFound"):
                return True
            raise
        return False
