"""The Packer template of the pre-warmed image passes Debian's packer 1.6.6 `packer validate`
(x86_64, arm64, the GPU builder), and its scripts parse as POSIX shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "agent_bootstrap" / "packer" / "agent.json"


@pytest.fixture(scope="module")
def packer() -> str:
    found = shutil.which("packer")
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "packer"], capture_output=True, timeout=300)
        found = shutil.which("packer")
    if not found:
        pytest.skip("packer cannot be installed here (Debian: apt-get install packer, as root)")
    return found


@pytest.mark.parametrize("variables", [[], ["-var", "arch=arm64", "-var", "instance_type=m7g.large"],
                                       ["-only=gpu", "-var", "gpu_instance_type=g5.xlarge"]],
                         ids=["x86_64", "arm64", "gpu"])
def test_packer_validate(packer, variables):
    done = subprocess.run([packer, "validate", *variables, str(TEMPLATE)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_template_builds_both_variants_and_runs_every_script():
    data = json.loads(TEMPLATE.read_text())
    assert {b["name"] for b in data["builders"]} == {"cpu", "gpu"}
    scripts = [p["script"].replace("{{template_dir}}/", "") for p in data["provisioners"]]
    assert scripts == ["scripts/install-base.sh", "scripts/install-gpu.sh", "scripts/prewarm.sh", "scripts/cleanup.sh"]
    for script in scripts:
        path = TEMPLATE.parent / script
        assert subprocess.run(["sh", "-n", str(path)]).returncode == 0, script
    gpu = next(p for p in data["provisioners"] if p["script"].endswith("install-gpu.sh"))
    assert gpu["only"] == ["gpu"]


# AWS' names of the DLAMI base images (x86_64 and arm64 spell the architecture differently).
DLAMI_NAMES = {"x86_64": "Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) 20241115",
               "arm64": "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) 20241115"}


@pytest.mark.parametrize("arch", sorted(DLAMI_NAMES))
def test_gpu_source_filter_matches_the_dlami_of_either_architecture(arch):
    """EC2's name filter is a glob (`*` any run of characters); the architecture filter picks the arch."""
    import fnmatch
    gpu = next(b for b in json.loads(TEMPLATE.read_text())["builders"] if b["name"] == "gpu")
    filters = gpu["source_ami_filter"]["filters"]
    assert fnmatch.fnmatchcase(DLAMI_NAMES[arch], filters["name"])
    assert filters["architecture"] == "{{user `arch`}}"


def test_the_image_does_not_take_over_python3():
    """A build's python3/pip must stay the system's: only provisioner's own commands are linked."""
    script = (TEMPLATE.parent / "scripts" / "install-base.sh").read_text()
    links = [line.split()[-1] for line in script.splitlines() if line.startswith("ln -s")]
    assert links == ["/usr/local/bin/provisioner", "/usr/local/bin/provisioner-agent"]
