# dockyard as an anchors tool (installed by bench/anchors.sh as tools/dockyard.sh in the writable copy).
# Sourced like the anchors' own tool files: RUN, EXPECT_FIRST, EXPECT_CHANGE, reported_changes LOG; plus
# container_of APP (the bench's tool-neutral check finds each app's container with it; the anchors' tools
# name theirs anch-APP, dockyard names its containers <project>-<env>-<app>-<config hash>).
RUN="$B/dockyard/run-dockyard.sh"
EXPECT_FIRST=7    # tasks that changed (--json "changed"): networks, 3 images, 3 containers
EXPECT_CHANGE=2   # api only: its image and its container
# the --json document is the first thing in the run's log (run-dockyard.sh appends stderr after it)
reported_changes() {
  python3 -c 'import json,sys; t=open(sys.argv[1]).read(); print(json.JSONDecoder().raw_decode(t[t.index("{"):])[0]["changed"])' "$1" 2>/dev/null
}
container_of() {
  docker ps -aq --filter label=dockyard.project=anchbench --filter label=dockyard.environment=bench \
    --filter "label=dockyard.app=$1"
}
