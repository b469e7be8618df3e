#!/usr/bin/env python3
"""The same correctness check for every tool after every run of the anchors job (3 apps on one host).

The anchors' verify.sh finds containers by the names its tools use (anch-<app>) and checks tool-specific
artifacts (image tag anch-<app>:v1, /srv/anch files). This check takes each app's container id (the driver
finds it per tool) and checks only what the job asks of every tool:

- each app's container is running, restart policy unless-stopped, memory limit 64 MiB, --init;
- each container is on exactly one network, its own: not docker's default bridge, and no other app's
  container is on it;
- web and api publish 8080 on 127.0.0.1:18081 / 127.0.0.1:18082 only; worker publishes nothing;
- HTTP bodies: 127.0.0.1:18081 -> "web", 127.0.0.1:18082 -> the expected api body;
- isolation, probed live: from inside each container, `busybox nc` to the other apps' container IPs on 8080
  must get no answer, while the same probe to the container's own IP answers (so the probe can succeed).

Usage: check_job.py --api-body BODY web=CID api=CID worker=CID   (exit 1 and one line per failure)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

APPS = ("web", "api", "worker")
PUBLISHED = {"web": 18081, "api": 18082}  # app -> host port on 127.0.0.1 (container port 8080)
MEMORY = 64 * 1024 * 1024
PROBE_TIMEOUT_S = 1
HTTP_REQUEST = b"GET / HTTP/1.0\r\n\r\n"


def inspect(cid: str) -> dict | None:
    done = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout)[0]


def http_body(port: int, tries: int = 30) -> str:
    """The body at 127.0.0.1:port (httpd may still be starting: up to `tries` x 0.1 s)."""
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                return r.read().decode(errors="replace").strip()
        except OSError:
            time.sleep(0.1)
    return ""


def probe(cid: str, ip: str) -> str | None:
    """The body answering an HTTP request from inside container `cid` to ip:8080, or None (busybox nc, bounded)."""
    try:
        done = subprocess.run(["docker", "exec", "-i", cid, "busybox", "nc", "-w", str(PROBE_TIMEOUT_S), ip, "8080"],
                              input=HTTP_REQUEST, capture_output=True, timeout=PROBE_TIMEOUT_S + 20, check=False)
    except subprocess.TimeoutExpired:
        return None
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    if not (head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n", 1)[0]):
        return None
    return body.decode(errors="replace").strip()


def isolation_rules() -> str:
    """For a failed isolation probe: how many bridges docker's DOCKER-ISOLATION-STAGE-2 chain drops, right now."""
    try:
        done = subprocess.run(["iptables", "-w", "5", "-S", "DOCKER-ISOLATION-STAGE-2"], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"iptables not readable ({exc.__class__.__name__})"
    drops = [ln.split()[3] for ln in done.stdout.splitlines() if ln.endswith("-j DROP") and len(ln.split()) > 3]
    return f"DOCKER-ISOLATION-STAGE-2 drops traffic to {len(drops)} bridges"


def check(containers: dict[str, str], api_body: str) -> list[str]:
    bad: list[str] = []
    info: dict[str, dict] = {}
    for app in APPS:
        cid = containers.get(app, "")
        doc = inspect(cid) if cid else None
        if doc is None:
            bad.append(f"{app}: no container")
            continue
        info[app] = doc
        host = doc["HostConfig"]
        if doc["State"]["Status"] != "running":
            bad.append(f"{app}: status {doc['State']['Status']}")
        if host["RestartPolicy"]["Name"] != "unless-stopped":
            bad.append(f"{app}: restart policy {host['RestartPolicy']['Name']!r}")
        if host["Memory"] != MEMORY:
            bad.append(f"{app}: memory limit {host['Memory']}")
        if not host.get("Init"):
            bad.append(f"{app}: no --init")
        nets = sorted(doc["NetworkSettings"]["Networks"])
        if len(nets) != 1 or nets[0] in ("bridge", "host", "none"):
            bad.append(f"{app}: networks {nets}")
        ports = doc["NetworkSettings"]["Ports"] or {}
        bound = sorted(f"{b['HostIp']}:{b['HostPort']}->{p}" for p, bs in ports.items() for b in (bs or []))
        want = [f"127.0.0.1:{PUBLISHED[app]}->8080/tcp"] if app in PUBLISHED else []
        if bound != want:
            bad.append(f"{app}: published {bound} (want {want})")
    if bad:
        return bad
    owners: dict[str, list[str]] = {}
    for app, doc in info.items():
        for net in doc["NetworkSettings"]["Networks"]:
            owners.setdefault(net, []).append(app)
    bad += [f"network {net} shared by {apps}" for net, apps in owners.items() if len(apps) > 1]
    for app, port in PUBLISHED.items():
        want = api_body if app == "api" else app
        got = http_body(port)
        if got != want:
            bad.append(f"127.0.0.1:{port} -> {got[:40]!r} (want {want!r})")
    ips = {app: next(iter(doc["NetworkSettings"]["Networks"].values()))["IPAddress"] for app, doc in info.items()}
    # (source app, target app, must answer): own IP answers, every other app's IP must not
    probes = [(src, dst, src == dst) for src in APPS for dst in PUBLISHED]
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        answers = list(pool.map(lambda p: probe(info[p[0]]["Id"], ips[p[1]]), probes))
    leaks = 0
    for (src, dst, should), answer in zip(probes, answers, strict=True):
        if should and answer is None:
            bad.append(f"isolation probe: {src} cannot reach its own port (the probe itself does not work)")
        elif not should and answer is not None:
            leaks += 1
            bad.append(f"isolation probe: {src} reaches {dst} at {ips[dst]}:8080 (answered {answer[:20]!r})")
    if leaks:
        bad.append(isolation_rules())
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api-body", default="api")
    ap.add_argument("containers", nargs="*", metavar="APP=CID")
    args = ap.parse_args()
    containers = dict(c.split("=", 1) for c in args.containers if "=" in c)
    bad = check(containers, args.api_body)
    for line in bad:
        print(f"CHECK FAIL: {line}", file=sys.stderr)
    if not bad:
        print("CHECK OK")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
