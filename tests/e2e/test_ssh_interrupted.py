"""The SSH connection dies in the middle of a deploy: the run fails clearly, what was serving keeps serving, and
the next `deploy` converges. Everything through the CLI (`python -m provision`, i.e. `dockyard`).

The host is a local sandbox (`provider: local`, unique project). Its one app `site` is a `dockerfile:` app
whose build has a slow `RUN sleep $SLOW` step: version 1 builds with SLOW=0; version 2 (new page, SLOW set)
is deployed in a subprocess, and once the `sleep` of that build is seen running inside the sandbox, the
established sshd session processes of dockyard's connection are killed (the listener stays, as when sshd
restarts: the next connection works).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import ROOT, cli_env, dockyard, explain, get, get_once, json_of, remove_labelled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ENVIRONMENT = "cut"
SLOW = 29  # seconds of the version-2 build's RUN step (a distinctive `sleep 29` to look for)
BASE = "dockyard/static:bookworm"  # built locally by the local provider, shipped into the sandbox by deploy

DOCKERFILE = f"""\
FROM {BASE}
ARG SLOW=0
RUN sleep "$SLOW"
COPY index.html /srv/www/index.html
USER 10001:10001
EXPOSE 8080
CMD ["busybox", "httpd", "-f", "-p", "8080", "-h", "/srv/www"]
"""


def write_playbook(path: Path, project: str, slow: int) -> None:
    path.write_text(f"""\
project: {project}
environment: {ENVIRONMENT}
provider: local
engine:
  source: distro
vars:
  base_image: {BASE}     # makes provision build the base image here when this machine lacks it
apps:
  site:
    dockerfile: Dockerfile
    context: ../apps/site
    build_args: {{SLOW: "{slow}"}}
    port: 8080
    publish: 8082
    healthcheck: {{http: /}}
    memory: 64m
""")


def in_sandbox(sandbox: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", sandbox, *argv], capture_output=True, text=True, timeout=60,
                          check=False)


def test_a_deploy_whose_ssh_connection_dies_fails_clearly_keeps_serving_and_the_next_converges(
        tmp_path: Path, unique: str) -> None:
    project = unique
    sandbox = f"dockyard-{project}-{ENVIRONMENT}"
    app = tmp_path / "apps" / "site"
    app.mkdir(parents=True)
    (app / "Dockerfile").write_text(DOCKERFILE)
    (app / "index.html").write_text(f"<h1>{unique} version 1</h1>\n")
    (tmp_path / "playbooks").mkdir()
    playbook = tmp_path / "playbooks" / f"{ENVIRONMENT}.yml"
    write_playbook(playbook, project, 0)
    env = cli_env()
    try:
        first = json_of(dockyard(env, "up", "-p", str(playbook), "--json"))
        url = first["urls"]["site"]
        status, body = get(url)
        assert status == 200 and "version 1" in body

        # version 2, with a slow build step; start its deploy and wait until the build is in that step
        (app / "index.html").write_text(f"<h1>{unique} version 2</h1>\n")
        write_playbook(playbook, project, SLOW)
        proc = subprocess.Popen([sys.executable, "-m", "provision", "deploy", "-p", str(playbook)], cwd=ROOT,
                                env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        try:
            building = False
            for _ in range(240):  # bounded: 120 s
                if in_sandbox(sandbox, "pgrep", "-f", f"^sleep {SLOW}$").returncode == 0:
                    building = True
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
            assert building, "the version-2 build never reached its slow step"
            sessions = in_sandbox(sandbox, "pgrep", "-f", "^sshd: dockyard")
            assert sessions.returncode == 0, "no established dockyard SSH session in the sandbox"
            # the connection dies: kill dockyard's sshd session processes (a few times over ~2 s, so a
            # reconnect in that moment is cut as well), while the app keeps answering
            for _ in range(4):
                in_sandbox(sandbox, "pkill", "-KILL", "-f", "^sshd: dockyard")
                assert get_once(url) == 200
                time.sleep(0.5)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        # fails clearly: exit 1, no traceback, one failed task whose one-line message says the connection
        # was lost (the recap is printed on stdout without --json)
        assert done.returncode == 1, explain(done)
        assert "Traceback" not in out + err, explain(done)
        lines = out.splitlines()
        failed = [i for i, line in enumerate(lines) if line.startswith("failed:")]
        assert len(failed) == 1 and "app site: image" in lines[failed[0]], explain(done)
        assert "connection to the host was lost" in lines[failed[0] + 1], explain(done)

        # what was serving keeps serving: version 1
        status, body = get(url)
        assert status == 200 and "version 1" in body

        # the next deploy converges, and the one after changes nothing
        again = json_of(dockyard(env, "deploy", "-p", str(playbook), "--json"))
        assert again["ok"] is True and again["changed"] > 0
        status, body = get(url)
        assert status == 200 and "version 2" in body
        noop = json_of(dockyard(env, "deploy", "-p", str(playbook), "--json"))
        assert noop["changed"] == 0 and noop["built"] == []

        gone = dockyard(env, "teardown", "-p", str(playbook), "--yes")
        assert gone.returncode == 0, explain(gone)
    finally:
        dockyard(env, "teardown", "-p", str(playbook), "--yes", timeout=300)
        remove_labelled(project)
