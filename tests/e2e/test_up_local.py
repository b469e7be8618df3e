"""`dockyard up` on the shipped example (playbooks/local.yml) through the CLI, as a user runs it.

A copy of the playbook and apps/ under tmp_path (project renamed to the test's unique name, so a developer's
`demo` sandbox and the user's files are never touched) goes: `up --json` on nothing (the sandbox "VM" is
created, its engine installed over SSH, the three apps built and served) → isolation between apps → `up` again
(0 changed, same containers) → one app's source changed → `up` (only that app replaced) → `teardown --yes`
(nothing with the project's labels left on the local engine).

DOCKYARD_MINBASE / DOCKYARD_SANDBOX_BASE (provision/sandbox) point the sandbox image at CI's debootstrap
minbase: no registry pull, no second debootstrap.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    cli_env,
    container_ids,
    copy_example,
    dockyard,
    explain,
    get,
    json_of,
    labelled,
    remove_labelled,
    tasks,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ENVIRONMENT = "local"


def built_apps(doc: dict, project: str) -> list[str]:
    """The apps whose image this run built (`built` lists image refs `<project>/<app>:<hash12>`)."""
    refs = doc["built"]
    assert all(r.startswith(f"{project}/") for r in refs), refs
    return sorted(r.split("/", 1)[1].rsplit(":", 1)[0] for r in refs)


def sandbox_sh(sandbox: str, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A shell command inside the sandbox "VM" as root, via the local engine (an observer beside dockyard)."""
    return subprocess.run(["docker", "exec", sandbox, "sh", "-c", script], capture_output=True, text=True,
                          timeout=timeout, check=False)


def inner_containers(sandbox: str, project: str) -> dict[str, str]:
    """app → id of its running container on the sandbox's inner engine."""
    done = sandbox_sh(sandbox, "docker ps --no-trunc --filter label=dockyard.project=" + project
                      + " --format '{{.ID}} {{.Label \"dockyard.app\"}}'")
    assert done.returncode == 0, done.stderr
    out: dict[str, str] = {}
    for line in done.stdout.splitlines():
        cid, _, app = line.partition(" ")
        assert app not in out, f"two running containers for {app}: {done.stdout}"
        out[app] = cid
    return out


def inner_ip(sandbox: str, cid: str) -> str:
    done = sandbox_sh(sandbox, "docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "
                      + cid)
    ips = done.stdout.split()
    assert done.returncode == 0 and len(ips) == 1, (done.stdout, done.stderr)  # one network per app
    return ips[0]


PROBE = ("import socket, sys\n"
         "try:\n"
         "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
         "except OSError as exc:\n"
         "    print('unreachable', exc)\n"
         "    sys.exit(3)\n"
         "print('connected')\n")


def probe_from_web(env: dict[str, str], playbook: Path, ip: str, port: int) -> subprocess.CompletedProcess[str]:
    """`dockyard exec --app web -- python3 -c PROBE IP PORT`: a TCP connect from inside web's container."""
    return dockyard(env, "exec", "-p", str(playbook), "--app", "web", "--", "python3", "-c", PROBE, ip,
                    str(port), timeout=120)


def test_up_on_a_fresh_local_sandbox_then_noop_then_one_app_changed_then_teardown(tmp_path: Path,
                                                                                  unique: str) -> None:
    project = unique
    playbook = copy_example(tmp_path, project)
    env = cli_env()
    sandbox = f"dockyard-{project}-{ENVIRONMENT}"
    try:
        # --- up on nothing: provision, engine over SSH, three apps -----------------------------------------
        done = dockyard(env, "up", "-p", str(playbook), "--json")
        first = json_of(done)
        assert first["ok"] is True and first["failed"] == 0 and first["command"] == "up"
        # the URLs come after the apps are deployed (after the recap), never at provision time
        web_url = first["urls"]["web"]
        assert done.stderr.count(web_url) == 1 and done.stderr.index(web_url) > done.stderr.index("RECAP"), \
            explain(done)
        assert first["host"]["id"] and first["host"]["state"] == "running"
        by_task = {t["task"]: t for t in tasks(first)}
        assert by_task["local sandbox"]["status"] == "changed"
        # the fresh sandbox had no engine: setup's tasks installed and started it over SSH
        engine_tasks = [t for t in tasks(first) if "engine" in t["task"] or "docker" in t["task"]]
        assert any(t["status"] == "changed" for t in engine_tasks), [(t["task"], t["status"])
                                                                   for t in tasks(first)]
        assert sandbox_sh(sandbox, "command -v dockerd && docker info --format '{{.ServerVersion}}'"
                          ).returncode == 0
        assert built_apps(first, project) == ["site", "web", "worker"]
        urls = first["urls"]
        assert set(urls) == {"web", "site"}
        status, body = get(urls["web"])
        assert status == 200 and "Hello from web" in body
        assert get(urls["web"] + "healthz")[1].lstrip().startswith("{")
        status, body = get(urls["site"])
        assert status == 200 and "a static site" in body
        ids = inner_containers(sandbox, project)
        assert set(ids) == {"web", "site", "worker"}

        # --- isolation: web cannot open a TCP connection to site's container ------------------------------
        site_ip, web_ip = inner_ip(sandbox, ids["site"]), inner_ip(sandbox, ids["web"])
        # site really listens on that address (from the host, which routes to every bridge) ...
        seen = sandbox_sh(sandbox, f"curl -sS --max-time 5 -o /dev/null -w '%{{http_code}}' "
                                   f"http://{site_ip}:8080/")
        assert seen.stdout.strip() == "200", explain(seen)
        # ... and the probe itself works (web reaches its own address) ...
        own = probe_from_web(env, playbook, web_ip, 8000)
        assert own.returncode == 0 and "connected" in own.stdout, explain(own)
        # ... but from web's network, site is out of reach
        cross = probe_from_web(env, playbook, site_ip, 8080)
        assert cross.returncode == 3 and "unreachable" in cross.stdout, explain(cross)

        # --- up again: nothing changes, every container keeps its id ---------------------------------------
        before = container_ids(env, playbook)
        again = json_of(dockyard(env, "up", "-p", str(playbook), "--json"))
        assert again["ok"] is True and again["changed"] == 0 and built_apps(again, project) == [], [
            (t["task"], t["status"]) for t in tasks(again) if t["status"] != "ok"]
        assert container_ids(env, playbook) == before
        assert inner_containers(sandbox, project) == ids

        # --- one app's source changed: only it is rebuilt and replaced -------------------------------------
        index = tmp_path / "apps" / "site" / "index.html"
        index.write_text(index.read_text().replace("a static site", f"a changed static site {unique}"))
        changed = json_of(dockyard(env, "up", "-p", str(playbook), "--json"))
        assert changed["ok"] is True and changed["changed"] > 0 and built_apps(changed, project) == ["site"]
        now = inner_containers(sandbox, project)
        assert now["web"] == ids["web"] and now["worker"] == ids["worker"]
        assert now["site"] != ids["site"]
        after = container_ids(env, playbook)
        assert after["web"] == before["web"] and after["worker"] == before["worker"]
        status, body = get(changed["urls"]["site"])
        assert status == 200 and f"a changed static site {unique}" in body
        assert get(changed["urls"]["web"])[0] == 200

        # --- teardown: nothing with the project's labels left ----------------------------------------------
        gone = dockyard(env, "teardown", "-p", str(playbook), "--yes", "--json")
        assert gone.returncode == 0, explain(gone)
        assert labelled(project) == ([], [], [])
        assert subprocess.run(["docker", "inspect", sandbox], capture_output=True).returncode != 0
    finally:
        dockyard(env, "teardown", "-p", str(playbook), "--yes", timeout=300)
        remove_labelled(project)
