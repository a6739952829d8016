#!/bin/sh
# Docker, Java 17 (for agent.jar), Python 3.11 with provisioner in a venv of its own, agent.jar when
# a controller is named, and the unprivileged `jenkins` user that builds run as. Amazon Linux 2023
# (dnf) or Debian 12 (apt-get). Runs as root during the Packer build.
set -eu
if command -v dnf >/dev/null 2>&1; then
  dnf install -y -q docker java-17-amazon-corretto-headless python3.11 python3.11-pip git util-linux
  python=python3.11
elif command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q docker.io openjdk-17-jre-headless python3 python3-venv git util-linux curl
  python=python3
else
  echo "install-base.sh: no dnf or apt-get: Amazon Linux 2023 or Debian 12 expected" >&2
  exit 1
fi
systemctl enable docker
# provisioner and its dependencies, in a venv so the system python stays as the distribution ships it.
"$python" -m venv /opt/provisioner
/opt/provisioner/bin/pip install -q --upgrade pip
/opt/provisioner/bin/pip install -q ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} "$PROVISIONER_PIP_SPEC"
# Only provisioner's own commands lead into its venv: python3 and pip on PATH stay the system's, so
# a build's `pip install` never lands in (or breaks) provisioner's environment. The bootstrap calls
# the stable entry point `provisioner-agent`, never a module path.
ln -sf /opt/provisioner/bin/provisioner /usr/local/bin/provisioner
ln -sf /opt/provisioner/bin/provisioner-agent /usr/local/bin/provisioner-agent
install -d -m 0755 /usr/share/provisioner /var/lib/provisioner /var/lib/provisioner/checkpoint /var/lib/jenkins-agent
# Builds run as `jenkins`, never as root (the bootstrap starts agent.jar as this user). Membership of
# the docker group lets builds start containers; on this single-build machine that is the build's
# own host, but it is root-equivalent there: drop it (usermod -rG docker jenkins in an init script)
# for builds that need no Docker.
id -u jenkins >/dev/null 2>&1 || useradd --system --create-home --home-dir /home/jenkins --shell /bin/bash jenkins
usermod -aG docker jenkins
if [ -n "$JENKINS_URL" ]; then
  # Baked in: the bootstrap downloads it at boot only when this file is missing.
  curl -fsSL "${JENKINS_URL%/}/jnlpJars/agent.jar" -o /usr/share/provisioner/agent.jar
fi
