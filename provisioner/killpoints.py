"""Kill points: a test hook that SIGKILLs this process between two steps of a multi-step action.

The cloud adapters and the daemon's loop call `reached("step")` between the API calls of a launch, a
hand-over or a retirement, so a test can prove that a restarted daemon finishes or removes whatever a
crash at that very point left (a container created but never started, a fleet launched but never
tagged, a node deleted but its instance not yet terminated).

`PROVISIONER_KILL_AT=STEP[@N][,STEP[@N]...]`: the process kills itself the N-th time (default: the
first) it reaches STEP. Read once at import; unset (always, outside tests) `reached` is one test of
a module global. The steps:

  docker.created        the instance container exists, its user-data not copied yet
  docker.copied         the user-data is in, the container not started
  ec2.fleet-created     CreateFleet answered, no CreateTags sent yet (a batch's node tags)
  ec2.tagged            one instance of a batch tagged (N counts instances)
  launch.node-created   the daemon made the node, the cloud launch not sent
  launch.launched       the cloud launched, the secret hand-over (EC2: the SSM put) not done
  handover              before putting a bundle a restart found missing
  retire.node-deleted   a node deleted, its instance not yet terminated
  process.created       the tests' process cloud: an instance recorded, its agent not started

A step not in this list is refused when the variable is read, so a misspelt step cannot leave a
test believing it killed where nothing ever fires.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "PROVISIONER_KILL_AT"
STEPS = ("docker.created", "docker.copied", "ec2.fleet-created", "ec2.tagged", "launch.node-created",
         "launch.launched", "handover", "retire.node-deleted", "process.created",
         "pool.node-created")


def parse(value: str | None) -> dict[str, int] | None:
    """`STEP[@N],...` as {step: n}; None when unset or empty. An unknown step or a bad count is a
    clear error."""
    if not value or not value.strip():
        return None
    plan: dict[str, int] = {}
    for part in value.split(","):
        step, _, count = (s.strip() for s in part.partition("@"))
        if not step:
            continue
        if step not in STEPS:
            raise ValueError(f"{ENV}: {part!r}: no kill point {step!r} (known: {', '.join(STEPS)})")
        if count and not (count.isdigit() and int(count) >= 1):
            raise ValueError(f"{ENV}: {part!r}: the count after '@' must be a whole number >= 1")
        plan[step] = int(count or 1)
    return plan or None


_plan = parse(os.environ.get(ENV))
_seen: dict[str, int] = {}
_lock = threading.Lock()


def reached(step: str) -> None:
    """SIGKILL this process if the test asked for it at this step (and this is the N-th time)."""
    if _plan is None or step not in _plan:
        return
    with _lock:
        _seen[step] = _seen.get(step, 0) + 1
        if _seen[step] != _plan[step]:
            return
    os.write(2, f"kill point {step}@{_plan[step]}: SIGKILL\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
