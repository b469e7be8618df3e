#!/usr/bin/env python3
"""dockyard on the anchors job (../shared/anchors): 3 apps on one host over SSH, timed like the anchors.

Scenarios, with the anchors' method:
  (a) first run from a clean state (REPS timed runs);
  (b) no-op re-run: 1 untimed deploy + 1 untimed check run, then NOOP_RUNS timed runs that must report 0 changed;
  (c) only api/index.html changed (REPS runs; clean + untimed v1 deploy before each): only api may get a new
      image and container.
Each run is `python -m provision deploy --json` (the dockyard program) against root@127.0.0.1:2222, the
anchors' own sshd; SSH connections and sessions are counted from that sshd's VERBOSE log as the anchors do.
Prints a table of medians (min–max) and writes runs to a CSV. It asserts correctness, never time.

Usage: bench/anchor_job.py --anchors DIR [--reps 3] [--noop-runs 7] [--csv FILE]   (BYTECODE=0: no precompile)
(bench/anchors.sh prepares DIR and runs Ansible and pyinfra in the same pass.)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "anchbench"
APPS = ("web", "api", "worker")
PORTS = {"web": 18081, "api": 18082}
# imports every module a deploy run loads (so their bytecode exists before the first timed run)
WARM = ("import provision.cli, provision.deploy, provision.remote, provision.report, provision.render, "
        "provision.playbook, provision.build, provision.ship, provision.secrets, docker, jinja2")


def playbook_text(anchors: Path, src: Path) -> str:
    ssh = anchors / "state" / "ssh"
    apps = []
    for app in APPS:
        lines = [f"  {app}:", "    dockerfile: Dockerfile", f"    context: {src / app}", "    memory: 64m",
                 "    restart: unless-stopped"]
        if app in PORTS:
            lines += ["    port: 8080", f'    publish: "127.0.0.1:{PORTS[app]}"']
        apps.append("\n".join(lines))
    return (f"project: {PROJECT}\nenvironment: bench\nprovider: existing\nhost: {{address: 127.0.0.1}}\n"
            f"ssh: {{user: root, port: 2222, key_file: {ssh / 'client_ed25519'}, "
            f"known_hosts: {ssh / 'known_hosts'}}}\napps:\n" + "\n".join(apps) + "\n")


def docker(*argv: str) -> str:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=False).stdout.strip()


def clean() -> None:
    """Remove exactly what dockyard created for the bench project (by its labels)."""
    label = f"label=dockyard.project={PROJECT}"
    for kind, listing in (("container", ["ps", "-aq"]), ("network", ["network", "ls", "-q"]),
                          ("volume", ["volume", "ls", "-q"]), ("image", ["images", "-aq"])):
        ids = docker(*listing, "--filter", label).split()
        if ids:
            rm = {"container": ["rm", "-f"], "network": ["network", "rm"], "volume": ["volume", "rm"],
                  "image": ["rmi", "-f"]}[kind]
            docker(*rm, *sorted(set(ids)))


def ids() -> dict[str, tuple[str, str]]:
    out = {}
    for line in docker("ps", "--filter", f"label=dockyard.project={PROJECT}", "--format",
                       '{{.Label "dockyard.app"}} {{.ID}}').splitlines():
        app, cid = line.split()
        out[app] = (cid, docker("inspect", "-f", "{{.Image}}", cid))
    return out


def verify(api_body: str) -> bool:
    running = ids()
    if sorted(running) != sorted(APPS):
        print(f"  !! running apps: {sorted(running)}", file=sys.stderr)
        return False
    for app, port in PORTS.items():
        want = api_body if app == "api" else app
        got = ""
        for _ in range(30):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    got = r.read().decode().strip()
                    break
            except OSError:
                time.sleep(0.1)
        if got != want:
            print(f"  !! 127.0.0.1:{port} -> {got!r} (want {want!r})", file=sys.stderr)
            return False
    return True


class Runner:
    def __init__(self, anchors: Path, playbook: Path, env: dict[str, str]) -> None:
        self.sshlog = anchors / "state" / "ssh" / "sshd.log"
        self.env = env
        self.playbook = playbook
        self.rows: list[dict[str, object]] = []

    def run(self, scenario: str, rep: int, *, check: bool = False, record: bool = True) -> dict[str, object]:
        start_line = len(self.sshlog.read_text(errors="replace").splitlines())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        argv = [sys.executable, "-m", "provision", "deploy", "-p", str(self.playbook), "--json"]
        if check:
            argv.append("--check")
        t0 = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False, env=self.env)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        time.sleep(0.2)  # let sshd flush its last lines
        new = self.sshlog.read_text(errors="replace").splitlines()[start_line:]
        try:
            doc = json.loads(done.stdout)
            changed = int(doc["changed"])
        except (ValueError, KeyError):
            print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"{scenario} {rep}: no JSON recap (exit {done.returncode})") from None
        row = {
            "tool": "dockyard", "scenario": scenario, "rep": rep, "wall_s": round(wall, 3),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 3),
            "maxrss_mib": round(after.ru_maxrss / 1024, 1), "rc": done.returncode, "changed": changed,
            "ssh_conns": sum("Accepted publickey" in line for line in new),
            "ssh_exec": sum("Starting session: command" in line for line in new),
            "ssh_sftp": sum("Starting session: subsystem 'sftp'" in line for line in new),
        }
        print(f"  {scenario:<8} {rep:>2} wall={wall:6.2f}s changed={changed} rc={done.returncode} "
              f"ssh conn={row['ssh_conns']} exec={row['ssh_exec']} sftp={row['ssh_sftp']}")
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{scenario} {rep}: dockyard exited {done.returncode}")
        if record:
            self.rows.append(row)
        return row


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anchors", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 3)))
    ap.add_argument("--noop-runs", type=int, default=int(os.environ.get("NOOP_RUNS", 7)))
    ap.add_argument("--csv", type=Path, default=None)
    args = ap.parse_args()
    anchors = args.anchors.resolve()
    work = anchors / "state" / "dockyard"
    src = work / "src"
    (work / "playbooks").mkdir(parents=True, exist_ok=True)
    playbook = work / "playbooks" / "bench.yml"
    playbook.write_text(playbook_text(anchors, src))
    env = dict(os.environ)
    if os.environ.get("BYTECODE", "1") == "1":
        # as after `pip install`, dockyard runs from bytecode. This machine sets PYTHONDONTWRITEBYTECODE (without
        # bytecode every run recompiles provision/ from source: ~0.1 s CPU); the cache lives beside the results,
        # never in the shared source tree.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(ROOT / "bench" / "results" / "pycache")
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "provision")], check=True, env=env)
        subprocess.run([sys.executable, "-c", WARM], check=True, env=env, cwd=ROOT)  # the libraries' bytecode
        print("(bytecode in bench/results/pycache, as an install would have it; BYTECODE=0: none)")
    bench = Runner(anchors, playbook, env)

    def reset_src() -> None:
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(anchors / "apps", src)

    try:
        print("== dockyard (a) first run from a clean state")
        for rep in range(1, args.reps + 1):
            clean()
            reset_src()
            bench.run("first", rep)
            assert verify("api"), "verification failed after (a)"
        print("== dockyard (b) no-op re-run")
        clean()
        reset_src()
        bench.run("setup", 0, record=False)
        if bench.run("noopchk", 0, check=True, record=False)["changed"] != 0:
            raise SystemExit("check run after a deploy reported changes")
        for i in range(1, args.noop_runs + 1):
            if bench.run("noop", i)["changed"] != 0:
                raise SystemExit("a no-op re-run reported changes")
            assert verify("api"), "verification failed after (b)"
        print("== dockyard (c) only api/index.html changed")
        for rep in range(1, args.reps + 1):
            clean()
            reset_src()
            bench.run("setup", rep, record=False)
            before = ids()
            (src / "api" / "index.html").write_text("api v2\n")
            bench.run("change", rep)
            after = ids()
            assert verify("api v2"), "verification failed after (c)"
            for app in ("web", "worker"):
                assert before[app] == after[app], f"{app} was touched by a change to api only"
            assert before["api"][0] != after["api"][0] and before["api"][1] != after["api"][1], \
                "api was not rebuilt and replaced"
            print("  only api rebuilt+replaced: yes")
    finally:
        clean()

    if args.csv:
        with args.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(bench.rows[0]))
            writer.writeheader()
            writer.writerows(bench.rows)
    print("\n| scenario | tool | n | wall s, median (min–max) | controller user+sys s | peak RSS MiB | changed "
          "| SSH conns | SSH exec | SSH sftp |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scenario, title in (("first", "(a) first run"), ("noop", "(b) no-op re-run"), ("change", "(c) api changed")):
        rows = [r for r in bench.rows if r["scenario"] == scenario]
        if not rows:
            continue
        last = rows[-1]
        print(f"| {title} | dockyard | {len(rows)} | {median_range([float(r['wall_s']) for r in rows])} | "
              f"{statistics.median(float(r['cpu_s']) for r in rows):.2f} | {max(float(r['maxrss_mib']) for r in rows)} "
              f"| {last['changed']} | {last['ssh_conns']} | {last['ssh_exec']} | {last['ssh_sftp']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
