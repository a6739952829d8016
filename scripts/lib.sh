# Shared by scripts/setup-and-run and scripts/test: idempotent steps that install and start what
# provisioner, its demo and its tests need on a bare Debian 12 machine (scripts/check-bare-debian
# proves it on a debootstrapped minimal root). Each "start" records what it started so that
# cleanup stops only that.
#
# Debian packages, by step: python3 python3-venv (the .venv), docker.io (the engine), busybox-static
# (the local test and demo images copy its static /usr/bin/busybox), default-jdk-headless (javac,
# jar: the Jenkins emulator's agent.jar), packer, postgresql (tests), groovy default-jre-headless
# junit4 (the Groovy suite), iproute2 (`ip netns`: the EC2 user-data test's network namespace).
# Everything else the scripts use is in Debian's essential set (util-linux: nsenter, unshare).
STARTED_DOCKERD_PID=""

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

apt_install() {  # apt_install PKG... : install missing Debian packages (root only)
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then log "missing Debian packages: ${missing[*]} (run as root or install them)"; return 1; fi
  log "installing ${missing[*]}"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -q >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

ensure_venv() {  # .venv with provisioner installed in editable mode (plus test extras if $1 = test)
  local extras=${1:-}
  if [ ! -x .venv/bin/python ]; then
    command -v python3 >/dev/null 2>&1 || apt_install python3
    # Debian's python3 makes no venv (no ensurepip wheels) until python3-venv is installed
    python3 -m venv .venv >/dev/null 2>&1 || { rm -rf .venv; apt_install python3-venv; python3 -m venv .venv; }
  fi
  local spec=.
  [ -n "$extras" ] && spec=".[$extras]"
  # PEP 517 builds for every package: Debian 12's pip 23.0 would otherwise build sdist-only
  # dependencies (multi-key-dict) with the deprecated `setup.py install` where `wheel` is missing
  .venv/bin/pip install -q --disable-pip-version-check --use-pep517 -e "$spec"
}

ensure_docker() {  # reuse an engine that answers; else start one (and remember to stop it)
  if docker info >/dev/null 2>&1; then return 0; fi
  apt_install docker.io
  if docker info >/dev/null 2>&1; then return 0; fi
  log "starting dockerd"
  local driver
  for driver in overlay2 vfs; do
    dockerd --storage-driver=$driver --iptables=false --bridge=none >/tmp/provisioner-dockerd.log 2>&1 &
    STARTED_DOCKERD_PID=$!
    for _ in $(seq 150); do docker info >/dev/null 2>&1 && return 0; sleep 0.2; done
    kill "$STARTED_DOCKERD_PID" 2>/dev/null; wait "$STARTED_DOCKERD_PID" 2>/dev/null || true
    STARTED_DOCKERD_PID=""
  done
  log "could not start dockerd (see /tmp/provisioner-dockerd.log)"; return 1
}

ensure_busybox() {  # tests/images builds the local job images from Debian's static busybox
  [ -x /usr/bin/busybox ] && ! ldd /usr/bin/busybox >/dev/null 2>&1 && return 0
  apt_install busybox-static
}

ensure_jdk() {  # javac + jar build the Jenkins emulator's stand-in agent.jar
  command -v javac >/dev/null 2>&1 && command -v jar >/dev/null 2>&1 && return 0
  apt_install default-jdk-headless
}

ensure_groovy() {
  apt_install groovy default-jre-headless junit4
}

cleanup_started() {
  if [ -n "$STARTED_DOCKERD_PID" ]; then
    log "stopping the dockerd this script started"
    kill "$STARTED_DOCKERD_PID" 2>/dev/null || true
    wait "$STARTED_DOCKERD_PID" 2>/dev/null || true
  fi
}

ensure_postgres() {  # Debian's PostgreSQL binaries: tests/history/test_postgres.py starts its own throwaway cluster
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && return 0
  apt_install postgresql
}
