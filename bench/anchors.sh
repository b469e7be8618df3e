#!/usr/bin/env bash
# Side-by-side benchmark: Ansible, pyinfra and dockyard on the anchors job (3 apps on one host over SSH),
# all figures from one pass on this machine. Prints medians; asserts correctness, never time.
#
#   bash bench/anchors.sh                 # everything (~12 min: the anchors' own run is ~9 min)
#   OTHERS=0 bash bench/anchors.sh        # dockyard only (still against the anchors' sshd)
#   REPS=3 NOOP_RUNS=7 bash bench/anchors.sh
# Needs: a running dockerd, openssh-server, busybox-static (for local/busybox:1), PyPI for the anchors' venv.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
SRC="${ANCHORS_SRC:-$ROOT/../shared/anchors}"
W="$HERE/results"; A="$W/anchors"
mkdir -p "$W"
[ -d "$SRC" ] || { echo "no anchors at $SRC (set ANCHORS_SRC)" >&2; exit 1; }
# a writable copy of the anchors (keeps its .venv and state between passes)
mkdir -p "$A"; cp -r "$SRC"/. "$A"/; chmod -R u+w "$A"
if ! docker image inspect local/busybox:1 >/dev/null 2>&1; then
  command -v busybox >/dev/null || apt-get install -y -q busybox-static >/dev/null
  bb="$(mktemp -d)"; mkdir -p "$bb/bin"; cp "$(command -v busybox)" "$bb/bin/"
  for c in sh httpd sleep; do ln -sf busybox "$bb/bin/$c"; done
  tar -C "$bb" -c . | docker import - local/busybox:1 >/dev/null; rm -rf "$bb"
fi
if [ "${OTHERS:-1}" = 1 ]; then
  echo "== Ansible and pyinfra (the anchors' run.sh)"
  (cd "$A" && RESULTS="$W/others" ./run.sh) | tail -n 25
fi
started=0
if ! "$A/sshd.sh" status >/dev/null 2>&1; then "$A/sshd.sh" start; started=1; fi
trap '[ "$started" = 1 ] && "$A/sshd.sh" stop >/dev/null || true' EXIT
echo "== dockyard"
python3 "$HERE/anchor_job.py" --anchors "$A" --csv "$W/dockyard-runs.csv"
if [ -f "$W/others/summary.md" ]; then
  echo; echo "Ansible and pyinfra, same pass ($W/others/summary.md):"; cat "$W/others/summary.md"
fi
