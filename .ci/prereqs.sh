#!/usr/bin/env bash
# The system pieces dockyard's local sandbox and its tests use: a Docker engine (started if none answers),
# OpenSSH (the tests' SSH server and ssh-keygen) and debootstrap (local base images when no registry is
# reachable). Installs only what is missing (Debian/Ubuntu, as root); safe to run again.
set -euo pipefail
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "prereqs: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi
# the engine is shared with anything else on the machine: dockyard and its tests only ever add to it
if ! docker info >/dev/null 2>&1; then
  echo "prereqs: starting dockerd (log: /var/log/dockyard-dockerd.log)"
  setsid dockerd >/var/log/dockyard-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockyard-dockerd.log" >&2; exit 1; }
fi
echo "prereqs: docker engine $(docker version --format '{{.Server.Version}}') answers"
