"""The secret bundle on the instance: fetched (EC2: an SSM SecureString read then deleted; docker
cloud: the container environment) and written as files, each 0600, in the state directory (a tmpfs
on EC2): `agent-secret` (for `java -jar agent.jar -secret @FILE`), `report.env` (sourced into the
environment of `provisioner run`), `job.env` (a docker env-file for the job container) and
`identity.env` (the agent's node name and run id: not secret, but they travel with the bundle so that
the instances of one batched launch can share one user-data script). The bundle's format is
provisioner/secret_bundle.py, shared with the launcher and the daemon.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from provisioner.secret_bundle import BUNDLE_ENV, SecretError, decode

log = logging.getLogger(__name__)

AGENT_SECRET_FILE, REPORT_ENV_FILE, JOB_ENV_FILE = "agent-secret", "report.env", "job.env"
IDENTITY_ENV_FILE = "identity.env"
REPORT_KEYS = {"report_url": "PROVISIONER_REPORT_URL", "report_token": "PROVISIONER_REPORT_TOKEN"}
IDENTITY_KEYS = {"node_name": "PROVISIONER_NODE_NAME", "run_id": "PROVISIONER_RUN_ID",
                 "reuse": "PROVISIONER_REUSE"}      # EC2 agent reuse: the watcher polls for the next build


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
