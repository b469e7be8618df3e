#!/usr/bin/env bash
# Build the local base images the tests use, when absent (there is no registry on CI machines).
#
# 1. dockyard-ci/bookworm-minbase:1 — `debootstrap --variant=minbase bookworm` + `docker import`.
# 2. every tests/images/<name>/ with a Dockerfile → dockyard-ci/<name>:<content hash of the directory>
#    (the tag is computed by tests/images.py; an existing tag is reused, a changed directory is rebuilt).
#    The build context is a temporary copy of the directory plus `ca-certs/` holding this machine's
#    /usr/local/share/ca-certificates/*.crt, so images can trust the same CAs (egress proxies) without the
#    certificates ever being committed.
#
# Usage: bash .ci/images.sh [NAME ...]     (no NAME: all images)
# Env:   DOCKYARD_DEBIAN_MIRROR (default http://deb.debian.org/debian), DOCKYARD_CA_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MINBASE=${DOCKYARD_MINBASE:-dockyard-ci/bookworm-minbase:1}  # override only to try the bootstrap step
MIRROR=${DOCKYARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_DIR=${DOCKYARD_CA_DIR:-/usr/local/share/ca-certificates}
WORK=""

cleanup() {
  [ -n "$WORK" ] && [ -d "$WORK" ] || return 0
  # debootstrap mounts proc/sys inside its target; never rm -rf through a live mount
  awk -v d="$WORK/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" || true
  done
  rm -rf --one-file-system "$WORK"
  WORK=""
}
trap cleanup EXIT

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if have_image "$MINBASE"; then
  echo "images: $MINBASE present"
else
  command -v debootstrap >/dev/null || { echo "images: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  WORK=$(mktemp -d /var/tmp/dockyard-minbase.XXXXXX)
  echo "images: debootstrap --variant=minbase bookworm ($MIRROR) → $MINBASE"
  debootstrap --variant=minbase bookworm "$WORK/root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
  rm -rf "$WORK"/root/var/cache/apt/archives/*.deb "$WORK"/root/var/lib/apt/lists/*
  tar -C "$WORK/root" --numeric-owner -c . \
    | docker import -m "debootstrap --variant=minbase bookworm" - "$MINBASE" >/dev/null
  cleanup
fi

if [ $# -gt 0 ]; then names=("$@"); else mapfile -t names < <(python3 "$ROOT/tests/images.py" list); fi

for name in "${names[@]}"; do
  tag=$(python3 "$ROOT/tests/images.py" tag "$name")
  if have_image "$tag"; then
    echo "images: $tag present"
    continue
  fi
  WORK=$(mktemp -d /var/tmp/dockyard-image.XXXXXX)
  mkdir "$WORK/ctx"
  cp -a "$ROOT/tests/images/$name/." "$WORK/ctx/"
  mkdir -p "$WORK/ctx/ca-certs"
  if compgen -G "$CA_DIR/*.crt" >/dev/null; then cp "$CA_DIR"/*.crt "$WORK/ctx/ca-certs/"; fi
  echo "images: building $tag"
  start=$SECONDS
  docker build --label "dockyard-ci.image=$name" -t "$tag" "$WORK/ctx" >"$WORK/build.log" 2>&1 || {
    echo "images: building $tag failed:" >&2; tail -n 40 "$WORK/build.log" >&2; exit 1; }
  echo "images: built $tag in $((SECONDS - start))s"
  cleanup
done
