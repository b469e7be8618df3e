"""Every built-in template's `render` output builds with the real engine and the image works.

Each template renders an app of a real playbook (the sample apps in tests/fixtures/apps) with `base_image`
pointing at a local test image (tests/images/, built by .ci/images.sh), is built through the Docker SDK
from the same context deploy sends (provision.build.assemble), must run as a non-root user, and then serves:
python-web (Flask under gunicorn, dependencies from PyPI), node-web and static-site answer HTTP on a port
published on 127.0.0.1, the generic worker writes its heartbeat. Web containers run the way deploy runs them
when the template says it supports it: read-only root filesystem, tmpfs on its writable paths,
no-new-privileges; python-web also writes to and reads from a named volume as the non-root user.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.errors import BuildError, NotFound

from provision.build import assemble
from provision.playbook import load_playbook
from provision.render import list_templates, render_dockerfile
from tests.images import image_ref

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "apps"

# case → its template, how its sample app is declared, which test image is its base, what it must answer
CASES: dict[str, dict[str, Any]] = {
    "python-web": {"template": "python-web", "image": "python", "fixture": "flask", "port": 8000,
                   "extra": {"volumes": {"data": "/var/lib/app"}, "env": {"DATA_DIR": "/var/lib/app"}},
                   "pages": {"/": "hello from flask version 1", "/healthz": "ok"}},
    "node-web": {"template": "node-web", "image": "node", "fixture": "node", "port": 3000,
                 "pages": {"/": "hello from node version 1", "/healthz": "ok"}},
    # with a package-lock.json the template takes the `npm ci` branch
    "node-web-lockfile": {"template": "node-web", "image": "node", "fixture": "node", "port": 3000,
                          "lockfile": True, "pages": {"/": "hello from node version 1"}},
    "static-site": {"template": "static-site", "image": "static", "fixture": "static", "port": 8080,
                    "pages": {"/": "<h1>hello from static</h1>", "/about.html": "busybox httpd"}},
    "generic": {"template": "generic", "image": "base", "fixture": "worker",
                "extra": {"command": ["sh", "/app/worker.sh"]}},
}

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# templates whose build needs more than a fixture directory, built and served by a test of their own
TESTED_ELSEWHERE = {"django": "tests/integration/test_django_template.py"}


def test_every_builtin_template_has_a_case() -> None:
    assert set(list_templates()) == {case["template"] for case in CASES.values()} | set(TESTED_ELSEWHERE)
    assert all((ROOT / path).is_file() for path in TESTED_ELSEWHERE.values())


@pytest.fixture
def cleanup(docker_client) -> Iterator[dict[str, list[str]]]:
    """Names of what the test created; removed afterwards (only those)."""
    made: dict[str, list[str]] = {"containers": [], "images": [], "volumes": []}
    yield made
    for name in made["containers"]:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(name).remove(force=True, v=True)
    for name in made["volumes"]:
        with contextlib.suppress(NotFound):
            docker_client.volumes.get(name).remove(force=True)
    for tag in made["images"]:
        with contextlib.suppress(NotFound):
            docker_client.images.remove(tag, force=True)


def _playbook(tmp_path: Path, template: str, case: dict[str, Any], base_image: str) -> Path:
    """A real playbook file (playbooks/test.yml) with the sample app copied beside it."""
    shutil.copytree(FIXTURES / case["fixture"], tmp_path / "apps" / "app")
    if case.get("lockfile"):
        package = json.loads((tmp_path / "apps/app/package.json").read_text())
        lock = {"name": package["name"], "version": package["version"], "lockfileVersion": 3,
                "requires": True,
                "packages": {"": {"name": package["name"], "version": package["version"], "license": "MIT"}}}
        # compact on purpose: `npm install` would rewrite it pretty-printed, `npm ci` never touches it
        (tmp_path / "apps/app/package-lock.json").write_text(json.dumps(lock, separators=(",", ":")))
    app: dict[str, Any] = {"template": template, "context": "../apps/app", "vars": {"base_image": base_image},
                           **case.get("extra", {})}
    if "port" in case:
        app["port"] = case["port"]
    doc = {"project": "dyt", "environment": "test", "provider": "local", "apps": {"app": app}}
    path = tmp_path / "playbooks" / "test.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _cli_render(playbook: Path) -> str:
    """The `render` command's output for the app (what a user sees)."""
    proc = subprocess.run([sys.executable, "-m", "provision", "render", "-p", str(playbook), "--json",
                           "--app", "app"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"render failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)["apps"]["app"]["dockerfile"]


def _build(docker_client, context_dir: Path, text: str, tag: str) -> Any:
    ctx = assemble(context_dir, text)
    try:
        image, _log = docker_client.images.build(fileobj=ctx.tar(), custom_context=True,
                                                 dockerfile=ctx.dockerfile_path, tag=tag, rm=True,
                                                 forcerm=True, pull=False)
    except BuildError as exc:
        lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip() for chunk in exc.build_log]
        pytest.fail(f"building {tag} failed: {exc.msg}\n" + "\n".join(line for line in lines if line)[-4000:])
    return image


def _http(url: str, container, *, method: str = "GET", data: bytes | None = None,
          attempts: int = 120, delay: float = 0.5) -> tuple[int, str]:
    """Request `url`, retrying while the server starts (bounded); fails early if the container exits."""
    last = ""
    for _ in range(attempts):
        request = urllib.request.Request(url, data=data, method=method)
        try:
            with _NO_PROXY.open(request, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = repr(exc)
        container.reload()
        if container.status not in ("created", "running"):
            pytest.fail(f"container exited ({container.status}) before serving {url}; logs:\n"
                        + container.logs(tail=40).decode(errors="replace"))
        time.sleep(delay)
    pytest.fail(f"{url} never answered ({last}); logs:\n" + container.logs(tail=40).decode(errors="replace"))


def _published_port(container, port: int, attempts: int = 50) -> int:
    for _ in range(attempts):
        container.reload()
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp")
        if bindings:
            return int(bindings[0]["HostPort"])
        time.sleep(0.1)
    pytest.fail(f"port {port} was never published")


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_rendered_template_builds_and_runs(case_id: str, docker_client, unique: str, tmp_path: Path,
                                           cleanup: dict[str, list[str]]) -> None:
    case = CASES[case_id]
    template = case["template"]
    base = image_ref(case["image"], docker_client)
    playbook_path = _playbook(tmp_path, template, case, base)
    pb = load_playbook(playbook_path)
    rendered = render_dockerfile(pb, "app")
    text = _cli_render(playbook_path)
    assert text == rendered.text
    assert f"FROM {base}\n" in text

    tag = f"{unique}-{template}:test"
    cleanup["images"].append(tag)
    image = _build(docker_client, pb.app_context("app"), text, tag)

    # non-root: declared in the image, and what a process in it actually gets
    user = image.attrs["Config"]["User"]
    assert user and user.split(":")[0] not in ("", "0", "root"), f"image user is {user!r}"
    assert image.attrs["Config"]["Labels"]["org.opencontainers.image.title"] == "dyt/app"
    ids = docker_client.containers.run(tag, ["id", "-u", "-n"], remove=True).decode().split()
    whoami = docker_client.containers.run(tag, ["id", "-u"], remove=True).decode().strip()
    assert whoami == "10001" and ids == ["app"], (whoami, ids)
    if case.get("lockfile"):  # the `npm ci` branch ran: the lockfile is exactly the one we gave
        written = (pb.app_context("app") / "package-lock.json").read_text()
        # (the echo: a last line without a newline can be missing from a short-lived container's logs)
        shown = docker_client.containers.run(tag, ["sh", "-c", "cat /app/package-lock.json; echo"],
                                             remove=True).decode()
        assert shown == written + "\n"

    name = f"{unique}-{template}"
    cleanup["containers"].append(name)
    run: dict[str, Any] = {"name": name, "detach": True, "security_opt": ["no-new-privileges"],
                           "read_only": rendered.read_only,
                           "tmpfs": {path: "" for path in rendered.writable} if rendered.read_only else {}}
    if "port" in case:
        assert f"EXPOSE {case['port']}" in text
        run["ports"] = {f"{case['port']}/tcp": ("127.0.0.1", None)}
    if template == "python-web":
        volume = f"{unique}-data"
        cleanup["volumes"].append(volume)
        docker_client.volumes.create(volume)
        run["volumes"] = {volume: {"bind": "/var/lib/app", "mode": "rw"}}
        run["environment"] = {"DATA_DIR": "/var/lib/app"}
    container = docker_client.containers.run(tag, **run)

    if "port" in case:
        base_url = f"http://127.0.0.1:{_published_port(container, case['port'])}"
        for path, expected in case["pages"].items():
            status, body = _http(base_url + path, container)
            assert status == 200 and expected in body, (path, status, body)
    if template == "python-web":
        # the named volume is writable by the non-root user (the template made its mount point theirs)
        status, body = _http(base_url + "/data/probe.txt", container, method="PUT", data=b"kept")
        assert status == 201, body
        assert _http(base_url + "/data/probe.txt", container) == (200, "kept")
    if template == "generic":
        _wait_heartbeat(container)


def _wait_heartbeat(container, attempts: int = 60, delay: float = 0.5) -> None:
    result = None
    for _ in range(attempts):
        container.reload()
        if container.status != "running":
            pytest.fail(f"worker exited ({container.status}); logs:\n" + container.logs(tail=40).decode())
        result = container.exec_run(["sh", "/app/healthcheck.sh"])
        if result.exit_code == 0:
            break
        time.sleep(delay)
    assert result is not None and result.exit_code == 0, "the worker never wrote a heartbeat"
    assert b"worker: heartbeat 1" in container.logs()
    assert container.exec_run(["id", "-u"]).output.decode().strip() == "10001"


def test_user_is_created_on_a_base_without_useradd_or_adduser(docker_client, tmp_path: Path) -> None:
    """The last-resort branch (append to /etc/passwd) for bases with neither shadow nor busybox tools."""
    case = CASES["static-site"]
    pb = load_playbook(_playbook(tmp_path, "static-site", case, "unused"))
    text = render_dockerfile(pb, "app").text
    start = text.index("RUN set -eu;")
    script = text[start + len("RUN "):text.index("\n    fi\n", start) + len("\n    fi")].replace("\\\n", "\n")
    probe = (f"{script}\ncommand -v useradd adduser || true\n"
             "id -u app; id -g app; grep -c '^app:' /etc/passwd; grep -c '^app:' /etc/group")
    # PATH without the sbin directories hides useradd/groupadd (Debian has no adduser applet in busybox)
    out = docker_client.containers.run(image_ref("static", docker_client), ["sh", "-c", probe], remove=True,
                                       environment={"PATH": "/usr/bin:/bin"}).decode().split()
    assert out == ["10001", "10001", "1", "1"], out
