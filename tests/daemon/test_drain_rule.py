"""The one drain decision (provisioner.daemon.drain_rule): drain once a build runs, never twice, never
a node that is only assigned an item."""

from provisioner.daemon.drain_rule import build_started


def test_drain_once_the_build_started():
    assert build_started(["job #1"], drained=False)
    assert build_started(True, drained=False)               # the agent reported its build
    assert not build_started(["job #1"], drained=True)       # already drained
    assert not build_started([], drained=False)              # assigned, no build shown yet
    assert not build_started((), drained=True)
