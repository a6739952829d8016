"""The secret bundle: agent secret, report URL and token, and the job's environment.

None of it is ever in user-data or on a command line. The launcher hands the bundle over as JSON:
on the docker cloud in the instance container's environment (`PROVISIONER_SECRETS`), on EC2 in an
SSM SecureString parameter that the instance reads and then deletes (the instance role may read
only parameters tagged with its own ARN, see provisioner/clouds/iam/instance-policy.json). On the
instance the bundle becomes three files, each 0600, in the state directory (a tmpfs on EC2):
`agent-secret` (for `java -jar agent.jar -secret @FILE`), `report.env` (sourced into the
environment of `provisioner run`), `job.env` (a docker env-file for the job container) and
`identity.env` (the agent's node name and run id: not secret, but they travel with the bundle so that
the instances of one batched launch can share one user-data script).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

BUNDLE_ENV = "PROVISIONER_SECRETS"
PARAMETER_PREFIX = "/provisioner/agents/"
AGENT_SECRET_FILE, REPORT_ENV_FILE, JOB_ENV_FILE = "agent-secret", "report.env", "job.env"
IDENTITY_ENV_FILE = "identity.env"
REPORT_KEYS = {"report_url": "PROVISIONER_REPORT_URL", "report_token": "PROVISIONER_REPORT_TOKEN"}
IDENTITY_KEYS = {"node_name": "PROVISIONER_NODE_NAME", "run_id": "PROVISIONER_RUN_ID",
                 "reuse": "PROVISIONER_REUSE"}      # EC2 agent reuse: the watcher polls for the next build
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


# ---- on the instance --------------------------------------------------------------------------

def from_env(environ: Mapping[str, str], name: str = BUNDLE_ENV) -> dict:
    text = environ.get(name)
    if text is None:
        raise SecretError(f"no secret bundle: ${name} is not set in the instance's environment")
    return decode(text, f"${name}")


def from_ssm(name: str, client: Any, *, wait_s: float = 600.0, poll_s: float = 2.0,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> dict:
    """Read the SecureString (waiting for it: the launcher writes it once the instance exists, to
    tag it with the instance's ARN), then delete it, so the secret lives only in the 0600 files."""
    deadline = clock() + wait_s
    while True:
        try:
            value = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
            break
        except client.exceptions.ParameterNotFound:
            if clock() >= deadline:
                raise SecretError(f"SSM parameter {name} did not appear within {wait_s:g} s") from None
            sleep(poll_s)
    try:
        client.delete_parameter(Name=name)
    except client.exceptions.ParameterNotFound:
        pass                                   # another reader won; we still hold the value
    return decode(value, f"SSM parameter {name}")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)                      # an existing file keeps its old mode on O_CREAT


def write_files(bundle: Mapping[str, Any], state_dir: Path) -> list[Path]:
    """The bundle as 0600 files in `state_dir`; returns the paths written (report.env, job.env and
    identity.env always exist, possibly empty, so the bootstrap can use them unconditionally)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    if bundle.get("agent_secret"):
        path = state_dir / AGENT_SECRET_FILE
        _write_private(path, str(bundle["agent_secret"]))
        written.append(path)
    _write_private(state_dir / REPORT_ENV_FILE, _exports(bundle, REPORT_KEYS))
    _write_private(state_dir / IDENTITY_ENV_FILE, _exports(bundle, IDENTITY_KEYS))
    lines = []
    for key, value in (bundle.get("job_env") or {}).items():
        if "\n" in value or "\r" in value:
            # docker's env-file format has no quoting; the name is safe to log, the value is not.
            log.warning("job environment variable %s holds a line break: not passed", key)
            continue
        lines.append(f"{key}={value}\n")
    _write_private(state_dir / JOB_ENV_FILE, "".join(lines))
    written += [state_dir / REPORT_ENV_FILE, state_dir / JOB_ENV_FILE, state_dir / IDENTITY_ENV_FILE]
    return written


def _exports(bundle: Mapping[str, Any], keys: Mapping[str, str]) -> str:
    """Shell assignments (quoted) for the bundle's `keys` that are present."""
    return "".join(f"{var}={shlex.quote(str(bundle[key]))}\n" for key, var in keys.items() if bundle.get(key))


# ---- on the launcher (EC2) --------------------------------------------------------------------

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
