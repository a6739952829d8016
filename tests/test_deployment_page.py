"""docs/deployment.md, followed literally: every `$` command of its console blocks runs in order
(except a block marked "not run by the tests"), from the repository root, with AWS pointed at moto,
the daemon image built on the local Python test image, and /etc/provisioner replaced by a scratch
folder on the host side (the only change to the commands' text)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "deployment.md"
pytestmark = [pytest.mark.docker, pytest.mark.moto, pytest.mark.slow]


def commands(text: str) -> list[str]:
    """The `$` lines of the console blocks (backslash continuations joined), in order."""
    out, skip = [], False
    for block in re.finditer(r"(<!-- not run by the tests[^>]*-->\s*)?```console\n(.*?)```", text, re.S):
        if block.group(1):
            continue
        lines = block.group(2).splitlines()
        current = None
        for line in lines:
            if line.startswith("$ "):
                current = line[2:]
            elif current is not None and line.startswith(" "):
                current = current[:-1].rstrip() + " " + line.strip()   # a continuation
            else:
                current = None                                         # output
                continue
            if not current.endswith("\\"):
                out.append(current)
                current = None
    return out


def test_the_page_has_the_steps_the_issue_names():
    cmds = commands(PAGE.read_text())
    assert any(c.startswith("scripts/build-daemon-image") for c in cmds)
    assert any("daemon --check" in c for c in cmds)
    assert any("cloudformation/deploy.py" in c for c in cmds)
    assert not any(c.startswith("docker run -d") for c in cmds)     # needs a Jenkins: not run


def test_the_deployment_page_works_as_written(tmp_path, moto_env, pyimage):
    etc = tmp_path / "etc-provisioner"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "AWS_ENDPOINT_URL": moto_env, "BASE": pyimage}
    outputs = []
    for command in commands(PAGE.read_text()):
        command = re.sub(r"(?<!:)/etc/provisioner", str(etc), command)   # host side of a -v only
        done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"$ {command}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    assert any("stack provisioner: CREATE_COMPLETE" in o for o in outputs)
    assert any(o.strip().endswith("/etc/provisioner/config.yaml: valid") for o in outputs)
