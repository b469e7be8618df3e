"""Template `django` end to end: an unmodified `django-admin startproject` project plus one app with one model
(both generated here with a real Django, nothing committed) deploys over real SSH (the stock test sshd) to this
machine's engine: the image builds (collectstatic at build), the default release command migrates onto the
app's volume, gunicorn serves the admin behind the health check (Host 127.0.0.1:<port>) with a read-only root,
WhiteNoise serves the admin's static files, and a second deploy with a new migration runs it."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from provision.deploy import deploy
from provision.playbook import load_playbook
from provision.remote import Remote, SshTarget
from provision.report import Reporter
from tests.django_project import add_field, make_project
from tests.e2e.helpers import remove_labelled
from tests.images import image_ref
from tests.ports import free_port
from tests.ptydrive import run_in_pty

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, bytes]:
    try:
        with _NO_PROXY.open(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_an_unmodified_startproject_deploys_migrates_serves_static_and_runs_a_new_migration(
        sshd, docker_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project_name = f"dyt-{secrets.token_hex(4)}"
    project, python = make_project(tmp_path)
    port = free_port()
    monkeypatch.setenv("SECRET_KEY", "django-test-" + secrets.token_hex(16))
    app: dict[str, Any] = {
        "template": "django", "context": "mysite", "port": 8000, "publish": f"127.0.0.1:{port}",
        "secrets": ["SECRET_KEY"], "volumes": {"data": "/data"},
        "vars": {"base_image": image_ref("python", docker_client), "workers": 1},
        "healthcheck": {"http": "/admin/login/", "interval": "1s", "retries": 3, "wait": "60s"},
    }
    out = io.StringIO()

    def deploy_once() -> Any:
        path = tmp_path / "test.yml"
        path.write_text(yaml.safe_dump({
            "project": project_name, "environment": "test", "provider": "existing",
            "host": {"address": "127.0.0.1"},
            "ssh": {"port": sshd.port, "user": "root", "key_file": str(sshd.key_file),
                    "known_hosts": str(sshd.known_hosts)}, "apps": {"web": app}}, sort_keys=False))
        pb = load_playbook(path)
        reporter = Reporter(verbose=True, console=Console(file=out, width=200, force_terminal=False))
        with Remote(SshTarget.from_playbook(pb, pb.host.address)) as remote:
            return deploy(pb, remote, reporter=reporter, host="test-host", verbose=True)

    def in_container(*argv: str) -> str:
        running = docker_client.api.containers(filters={"label": [f"dockyard.project={project_name}"]})
        assert len(running) == 1, running
        exec_id = docker_client.api.exec_create(running[0]["Id"], list(argv))["Id"]
        output = docker_client.api.exec_start(exec_id).decode()
        assert docker_client.api.exec_inspect(exec_id)["ExitCode"] == 0, output
        return output

    try:
        result = deploy_once()
        assert not result.failed, out.getvalue()[-4000:]
        migrations = in_container("python", "manage.py", "showmigrations", "notes", "admin")
        assert "[X] 0001_initial" in migrations.split("notes", 1)[1], migrations  # the release command ran
        assert " [ ] " not in migrations, migrations
        # the database is the volume's, not the image's (the root filesystem is read-only)
        assert "db.sqlite3" in in_container("ls", "/data")
        status, css = get(f"http://127.0.0.1:{port}/static/admin/css/base.css")
        assert status == 200 and b"body" in css  # WhiteNoise, with DEBUG off
        status, login = get(f"http://127.0.0.1:{port}/admin/login/")
        assert status == 200 and b"csrfmiddlewaretoken" in login
        status, missing = get(f"http://127.0.0.1:{port}/no-such-page/")
        assert status == 404 and b"URLconf" not in missing  # not Django's debug page
        first = docker_client.api.containers(filters={"label": [f"dockyard.project={project_name}"]})[0]["Id"]

        # `exec -t`: Django's interactive createsuperuser, answered through a pseudo-terminal (getpass reads
        # the password from the terminal itself: this only works with a real one)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        environ["PYTHONPATH"] = str(ROOT)
        code, printed = run_in_pty(
            [sys.executable, "-m", "provision", "exec", "-p", str(tmp_path / "test.yml"), "--app", "web", "-t",
             "--", "python", "manage.py", "createsuperuser"],
            [(b"Username", b"admin\r"), (b"Email address: ", b"admin@example.com\r"),
             (b"Password: ", b"Tr0ub4dor&3-horse\r"), (b"Password (again): ", b"Tr0ub4dor&3-horse\r")],
            cwd=tmp_path, env=environ, timeout=120)
        text = printed.decode("utf-8", "replace")
        assert code == 0 and "Superuser created successfully" in text, text
        assert "Tr0ub4dor" not in text  # typed at a password prompt: not echoed
        assert in_container("python", "-c", "from django import setup; setup(); from django.contrib.auth.models "
                            "import User; print(User.objects.filter(username='admin', is_superuser=True).count())"
                            ).strip() == "1"

        # a new field and its migration: the next deploy's release command applies it before the switch
        add_field(project, python)
        result = deploy_once()
        assert not result.failed, out.getvalue()[-4000:]
        running = docker_client.api.containers(filters={"label": [f"dockyard.project={project_name}"]})
        assert [c["Id"] for c in running] != [first]  # a new release serves
        migrations = in_container("python", "manage.py", "showmigrations", "notes")
        assert "[X] 0001_initial" in migrations and "[X] 0002_" in migrations, migrations
        columns = in_container("python", "-c", "from django import setup; setup(); from django.db import "
                               "connection as c; print([f.name for f in c.introspection.get_table_description("
                               "c.cursor(), 'notes_note')])")
        assert "pinned" in columns, columns
        assert get(f"http://127.0.0.1:{port}/static/admin/css/base.css")[0] == 200
    finally:
        remove_labelled(project_name)
        shutil.rmtree(f"/var/lib/dockyard/{project_name}-test", ignore_errors=True)
