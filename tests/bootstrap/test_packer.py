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


STAND_INS = {
    # each records its argv in /calls, then plays its part
    "dnf": "", "apt-get": "", "systemctl": "", "usermod": "", "curl": "",
    "useradd": 'echo "jenkins:x:990:990::/home/jenkins:/bin/bash" >> /etc/passwd',
    "install": 'while [ $# -gt 0 ]; do case "$1" in -d) ;; -m) shift ;; *) mkdir -p "$1" ;; esac; shift; done',
    "python3.11": 'mkdir -p "$3/bin"; for c in pip provisioner provisioner-agent; do '
                  'printf "#!/bin/sh\\necho %s \\"\\$@\\" >> /calls\\n" "$c" > "$3/bin/$c"; chmod +x "$3/bin/$c"; done',
}


@pytest.mark.docker
@pytest.mark.parametrize("distro", ["al2023-dnf", "debian-apt"])
def test_install_base_on_either_package_manager(distro, docker_client, busybox, tmp_path):
    """AL2023 itself cannot be fetched here: the script runs in a container with stand-ins for the
    package managers and system tools, and what it asked of them is checked (unverified on a real
    AL2023, as docs say)."""
    import io
    import tarfile
    stand_ins = dict(STAND_INS)
    if distro == "debian-apt":
        del stand_ins["dnf"]
        stand_ins["python3"] = stand_ins.pop("python3.11")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, text: str, mode: int = 0o755) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        add("Dockerfile", f"FROM {busybox}\nCOPY fake/ /usr/local/bin/\nCOPY install-base.sh /\n", 0o644)
        for name, body in stand_ins.items():
            add(f"fake/{name}", f'#!/bin/sh\necho {name} "$@" >> /calls\n{body}\nexit 0\n')
        add("install-base.sh", (TEMPLATE.parent / "scripts" / "install-base.sh").read_text())
    tag = f"provisioner-test/install-base-{distro}:1"
    docker_client.images.build(fileobj=io.BytesIO(buf.getvalue()), custom_context=True, tag=tag, rm=True)
    script = ("sh -eu /install-base.sh && cat /calls && echo --- && ls -l /usr/local/bin/provisioner "
              "/usr/local/bin/provisioner-agent && echo --- && readlink /usr/local/bin/python3 || true")
    out = docker_client.containers.run(tag, ["sh", "-c", script], remove=True, network_mode="none",
                                       environment={"PROVISIONER_PIP_SPEC": "provisioner==0.1.0", "PIP_INDEX_URL": "",
                                                    "JENKINS_URL": "https://jenkins.example.com/"}).decode()
    calls, links, python3 = out.split("---\n")
    lines = calls.splitlines()
    if distro == "al2023-dnf":
        assert lines[0].startswith("dnf install -y -q docker java-17-amazon-corretto-headless python3.11")
        assert not any(line.startswith("apt-get") for line in lines)
    else:
        assert lines[:2] == ["apt-get update -q", lines[1]] and "openjdk-17-jre-headless" in lines[1]
    assert "systemctl enable docker" in lines
    assert "pip install -q provisioner==0.1.0" in lines
    assert any(line.startswith("useradd --system") and line.endswith(" jenkins") for line in lines)
    assert "usermod -aG docker jenkins" in lines
    assert "curl -fsSL https://jenkins.example.com/jnlpJars/agent.jar -o /usr/share/provisioner/agent.jar" in lines
    assert "-> /opt/provisioner/bin/provisioner" in links and "-> /opt/provisioner/bin/provisioner-agent" in links
    assert "/opt/provisioner" not in python3                        # python3 stays the system's


def test_the_image_scripts_pass_shellcheck():
    if not shutil.which("shellcheck"):
        if os.environ.get("CI"):
            pytest.fail("shellcheck is missing: scripts/test installs it")
        pytest.skip("shellcheck is not installed")
    scripts = sorted((TEMPLATE.parent / "scripts").glob("*.sh"))
    done = subprocess.run(["shellcheck", "-s", "sh", *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
