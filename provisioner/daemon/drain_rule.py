"""When an agent is drained: once its one build has started (pure; the daemon's tick, its between-tick
poll and the agent API's report all decide with this)."""

from __future__ import annotations


def build_started(builds: object, drained: bool) -> bool:
    """True when a build runs on the node (`builds`: what Jenkins shows on its executors, or True for an
    agent that reported its build) and the node is not drained yet: drain it now. A node only
    assigned an item (busy, no build shown) is left alone until its build shows."""
    return bool(builds) and not drained
