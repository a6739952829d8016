"""`provisioner-agent recycle`: agent reuse on the instance (labels.<expr>.reuse; daemon/reuse.py).

The daemon hands an agent whose build ended the next build of the same job by writing a new secret
bundle next to the old one (`next-bundle` in the state directory: the same node and agent secret, a
new report token) and stopping the agent process (docker cloud); on EC2 the watcher fetches that
bundle from SSM and stops the agent itself (agent/nextbuild.py), and the parameter is deleted here
once the new bundle is in place. The bootstrap then runs this command before it
starts the agent again: every process the last build left is killed, every container it started
removed, its workspace wiped, and the new bundle put in place (report.env with the new token). Any
failure exits non-zero and the bootstrap shuts the instance down as after a single build.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Iterable

NEXT_BUNDLE = "next-bundle"


def leftovers(procs: Iterable[tuple[int, int, int]], keep: set[int], agent_uid: int | None) -> list[int]:
    """The pids to kill, from (pid, ppid, uid) rows: with builds under their own user (the image's
    `jenkins`), every process of that user; in an instance container (builds run as root), every
    process but pid 1 and `keep` (this command and the bootstrap that runs it). Pure."""
    rows = list(procs)
    if agent_uid not in (None, 0):
        return sorted(pid for pid, _, uid in rows if uid == agent_uid and pid not in keep)
    return sorted(pid for pid, _, _ in rows if pid != 1 and pid not in keep)


def _procs() -> list[tuple[int, int, int]]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            out.append((int(entry.name), ppid, entry.stat().st_uid))
        except (OSError, ValueError, IndexError):
            continue                                   # it ended meanwhile
    return out


def _ancestors(pid: int, procs: list[tuple[int, int, int]]) -> set[int]:
    parent = {p: pp for p, pp, _ in procs}
    seen = set()
    while pid and pid not in seen:
        seen.add(pid)
        pid = parent.get(pid, 0)
    return seen


def kill_leftovers(agent_uid: int | None) -> list[int]:
    procs = _procs()
    victims = leftovers(procs, _ancestors(os.getpid(), procs), agent_uid)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return victims


def remove_build_containers(instance_id: str) -> int:
    """The containers `provisioner run` started on this instance (owner label `<instance id>:pid`)."""
    if not instance_id or not Path("/var/run/docker.sock").exists():
        return 0
    import docker
    client = docker.from_env()
    n = 0
    for c in client.containers.list(all=True, filters={"label": "provisioner:kind=run"}):
        if (c.labels or {}).get("provisioner:owner", "").startswith(instance_id + ":"):
            c.remove(force=True)
            n += 1
    return n


def wipe(work_dir: Path) -> None:
    """Empty the agent's workspace (the builds' checkouts and outputs); the agent's own files stay."""
    ws = work_dir / "workspace"
    if ws.is_dir():
        for child in ws.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=False)
            else:
                child.unlink()


def main(state_dir: Path, work_dir: Path, agent_user: str | None) -> int:
    from provisioner import secret_bundle
    from provisioner.agent import secrets
    nxt = state_dir / NEXT_BUNDLE
    if not nxt.is_file():
        print("provisioner-agent: no next build was handed over", file=sys.stderr)
        return 1
    try:
        bundle = secret_bundle.decode(nxt.read_text(), str(nxt))
        nxt.unlink()
        uid = None
        if agent_user:
            import pwd
            uid = pwd.getpwnam(agent_user).pw_uid
        killed = kill_leftovers(uid)
        removed = remove_build_containers(os.environ.get("PROVISIONER_INSTANCE_ID", ""))
        wipe(work_dir)
        secrets.write_files(bundle, state_dir)
        from provisioner.agent import nextbuild        # EC2: the daemon reads this as the old agent gone
        nextbuild.done(state_dir, dict(os.environ))
    except Exception as exc:                          # noqa: BLE001 - the instance then shuts down
        print(f"provisioner-agent: recycle failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"provisioner-agent: recycled for the next build ({len(killed)} processes killed, "
          f"{removed} containers removed, workspace wiped)", flush=True)
    return 0
