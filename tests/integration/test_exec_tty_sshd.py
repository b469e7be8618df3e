"""`exec -t` and `exec --env` over real SSH (the test sshd) to this machine's engine, through the CLI as a user
runs it; and `deploy` printing the apps' URLs after its recap.

One app (`generic` template on the CI base image, a shell that sleeps) is deployed once for the module. Its
context holds `ask.sh`, an interactive program in the shape of `createsuperuser`: it prompts "Username:",
reads a line from its terminal, prints what it got (and whether stdin was a terminal) and exits 7. The test
runs `dockyard exec -t` in a pseudo-terminal it drives itself (pty.openpty, reads bounded in time), answers
the prompt as a user types (Enter is a carriage return in raw mode), and checks the answer and the exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import remove_labelled
from tests.images import image_ref
from tests.ports import free_port
from tests.ptydrive import run_in_pty as drive

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
ASK = """\
#!/bin/sh
printf 'Username: '
IFS= read -r name || name='<eof>'
if [ -t 0 ]; then where=terminal; else where=pipe; fi
printf 'got [%s] on a %s, GREETING=[%s]\\n' "$name" "$where" "${GREETING:-}"
exit 7
"""


class App:
    def __init__(self, root: Path, project: str, sshd: Any, docker_client: Any) -> None:
        self.root, self.project, self.client = root, project, docker_client
        self.port = free_port()
        (root / "ask").mkdir()
        (root / "ask" / "ask.sh").write_text(ASK)
        doc = {
            "project": project, "environment": "test", "provider": "existing", "host": {"address": "127.0.0.1"},
            "ssh": {"port": sshd.port, "user": "root", "key_file": str(sshd.key_file),
                    "known_hosts": str(sshd.known_hosts)},
            "apps": {"ask": {"template": "generic", "context": "ask", "port": 8000,
                             "publish": f"127.0.0.1:{self.port}", "command": ["sleep", "3600"],
                             "vars": {"base_image": image_ref("base", docker_client)}}},
        }
        (root / "test.yml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def environ(self) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        environ["PYTHONPATH"] = str(ROOT)
        return environ

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "provision", *args], cwd=self.root, capture_output=True,
                              text=True, timeout=600, env=self.environ(), stdin=subprocess.DEVNULL, check=False)

    def cleanup(self) -> None:
        remove_labelled(self.project)
        shutil.rmtree(f"/var/lib/dockyard/{self.project}-test", ignore_errors=True)


@pytest.fixture(scope="module")
def app(sshd, docker_client, tmp_path_factory: pytest.TempPathFactory):
    import secrets

    a = App(tmp_path_factory.mktemp("exec"), f"dyt-{secrets.token_hex(4)}", sshd, docker_client)
    try:
        yield a
    finally:
        a.cleanup()


@pytest.fixture(scope="module")
def deployed(app: App) -> subprocess.CompletedProcess[str]:
    done = app.cli("deploy", "-p", "test.yml")
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done


def run_in_pty(app: App, args: list[str], answers: list[tuple[bytes, bytes]], *,
               timeout: float = 60) -> tuple[int, bytes]:
    """`dockyard ARGS` in a pseudo-terminal the test drives (tests/ptydrive.py)."""
    return drive([sys.executable, "-m", "provision", *args], answers, cwd=app.root, env=app.environ(),
                 timeout=timeout)


def test_exec_t_answers_an_interactive_prompt_through_a_terminal(app: App, deployed) -> None:
    code, printed = run_in_pty(app, ["exec", "-p", "test.yml", "--app", "ask", "-t", "--env", "GREETING=hi there",
                                     "--", "sh", "/app/ask.sh"],
                               [(b"Username: ", b"alice\r")])
    text = printed.decode("utf-8", "replace")
    assert "got [alice] on a terminal, GREETING=[hi there]" in text, text
    assert code == 7, text


def test_exec_env_reaches_the_command_and_a_bad_name_is_exit_2(app: App, deployed) -> None:
    value = "a b;$(echo no) 'q' \"w\" `x`"  # reaches the command as written: no shell on the way
    done = app.cli("exec", "-p", "test.yml", "--app", "ask", "--env", f"GREETING={value}", "--env", "X_2=",
                   "--", "sh", "-c", 'printf "%s|%s|%s" "$GREETING" "${X_2-unset}" "${NOPE-unset}"')
    assert (done.returncode, done.stdout) == (0, f"{value}||unset"), done.stderr
    done = app.cli("exec", "-p", "test.yml", "--app", "ask", "--env", "2BAD=x", "--", "true")
    assert done.returncode == 2 and "--env 2BAD" in done.stderr, done.stderr
    # a piped stdin under -t: the program reads the line, then the pipe's end reaches it as end of input
    done = subprocess.run([sys.executable, "-m", "provision", "exec", "-p", "test.yml", "--app", "ask", "-t",
                           "--", "sh", "/app/ask.sh"], cwd=app.root, env=app.environ(), input="bob\n",
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 7 and "got [bob] on a terminal" in done.stdout, (done.stdout, done.stderr)


def test_deploy_prints_the_urls_after_its_recap(app: App, deployed) -> None:
    out = deployed.stdout
    url = f"http://127.0.0.1:{app.port}/"
    assert url in out and out.index(url) > out.index("RECAP"), out
    done = app.cli("deploy", "-p", "test.yml", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout).get("urls") == {"ask": url}, done.stdout
