"""The SSH connection dies in the middle of a deploy. Everything through the CLI (`python -m provision`, i.e.
`dockyard`), against a local sandbox (`provider: local`, unique project) whose sshd has OpenSSH's stock limits.

Its one app `site` is a `dockerfile:` app whose build has a slow `RUN sleep $SLOW` step: version 1 builds with
SLOW=0. Each later version (new page, a new SLOW so the step is not cached) is deployed in a subprocess, and
once that `sleep` is seen running inside the sandbox, the sshd session processes of dockyard's connection
are killed (the listener stays, as when sshd restarts):

- version 2, ONE cut: dockyard reconnects once, retries the step, says so, and the deploy succeeds;
- version 3, cuts every half second until the deploy gives up (a persistent fault): exit 1, no traceback,
  one failed task whose one-line message names the step and the host; version 2 keeps serving throughout;
- the next deploy converges to version 3, and the one after changes nothing.
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
SLOW = {2: 29, 3: 31}  # seconds of each version's build RUN step (a distinctive `sleep N` to look for)
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


def deploy_until_building(env: dict[str, str], playbook: Path, sandbox: str, slow: int
                          ) -> subprocess.Popen[str]:
    """Start `deploy` in a subprocess and return once its build runs the slow step."""
    proc = subprocess.Popen([sys.executable, "-m", "provision", "deploy", "-p", str(playbook)], cwd=ROOT,
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    for _ in range(240):  # bounded: 120 s
        if in_sandbox(sandbox, "pgrep", "-f", f"^sleep {slow}$").returncode == 0:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    else:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"the build never reached its slow step (sleep {slow})")
    if proc.poll() is not None:
        out, err = proc.communicate()
        raise AssertionError(f"deploy ended before its slow step:\n{out}\n{err}")
    sessions = in_sandbox(sandbox, "pgrep", "-f", "^sshd: dockyard")
    assert sessions.returncode == 0, "no established dockyard SSH session in the sandbox"
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def cut(sandbox: str) -> None:
    """Kill dockyard's sshd session processes (not the listener)."""
    in_sandbox(sandbox, "pkill", "-KILL", "-f", "^sshd: dockyard")


def test_one_cut_is_survived_a_persistent_fault_fails_clearly_and_what_serves_keeps_serving(
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
        # the sandbox's sshd has the stock limits dockyard must live with
        effective = in_sandbox(sandbox, "sshd", "-T").stdout.splitlines()
        assert "maxsessions 10" in effective and "maxstartups 10:30:100" in effective

        # version 2: one cut in the middle of the build is survived (one reconnect, the step retried)
        (app / "index.html").write_text(f"<h1>{unique} version 2</h1>\n")
        write_playbook(playbook, project, SLOW[2])
        proc = deploy_until_building(env, playbook, sandbox, SLOW[2])
        cut(sandbox)
        assert get_once(url) == 200
        done = finish(proc)
        assert done.returncode == 0, explain(done)
        assert "Traceback" not in done.stdout + done.stderr, explain(done)
        told = [line for line in (done.stdout + done.stderr).splitlines() if "reconnected" in line]
        assert len(told) == 1 and "retrying the step once" in told[0], explain(done)
        status, body = get(url)
        assert status == 200 and "version 2" in body

        # version 3: the connection keeps being cut until dockyard gives up; what serves keeps serving
        (app / "index.html").write_text(f"<h1>{unique} version 3</h1>\n")
        write_playbook(playbook, project, SLOW[3])
        proc = deploy_until_building(env, playbook, sandbox, SLOW[3])
        try:
            for _ in range(600):  # bounded: ~300 s
                if proc.poll() is not None:
                    break
                cut(sandbox)
                assert get_once(url) == 200
                time.sleep(0.5)
        finally:
            done = finish(proc, timeout=120)
        # fails clearly: exit 1, no traceback, one failed task whose one-line message names the step and the
        # host and says the connection was lost (the recap is printed on stdout without --json)
        assert done.returncode == 1, explain(done)
        assert "Traceback" not in done.stdout + done.stderr, explain(done)
        lines = done.stdout.splitlines()
        failed = [i for i, line in enumerate(lines) if line.startswith("failed:")]
        assert len(failed) == 1 and "app site: image" in lines[failed[0]], explain(done)
        message = lines[failed[0] + 1]
        assert "connection to the host was lost" in message and "build " in message, explain(done)
        assert "ssh dockyard@127.0.0.1:" in message, explain(done)
        status, body = get(url)
        assert status == 200 and "version 2" in body

        # the next deploy converges, and the one after changes nothing
        again = json_of(dockyard(env, "deploy", "-p", str(playbook), "--json"))
        assert again["ok"] is True and again["changed"] > 0
        status, body = get(url)
        assert status == 200 and "version 3" in body
        noop = json_of(dockyard(env, "deploy", "-p", str(playbook), "--json"))
        assert noop["changed"] == 0 and noop["built"] == []

        gone = dockyard(env, "teardown", "-p", str(playbook), "--yes")
        assert gone.returncode == 0, explain(gone)
    finally:
        dockyard(env, "teardown", "-p", str(playbook), "--yes", timeout=300)
        remove_labelled(project)
