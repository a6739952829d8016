"""Build (or find) the local test images: `python -m tests.images`."""

import docker

from tests.images import busybox_image, python_image

client = docker.from_env()
print(busybox_image(client))
print(python_image(client))
