"""EC2 agent reuse on the instance (labels.<expr>.reuse; the daemon's side is daemon/reuse.py).

The daemon cannot reach into an EC2 instance, so the hand-over is pulled: when the daemon gives an
agent whose build ended the next build of its job, it puts the next secret bundle (same node and
agent secret, a new report token) into the SSM SecureString `/provisioner/agents/<instance id>.next`,
tagged with the instance's ARN as the first bundle is (never in user-data or tags). The watcher,
only when the bundle said `reuse`, looks for it every poll (the daemon puts it only once Jenkins says
the build ended: what the build left running may still look like a build here); once there it is
written to `next-bundle` in the state directory (0600) with the parameter's name next to it, and the
agent is stopped. The bootstrap then runs `provisioner-agent recycle` (agent/recycle.py): the last
build's processes killed, its containers removed, the workspace wiped, the new bundle in place, and
only then the parameter deleted: that deletion tells the daemon the old agent is gone, and the node
is put online for the waiting build once the new agent connects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

NEXT_BUNDLE, NEXT_PARAMETER = "next-bundle", "next-bundle.parameter"
ABSENT = ("ParameterNotFound", "AccessDeniedException")   # the instance policy denies a name not tagged yet


class NextBuild:
    """One poll of the instance's next-build parameter; `client()` is an SSM client (made on demand)."""

    def __init__(self, instance_id: str, state_dir: Path, client: Callable[[], Any],
                 out: Callable[[str], None] = print):
        from provisioner import secret_bundle
        self.name = secret_bundle.next_parameter_name(instance_id)
        self.state_dir, self._client, self.out = state_dir, client, out
        self._made: Any = None
        self._failed = False

    @classmethod
    def from_env(cls, environ: dict, state_dir: Path, out: Callable[[str], None]) -> "NextBuild | None":
        """On an EC2 agent whose bundle said reuse; else None (one build per agent, as by default)."""
        if environ.get("PROVISIONER_REUSE") != "1" or not environ.get("PROVISIONER_INSTANCE_ID"):
            return None
        region = environ.get("PROVISIONER_REGION")

        def client() -> Any:
            from provisioner import aws
            return aws.client("ssm", region=region)
        return cls(environ["PROVISIONER_INSTANCE_ID"], state_dir, client, out)

    def poll(self) -> bool:
        """True when the next build's bundle is here (now in `next-bundle`); False while it is not.
        A failure is reported once and reads as absent: the agent then ends as without reuse."""
        from botocore.exceptions import BotoCoreError, ClientError

        from provisioner import secret_bundle
        try:
            if self._made is None:
                self._made = self._client()
            value = self._made.get_parameter(Name=self.name, WithDecryption=True)["Parameter"]["Value"]
            secret_bundle.decode(value, f"SSM parameter {self.name}")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ABSENT:
                self._warn(f"{exc.response.get('Error', {}).get('Code')}")
            return False
        except (BotoCoreError, secret_bundle.SecretError) as exc:
            self._warn(f"{type(exc).__name__}: {exc}")
            return False
        _write_private(self.state_dir / NEXT_BUNDLE, value)
        _write_private(self.state_dir / NEXT_PARAMETER, self.name)
        self.out("provisioner-watcher: the next build of this job was handed over: restarting the agent")
        return True

    def _warn(self, what: str) -> None:
        if not self._failed:
            self.out(f"provisioner-watcher: warning: cannot read the next build's bundle: {what}")
        self._failed = True


def done(state_dir: Path, environ: dict) -> None:
    """After the recycle: delete the next build's parameter (the daemon reads that as 'the old agent
    is gone'). Raises on failure: the recycle then fails and the instance ends as without reuse."""
    marker = state_dir / NEXT_PARAMETER
    if not marker.is_file():
        return                                         # the docker cloud: the bundle came by copy
    from provisioner import aws
    from provisioner import secret_bundle
    secret_bundle.delete_ssm(aws.client("ssm", region=environ.get("PROVISIONER_REGION")), marker.read_text().strip())
    marker.unlink()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
