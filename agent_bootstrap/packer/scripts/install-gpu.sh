#!/bin/sh
# GPU variant: the source AMI (AWS Deep Learning Base, AL2023) has the NVIDIA driver and the
# container toolkit; make Docker use the toolkit so `provisioner run --gpus all` works, and check.
set -eu
command -v nvidia-ctk >/dev/null || dnf install -y -q nvidia-container-toolkit
nvidia-ctk runtime configure --runtime=docker
systemctl restart docker
nvidia-smi -L || echo "no GPU on the build instance: the driver is checked at first boot"
