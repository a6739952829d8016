"""The secret bundle: agent secret, report URL and token, and the job's environment.

None of it is ever in user-data or on a command line. The launcher (`run --remote`) and the daemon
hand the bundle over as JSON: on the docker cloud in the instance container's environment
(`PROVISIONER_SECRETS`), on EC2 in an SSM SecureString parameter that the instance reads and then
deletes (the instance role may read only parameters tagged with its own ARN, see
provisioner/clouds/iam/instance-policy.json). This module is the format both sides share (build,
encode, decode, parameter names, the SSM put and delete); provisioner/agent/secrets.py reads the
bundle on the instance into its files.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

BUNDLE_ENV = "PROVISIONER_SECRETS"
PARAMETER_PREFIX = "/provisioner/agents/"
NEXT_SUFFIX = ".next"


class SecretError(RuntimeError):
    """The bundle could not be fetched or is malformed (the message never holds a secret value)."""


def make_bundle(*, agent_secret: str | None = None, report_url: str | None = None,
                report_token: str | None = None, job_env: Mapping[str, str] | None = None,
                node_name: str | None = None, run_id: str | None = None, reuse: bool = False) -> dict:
    """The bundle as the launcher builds it; empty parts are left out. `reuse`: the agent may be
    handed its job's next build (EC2: through `next_parameter_name`, provisioner/agent/nextbuild.py)."""
    out: dict[str, Any] = {}
    for key, value in (("agent_secret", agent_secret), ("report_url", report_url),
                       ("report_token", report_token), ("node_name", node_name), ("run_id", run_id),
                       ("reuse", "1" if reuse else None)):
        if value:
            out[key] = value
    if job_env:
        out["job_env"] = dict(job_env)
    return out


def encode(bundle: Mapping[str, Any]) -> str:
    return json.dumps(dict(bundle), separators=(",", ":"), sort_keys=True)


def decode(text: str, where: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        raise SecretError(f"the secret bundle from {where} is not JSON") from None
    if not isinstance(value, dict):
        raise SecretError(f"the secret bundle from {where} is not a JSON object")
    env = value.get("job_env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise SecretError(f"the secret bundle from {where}: job_env must map names to strings")
    return value


def parameter_name(run_id: str) -> str:
    """The SSM parameter of one instance's bundle (the IAM policies grant /provisioner/agents/*)."""
    return PARAMETER_PREFIX + "".join(c if c.isalnum() or c in "-_." else "-" for c in run_id)


def next_parameter_name(instance_id: str) -> str:
    """EC2 agent reuse: the SSM parameter of the bundle for the instance's next build (same prefix,
    same ARN tag: the instance policy that lets it read its first bundle lets it read this one)."""
    return parameter_name(instance_id + NEXT_SUFFIX)


# ---- on the launcher and the daemon (EC2) ---------------------------------------------------

def put_ssm(client: Any, name: str, bundle: Mapping[str, Any], instance_arn: str) -> None:
    """Store the bundle for one instance, tagged with its ARN (the instance policy's condition)."""
    client.put_parameter(Name=name, Value=encode(bundle), Type="SecureString", Overwrite=False,
                         Tags=[{"Key": "provisioner:instance-arn", "Value": instance_arn}],
                         Description="provisioner agent secret bundle; the instance deletes it on read")


def delete_ssm(client: Any, name: str) -> None:
    """Remove a bundle the instance never read (failed launch, instance gone); absent is fine."""
    try:
        client.delete_parameter(Name=name)
    except client.exceptions.ParameterNotFound:
        pass
