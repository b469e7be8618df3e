#!/usr/bin/env python3
"""Ansible, pyinfra and dockyard on the anchors job (3 apps on one host over SSH), interleaved in one pass.

Every tool is an anchors tool file, tools/<tool>.sh in the writable copy (RUN, EXPECT_FIRST, EXPECT_CHANGE,
reported_changes; dockyard's comes from bench/tools/), run against the anchors' sshd (root@127.0.0.1:2222),
and timed the anchors' way: `/usr/bin/time -f '%e %U %S %M'` of that one run (wall, user, sys, its own peak
RSS), host CPU from /proc/stat, SSH connections / exec / sftp sessions from the sshd's VERBOSE log slice.

Rounds: each repetition runs every tool once, the order rotated per round (A B C / B C A / C A B ...), with the
anchors' clean.sh (plus dockyard's own objects) before each tool:
  (a) first run from a clean state (REPS rounds);
  (b) no-op: per round and tool, clean -> untimed deploy -> untimed re-run that must report 0 changes -> one
      timed run that must report 0 changes (NOOP_RUNS rounds). Each tool needs its own state in place and the
      tools share names and ports, so every round deploys afresh;
  (c) clean -> untimed v1 deploy -> api/index.html := "api v2" -> one timed run (REPS rounds): only api may get
      a new container and image.
After every run (timed or not) bench/check_job.py checks the same properties for every tool; the anchors'
verify.sh also runs for the tools that use its names (anch-<app>). A run that fails any check, reports the
wrong number of changes or exits non-zero is listed as failed and not timed. Then, for dockyard, the time and
imports before the first SSH byte (bench/first_byte.py).

Usage: anchor_job.py --anchors DIR [--reps 3] [--noop-runs 7] [--tools "ansible pyinfra dockyard"]
(bench/anchors.sh prepares DIR, starts the sshd, and calls this.)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_job
import first_byte
import summary

ROOT = Path(__file__).resolve().parent.parent
PROJECT, ENVIRONMENT = "anchbench", "bench"
APPS = check_job.APPS
RUN_TIMEOUT_S = 600
# imports every module a deploy run loads (so their bytecode exists before the first timed run)
WARM = ("import provision.cli, provision.deploy, provision.remote, provision.report, provision.render, "
        "provision.playbook, provision.build, provision.ship, provision.secrets, docker, jinja2")
TOOL_QUERY = ('. "$B/tools/$0.sh"; case "$1" in changes) reported_changes "$2";; '
              'container) if declare -F container_of >/dev/null; then container_of "$2"; '
              'else docker ps -aq --filter "name=^anch-$2\\$"; fi;; '
              'own-names) declare -F container_of >/dev/null && echo no || echo yes;; *) eval "echo \\${$1}";; esac')


def rotate(items: list[str], by: int) -> list[str]:
    by %= len(items)
    return items[by:] + items[:by]


def playbook_text(anchors: Path) -> str:
    ssh, src = anchors / "state" / "ssh", anchors / "state" / "src"
    apps = []
    for app in APPS:
        lines = [f"  {app}:", "    dockerfile: Dockerfile", f"    context: {src / app}", "    memory: 64m",
                 "    restart: unless-stopped"]
        if app in check_job.PUBLISHED:
            lines += ["    port: 8080", f'    publish: "127.0.0.1:{check_job.PUBLISHED[app]}"']
        apps.append("\n".join(lines))
    return (f"project: {PROJECT}\nenvironment: {ENVIRONMENT}\nprovider: existing\nhost: {{address: 127.0.0.1}}\n"
            f"ssh: {{user: root, port: 2222, key_file: {ssh / 'client_ed25519'}, "
            f"known_hosts: {ssh / 'known_hosts'}}}\napps:\n" + "\n".join(apps) + "\n")


def sh(argv: list[str], **kw: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120, **kw)  # type: ignore[call-overload]
    return done.stdout.strip()


def host_busy() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8))  # user nice system irq softirq steal


class LoadSampler(threading.Thread):
    """/proc/loadavg every 5 s for the whole pass (the machine's load is part of the result)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))
            self.stop.wait(5)


class Bench:
    def __init__(self, anchors: Path, dockyard: dict[str, str]) -> None:
        self.a = anchors
        self.src = anchors / "state" / "src"
        self.sshlog = anchors / "state" / "ssh" / "sshd.log"
        self.logs = anchors.parent / "interleaved" / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "ANCH_SRC": str(self.src), "DOCKYARD_ROOT": str(ROOT),
                    "DOCKYARD_PYTHON": sys.executable}
        self.dockyard_env = dockyard  # for the first-byte probe, which runs dockyard without run-dockyard.sh
        self.rows: list[summary.Row] = []

    def tool(self, tool: str, *query: str) -> str:
        return sh(["bash", "-c", TOOL_QUERY, tool, *query], env={**self.env, "B": str(self.a)})

    def containers(self, tool: str) -> dict[str, str]:
        return {app: self.tool(tool, "container", app).split("\n")[0] for app in APPS}

    def ids(self, tool: str) -> dict[str, str]:
        out = {}
        for app, cid in self.containers(tool).items():
            out[app] = sh(["docker", "inspect", "-f", "{{.Id}} {{.Image}}", cid]) if cid else ""
        return out

    def clean(self) -> None:
        """dockyard's objects (by its labels), then the anchors' clean.sh (anch-* and images labelled anch.bench)."""
        label = f"label=dockyard.project={PROJECT}"
        for listing, rm in ((["ps", "-aq"], ["rm", "-f"]), (["network", "ls", "-q"], ["network", "rm"]),
                            (["volume", "ls", "-q"], ["volume", "rm"]), (["images", "-aq"], ["rmi", "-f"])):
            found = sorted(set(sh(["docker", *listing, "--filter", label]).split()))
            if found:
                sh(["docker", *rm, *found])
        done = subprocess.run([str(self.a / "clean.sh")], capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise SystemExit(f"clean.sh failed: {done.stderr.strip()}")

    def reset_src(self) -> None:
        subprocess.run(["rm", "-rf", str(self.src)], check=True)
        subprocess.run(["cp", "-r", str(self.a / "apps"), str(self.src)], check=True)

    def run(self, tool: str, scenario: str, rep: int, want: int, api_body: str, *, record: bool = True) -> summary.Row:
        log = self.logs / f"{tool}-{scenario}-{rep}.log"
        timing = self.logs / f".time-{os.getpid()}"
        timing.unlink(missing_ok=True)  # a run killed by the timeout must not inherit the last run's figures
        load1 = Path("/proc/loadavg").read_text().split()[0]
        offset = self.sshlog.stat().st_size
        c0 = host_busy()
        argv = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(timing), *shlex.split(self.tool(tool, "RUN"))]
        with log.open("w") as out:
            try:
                rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.a,
                                    timeout=RUN_TIMEOUT_S, check=False).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        c1 = host_busy()
        time.sleep(0.2)  # let sshd's children flush their last log lines
        with self.sshlog.open("rb") as fh:
            fh.seek(offset)
            ssh = fh.read().decode(errors="replace")
        parts = timing.read_text().split()[-4:] if timing.exists() else ["0", "0", "0", "0"]
        got = self.tool(tool, "changes", str(log))
        why: list[str] = []
        if rc != 0:
            why.append(f"exit {rc}")
        if got != str(want):
            why.append(f"reported {got or '?'} changes (want {want})")
        why += check_job.check(self.containers(tool), api_body)
        if self.tool(tool, "own-names") == "yes":  # the anchors' own verify.sh knows only anch-<app> names
            v = subprocess.run([str(self.a / "verify.sh"), api_body], capture_output=True, text=True, timeout=120,
                               check=False)
            if v.returncode != 0:
                why.append("anchors verify.sh: " + "; ".join(v.stderr.strip().splitlines()[:3]))
        with log.open("a") as out:
            out.write("\n".join(["", "== bench checks:", *(why or ["all passed"])]) + "\n")
        row: summary.Row = {
            "tool": tool, "scenario": scenario, "rep": rep, "wall_s": parts[0], "user_s": parts[1],
            "sys_s": parts[2], "maxrss_kb": parts[3], "host_cpu_s": f"{(c1 - c0) / os.sysconf('SC_CLK_TCK'):.2f}",
            "ssh_conns": ssh.count("Accepted publickey"), "ssh_exec": ssh.count("Starting session: command"),
            "ssh_sftp": ssh.count("Starting session: subsystem 'sftp'"), "rc": rc, "changes": got,
            "build_s": build_seconds(log) if tool == "dockyard" else "", "load1_before": load1,
            "ok": not why, "why": "; ".join(why)}
        cpu = float(parts[1]) + float(parts[2])
        verdict = "ok" if not why else f"FAILED: {row['why']}"
        print(f"  {tool:<13} {scenario:<8} {rep:>2} wall={parts[0]:>6}s user+sys={cpu:5.2f} "
              f"rss={int(parts[3]) // 1024}MiB changes={got}(want {want}) ssh conn={row['ssh_conns']} "
              f"exec={row['ssh_exec']} sftp={row['ssh_sftp']} load={load1} {verdict}", flush=True)
        if record:
            self.rows.append(row)
        return row

    def failed(self, tool: str, scenario: str, rep: int, why: str) -> None:
        self.rows.append({"tool": tool, "scenario": scenario, "rep": rep, "ok": False, "why": why})
        print(f"  {tool:<13} {scenario:<8} {rep:>2} not run: {why}", flush=True)


def build_seconds(log: Path) -> str:
    """The longest `app X: image` task of a dockyard run (builds run in parallel), from its --json document."""
    try:
        text = log.read_text()
        doc = json.JSONDecoder().raw_decode(text[text.index("{"):])[0]
        builds = [t["elapsed"] for h in doc["hosts"] for t in h["tasks"] if t["task"].endswith(": image")]
        return f"{max(builds, default=0):.3f}"
    except (ValueError, KeyError):
        return ""


def dockyard_env(anchors: Path) -> dict[str, str]:
    """The environment dockyard's runs get (run-dockyard.sh sets the same): as after `pip install`, from bytecode.

    This machine sets PYTHONDONTWRITEBYTECODE; without bytecode every run recompiles provision/ (~0.1 s CPU). The
    cache lives in the anchors' state, never in ROOT; BYTECODE=0 measures the source-tree case. ansible and
    pyinfra run from the bytecode pip compiled when it installed them, so they get the plain environment.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if os.environ.get("BYTECODE", "1") == "1":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(anchors / "state" / "dockyard" / "pycache")
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "provision")], check=True, env=env)
        subprocess.run([sys.executable, "-c", WARM], check=True, env=env, cwd=ROOT)
    return env


def scenarios(bench: Bench, tools: list[str], reps: int, noop_runs: int, variants: list[str]) -> None:
    first = {t: int(bench.tool(t, "EXPECT_FIRST")) for t in tools + variants}
    change = {t: int(bench.tool(t, "EXPECT_CHANGE")) for t in tools}
    print(f"== (a) first run from a clean state: {reps} rounds, order rotated per round", flush=True)
    for rep in range(1, reps + 1):
        for t in rotate(tools, rep - 1):
            bench.clean()
            bench.reset_src()
            bench.run(t, "first", rep, first[t], "api")
    print(f"== (b) no-op: {noop_runs} rounds of clean -> deploy -> check re-run -> timed re-run per tool", flush=True)
    for i in range(1, noop_runs + 1):
        for t in rotate(tools, i - 1):
            bench.clean()
            bench.reset_src()
            setup = bench.run(t, "setup", i, first[t], "api", record=False)
            check = bench.run(t, "noopchk", i, 0, "api", record=False) if setup["ok"] else setup
            if not check["ok"]:
                bench.failed(t, "noop", i, f"its untimed {check['scenario']} run failed: {check['why']}")
                continue
            bench.run(t, "noop", i, 0, "api")
            for v in (v for v in variants if v.startswith(t + "-")):  # e.g. ansible-warm, on ansible's state
                bench.run(v, "noopchk", i, 0, "api", record=False)  # leaves the master the timed run reuses
                bench.run(v, "noop", i, 0, "api")
                for s in (bench.a / "state" / "ansible-cp-warm").glob("*"):
                    sh(["ssh", "-o", f"ControlPath={s}", "-O", "exit", "anch-target"])
    print(f"== (c) api/index.html changed: {reps} rounds of clean -> v1 deploy -> edit -> timed run", flush=True)
    for rep in range(1, reps + 1):
        for t in rotate(tools, rep - 1):
            bench.clean()
            bench.reset_src()
            setup = bench.run(t, "setup", rep, first[t], "api", record=False)
            if not setup["ok"]:
                bench.failed(t, "change", rep, f"its untimed v1 deploy failed: {setup['why']}")
                continue
            before = bench.ids(t)
            (bench.src / "api" / "index.html").write_text("api v2\n")
            row = bench.run(t, "change", rep, change[t], "api v2")
            after = bench.ids(t)
            wrong = [a for a in ("web", "worker") if before[a] != after[a]]
            (c0, i0), (c1, i1) = ([*before["api"].split(), "", ""][:2]), ([*after["api"].split(), "", ""][:2])
            if wrong or not c1 or c0 == c1 or i0 == i1:
                row["ok"] = False
                row["why"] = "; ".join(filter(None, [str(row["why"]), f"touched {wrong}" if wrong else "",
                                                    "api not rebuilt and replaced" if not wrong else ""]))
                print(f"    !! only-api check failed: {row['why']}", flush=True)


def first_byte_probe(bench: Bench, runs: int) -> dict[str, object]:
    """dockyard's time and imports before its first SSH byte, on no-op deploys of a deployed state."""
    print(f"== dockyard before the first SSH byte: {runs} no-op runs with -X importtime, {runs} without", flush=True)
    bench.clean()
    bench.reset_src()
    if not bench.run("dockyard", "setup", 0, int(bench.tool("dockyard", "EXPECT_FIRST")), "api", record=False)["ok"]:
        return {}
    env = bench.dockyard_env
    argv = ["deploy", "-p", str(bench.a / "dockyard" / "bench.yml"), "--json"]
    result: dict[str, list[float]] = {"imports_ms": [], "to_connect_ms": []}
    by_package: object = {}
    for importtime in (True, False) * runs:
        r = first_byte.measure(sys.executable, 2222, argv, env, ROOT, importtime=importtime)
        if r["rc"] != 0 or not r["connected"] or json.loads(str(r["stdout"]))["changed"] != 0:
            print(f"  !! probe run failed (exit {r['rc']}, connected {r['connected']})", flush=True)
            continue
        key = "imports_ms" if importtime else "to_connect_ms"
        result[key].append(float(str(r[key])))
        if importtime:
            by_package = r["by_package"]  # the last run's, for the summary's breakdown
    floor = first_byte.interpreter_floor_ms(sys.executable, env)
    print(f"  imports before connect (ms): {[round(v) for v in result['imports_ms']]}, interpreter floor {floor:.0f}; "
          f"spawn->connect (ms): {[round(v) for v in result['to_connect_ms']]}", flush=True)
    return {**result, "floor_ms": floor, "by_package": by_package}


def machine(a: Path, samples: list[float], started: str, ended: str) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    venv = a / ".venv" / "bin"
    pip = sh([str(venv / "pip"), "list", "--format=freeze"]).splitlines()
    wanted = ("ansible==", "ansible-core==", "pyinfra==", "paramiko==")
    commit = sh(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    dy_paramiko = sh([sys.executable, "-c", "import paramiko; print(paramiko.__version__)"])
    load = "?"
    if samples:
        load = f"{min(samples):.2f}–{max(samples):.2f} (median {sorted(samples)[len(samples) // 2]:.2f})"
    return "\n".join([
        f"- pass: {started} – {ended} UTC; load average (1 min, sampled every 5 s): {load}",
        f"- machine: {os.cpu_count()} cores ({cpu}), {mem} GiB, {platform.system()} {platform.release()}",
        f"- tools: {', '.join(p for p in pip if p.startswith(wanted))} (anchors .venv, "
        f"{sh([str(venv / 'python'), '-V'])}); dockyard {commit} (python {platform.python_version()}, "
        f"paramiko {dy_paramiko}); docker engine {sh(['docker', 'version', '-f', '{{.Server.Version}}'])}; "
        f"{subprocess.run(['ssh', '-V'], capture_output=True, text=True, check=False).stderr.strip()}",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--anchors", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 3)))
    ap.add_argument("--noop-runs", type=int, default=int(os.environ.get("NOOP_RUNS", 7)))
    ap.add_argument("--tools", default=os.environ.get("TOOLS", "ansible pyinfra dockyard"))
    ap.add_argument("--variants", default=os.environ.get("NOOP_VARIANTS", ""), help="e.g. ansible-warm")
    ap.add_argument("--probe-runs", type=int, default=int(os.environ.get("PROBE_RUNS", 3)))
    args = ap.parse_args()
    anchors = args.anchors.resolve()
    tools, variants = args.tools.split(), args.variants.split()
    (anchors / "dockyard" / "bench.yml").write_text(playbook_text(anchors))
    bench = Bench(anchors, dockyard_env(anchors))
    sampler = LoadSampler()
    sampler.start()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    probe: dict[str, object] = {}
    try:
        scenarios(bench, tools, args.reps, args.noop_runs, variants)
        if "dockyard" in tools and args.probe_runs > 0:
            probe = first_byte_probe(bench, args.probe_runs)
    finally:
        bench.clean()
        sampler.stop.set()
    ended = time.strftime("%H:%M", time.gmtime())
    out = bench.logs.parent
    with (out / "runs.csv").open("w", newline="") as fh:
        fields = list(dict.fromkeys(k for r in bench.rows for k in r))
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(bench.rows)
    targets = []
    if "dockyard" in tools:
        targets = ["dockyard against the issue's targets:", summary.targets(bench.rows, probe)]
    report = "\n\n".join([
        f"REPS={args.reps}, NOOP_RUNS={args.noop_runs}, tools {' '.join(tools + variants)}, interleaved (order "
        f"rotated per round). Medians (min–max) over the runs that passed every check.",
        machine(anchors, sampler.samples, started, ended),
        summary.table(bench.rows, tools + variants),
        *targets])
    (out / "summary.md").write_text(report + "\n")
    print("\n" + report)
    return 0 if all(r["ok"] for r in bench.rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
