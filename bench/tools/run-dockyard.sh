#!/usr/bin/env bash
# One `dockyard deploy --json` (python -m provision, from DOCKYARD_ROOT's source tree) of the anchors job
# against root@127.0.0.1:2222, the anchors' sshd. Installed by bench/anchors.sh as dockyard/run-dockyard.sh.
# The playbook (dockyard/bench.yml, written by bench/anchor_job.py) builds from $ANCH_SRC/<app>.
# stdout is the --json document; dockyard's stderr is appended after it so the log starts with the JSON.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; B="$(dirname "$HERE")"
: "${DOCKYARD_ROOT:?set DOCKYARD_ROOT to the dockyard checkout}"
if [ "${BYTECODE:-1}" = 1 ]; then
  # as after `pip install`: run from bytecode (compiled once by anchor_job.py into this cache)
  unset PYTHONDONTWRITEBYTECODE
  export PYTHONPYCACHEPREFIX="$B/state/dockyard/pycache"
fi
err="$(mktemp)"
PYTHONPATH="$DOCKYARD_ROOT" "${DOCKYARD_PYTHON:-python3}" -m provision deploy -p "$HERE/bench.yml" --json "$@" 2>"$err"
rc=$?
cat "$err" >&2; rm -f "$err"
exit $rc
