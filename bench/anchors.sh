#!/usr/bin/env bash
# Side-by-side benchmark: Ansible, pyinfra and dockyard on the anchors job (3 apps on one host over SSH),
# interleaved in one pass (each round runs every tool once, the order rotated per round), the same checks
# after every run for every tool. Prints medians; asserts correctness, never time. See bench/README.md.
#
#   bash bench/anchors.sh                              # REPS=3 NOOP_RUNS=7, all three tools (~15 min quiet)
#   REPS=1 NOOP_RUNS=2 bash bench/anchors.sh           # a small pass to check that it works end to end
#   TOOLS=dockyard bash bench/anchors.sh               # one tool (still the anchors' sshd and checks)
#   NOOP_VARIANTS=ansible-warm bash bench/anchors.sh   # also time ansible re-using its ControlPersist master
#   BYTECODE=0 bash bench/anchors.sh                   # dockyard without compiled bytecode
# Needs: a running dockerd, openssh-server, busybox-static (for local/busybox:1), PyPI for the anchors' venv.
# Leaves nothing behind: the anchors' clean.sh plus dockyard's labelled objects after every run and on exit,
# and the sshd is stopped if this script started it. Results: bench/results/interleaved/{summary.md,runs.csv,logs/}.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
SRC="${ANCHORS_SRC:-}"
if [ -z "$SRC" ]; then  # ../shared/anchors from the main checkout; ../../shared/anchors from a worktree in wt/
  for d in "$ROOT/../shared/anchors" "$ROOT/../../shared/anchors"; do [ -d "$d" ] && { SRC="$d"; break; }; done
fi
W="$HERE/results"; A="$W/anchors"
[ -d "$SRC" ] || { echo "no anchors found (set ANCHORS_SRC)" >&2; exit 1; }
# a writable copy of the anchors (keeps its .venv and state between passes), plus dockyard as an anchors tool
mkdir -p "$A"; cp -r "$SRC"/. "$A"/; chmod -R u+w "$A"
mkdir -p "$A/dockyard"
cp "$HERE/tools/dockyard.sh" "$A/tools/dockyard.sh"
cp "$HERE/tools/run-dockyard.sh" "$A/dockyard/run-dockyard.sh"
# the anchors' run.sh does this set-up inline; the same steps here
if [ ! -x "$A/.venv/bin/ansible-playbook" ] || [ ! -x "$A/.venv/bin/pyinfra" ]; then
  python3 -m venv "$A/.venv"
  "$A/.venv/bin/pip" install -q -r "$A/requirements.txt"
fi
if ! docker image inspect local/busybox:1 >/dev/null 2>&1; then
  command -v busybox >/dev/null || apt-get install -y -q busybox-static >/dev/null
  bb="$(mktemp -d)"; mkdir -p "$bb/bin"; cp "$(command -v busybox)" "$bb/bin/"
  for c in sh httpd sleep; do ln -sf busybox "$bb/bin/$c"; done
  tar -C "$bb" -c . | docker import - local/busybox:1 >/dev/null; rm -rf "$bb"
fi
export TARGET_ENV="${TARGET_ENV:-clean}"
started=0
if ! "$A/sshd.sh" status 2>/dev/null | grep -q "TARGET_ENV=$TARGET_ENV"; then
  "$A/sshd.sh" stop >/dev/null; "$A/sshd.sh" start; started=1
fi
clean_all() {  # also when the driver was killed before its own clean-up: dockyard's objects, then the anchors'
  local kind ids
  for kind in "container ps -aq" "network network ls -q" "volume volume ls -q" "image images -aq"; do
    set -- $kind; shift
    ids="$(docker "$@" --filter label=dockyard.project=anchbench | sort -u)"
    [ -z "$ids" ] && continue
    case "$kind" in container*) docker rm -f $ids ;; network*) docker network rm $ids ;;
      volume*) docker volume rm $ids ;; image*) docker rmi -f $ids ;; esac >/dev/null 2>&1 || true
  done
  "$A/clean.sh" || true
}
trap 'clean_all; [ "$started" = 1 ] && "$A/sshd.sh" stop >/dev/null || true' EXIT
python3 "$HERE/anchor_job.py" --anchors "$A"
