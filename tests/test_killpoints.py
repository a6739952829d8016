"""Kill points (provisioner.killpoints): the test hook that SIGKILLs a process at a named step."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from provisioner import killpoints
from tests.conftest import ROOT


def test_parse_steps_and_counts():
    assert killpoints.parse(None) is None and killpoints.parse(" ") is None
    assert killpoints.parse("launch.launched") == {"launch.launched": 1}
    assert killpoints.parse("retire.node-deleted@3, ec2.tagged@2") == {"retire.node-deleted": 3, "ec2.tagged": 2}


@pytest.mark.parametrize("value,says", [("launch.lunched", "no kill point 'launch.lunched'"),
                                        ("handover@0", "whole number >= 1"), ("handover@x", "whole number >= 1")],
                         ids=["misspelt-step", "count-zero", "count-not-a-number"])
def test_a_step_that_could_never_fire_is_refused_by_name(value, says):
    with pytest.raises(ValueError, match=re.escape(says)) as err:
        killpoints.parse(value)
    assert killpoints.ENV in str(err.value)


def _run(kill_at: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), killpoints.ENV: kill_at})


def test_the_process_dies_the_nth_time_it_reaches_the_step_and_not_before():
    code = ("from provisioner import killpoints\nimport sys\n"
            "for i in range(1, 4):\n    print(i, flush=True)\n    killpoints.reached('launch.launched')\n"
            "    killpoints.reached('handover')\n")
    proc = _run("launch.launched@3", code)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split() == ["1", "2", "3"]
    assert "kill point launch.launched@3: SIGKILL" in proc.stderr
    assert _run("launch.launched@4", code).returncode == 0          # never the 4th time: it lives


def test_every_known_step_is_reached_somewhere_and_every_reached_step_is_known():
    calls = set()
    for folder in (ROOT / "provisioner", ROOT / "tests" / "daemon"):
        for path in folder.rglob("*.py"):
            calls |= set(re.findall(r"killpoints\.reached\(\"([^\"]+)\"\)", path.read_text()))
    assert calls == set(killpoints.STEPS)
