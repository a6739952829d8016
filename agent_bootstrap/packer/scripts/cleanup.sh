#!/bin/sh
# Leave no state of the build instance in the image: cloud-init must run the next instance's
# user-data (the bootstrap), and no host key, log or shell history may be shared between agents.
set -eu
cloud-init clean --logs --seed
rm -f /etc/ssh/ssh_host_* /root/.bash_history /home/ec2-user/.bash_history
journalctl --rotate --vacuum-time=1s >/dev/null 2>&1 || true
