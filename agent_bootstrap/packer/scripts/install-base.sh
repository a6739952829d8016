#!/bin/sh
# Docker, Java 17 (for agent.jar), Python 3.11 with provisioner, and agent.jar when a controller is
# named. Amazon Linux 2023 (dnf). Runs as root during the Packer build.
set -eu
dnf install -y -q docker java-17-amazon-corretto-headless python3.11 python3.11-pip git
systemctl enable docker
# provisioner and its dependencies, in a venv so the system python stays as AL2023 ships it.
python3.11 -m venv /opt/provisioner
/opt/provisioner/bin/pip install -q --upgrade pip
/opt/provisioner/bin/pip install -q ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} "$PROVISIONER_PIP_SPEC"
# Only provisioner's own commands lead into its venv: python3 and pip on PATH stay the system's, so
# a build's `pip install` never lands in (or breaks) provisioner's environment. The bootstrap calls
# the stable entry point `provisioner-agent`, never a module path.
ln -sf /opt/provisioner/bin/provisioner /usr/local/bin/provisioner
ln -sf /opt/provisioner/bin/provisioner-agent /usr/local/bin/provisioner-agent
install -d -m 0755 /usr/share/provisioner /var/lib/provisioner /var/lib/provisioner/checkpoint /var/lib/jenkins-agent
if [ -n "$JENKINS_URL" ]; then
  # Baked in: the bootstrap downloads it at boot only when this file is missing.
  curl -fsSL "${JENKINS_URL%/}/jnlpJars/agent.jar" -o /usr/share/provisioner/agent.jar
fi
