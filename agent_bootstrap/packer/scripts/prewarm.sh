#!/bin/sh
# Pre-pull the images jobs use most (space-separated), and pre-clone a repository, so a fresh
# instance starts its job without downloading them. Both optional.
set -eu
systemctl start docker
for image in $PREPULL_IMAGES; do
  docker pull -q "$image"
done
if [ -n "$GIT_REPO" ]; then
  git clone -q ${GIT_REF:+--branch "$GIT_REF"} "$GIT_REPO" /var/lib/provisioner/repo
fi
