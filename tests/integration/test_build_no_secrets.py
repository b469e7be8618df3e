"""No secret or key reaches an image, proved on a real image built through dockyard's own build path.

The project is the worst case: the app's build context is the playbook's own directory (`context: .`), the
generic template copies it whole (`COPY . /app`), and beside the playbook sit a `.env` holding the app's
secret, the environment's SSH key under `.dockyard/`, a `.git/config` with a token, a `server.pem`, and a
`.dockerignore` that tries to re-include `.env`. The image is built the way deploy builds it
(provision.deploy.desired_apps → provision.appops.build_image, against this machine's engine), then its
whole filesystem is read back with `docker export`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml
from docker.errors import NotFound

from provision import appops
from provision.appops import DeployContext
from provision.build import BuildSource
from provision.deploy import desired_apps
from provision.ops import SecretFile
from provision.playbook import load_playbook
from provision.secrets import SecretSource
from tests.images import image_ref

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LEAKS = (".env", ".env.production", ".dockyard/test/id_ed25519", ".git/config", "server.pem")


class _LocalEngine:
    """Stands in for the host's Remote: builds go to this machine's engine (nothing leaves 127.0.0.1)."""

    user = "root"

    def __init__(self, client) -> None:
        self.client = client

    def docker(self):
        return self.client


def _project(root: Path, sentinel: str, base_image: str) -> Path:
    files = {
        ".env": f"DB_PASSWORD={sentinel}\n",
        ".env.production": f"API_TOKEN={sentinel}-prod\n",
        ".dockyard/test/id_ed25519": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{sentinel}-key\n",
        ".git/config": f'[remote "origin"]\n\turl = https://{sentinel}@example.invalid/x.git\n',
        "server.pem": f"-----BEGIN PRIVATE KEY-----\n{sentinel}-pem\n",
        ".dockerignore": "!.env\n!.git\n!server.pem\n",
        "app.txt": "an ordinary file of the context\n",
        "lib/helper.sh": "echo helper\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    doc = {"project": "dyt", "environment": "test", "provider": "local",
           "apps": {"web": {"template": "generic", "secrets": ["DB_PASSWORD"],
                            "command": ["sh", "-c", "sleep 1"], "vars": {"base_image": base_image}}}}
    path = root / "test.yml"  # the playbook beside them: `context` defaults to its directory
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def made(docker_client):
    created: dict[str, list[str]] = {"containers": [], "images": []}
    yield created
    for cid in created["containers"]:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(cid).remove(force=True)
    for tag in created["images"]:
        with contextlib.suppress(NotFound):
            docker_client.images.remove(tag, force=True)


def test_built_image_holds_the_context_but_no_secret_or_key(docker_client, unique: str, tmp_path: Path,
                                                            made: dict[str, list[str]]) -> None:
    sentinel = f"sentinel-{secrets.token_hex(8)}"
    pb = load_playbook(_project(tmp_path, sentinel, image_ref("base", docker_client)))
    assert pb.app_context("web") == tmp_path  # the worst case: the playbook's own directory

    source = SecretSource(pb, environ={})
    (desired,) = desired_apps(pb, ["web"], source, "root")
    env_file = DeployContext(remote=None, secrets=source).secret_file(SecretFile(("DB_PASSWORD",), ""))
    assert sentinel.encode() in env_file  # where it must be: the env file deploy's executor writes
    assert "app.txt" in desired.build.files and not set(LEAKS) & set(desired.build.files)

    tag = f"{unique}-leak/web:test"
    made["images"].append(tag)
    ctx = DeployContext(remote=_LocalEngine(docker_client))
    appops.build_image(ctx, app="web", source=BuildSource.of(desired.build), tag=tag,
                       labels={"dockyard.project": "dyt", "dockyard.environment": "test", "dockyard.app": "web"})

    # every path and every file's bytes of the image's filesystem
    container = docker_client.containers.create(tag, name=f"{unique}-leak")
    made["containers"].append(container.id)
    names: set[str] = set()
    hits: list[str] = []
    with tempfile.TemporaryFile() as spool:
        for chunk in container.export():
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool) as tar:
            for member in tar:
                names.add(member.name.lstrip("./"))
                if member.isfile() and member.size:
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    if sentinel.encode() in data:
                        hits.append(member.name)
    # the context IS in the image (so the absence checks below can fail) ...
    assert {"app/app.txt", "app/lib/helper.sh"} <= names, sorted(n for n in names if n.startswith("app/"))
    # ... but none of the secrets, keys or VCS data, by name or by content
    assert not {f"app/{leak}" for leak in LEAKS} & names
    assert not any(n in ("app/.dockyard", "app/.git") or n.startswith(("app/.dockyard/", "app/.git/"))
                   for n in names)
    assert hits == [], f"the secret is inside the image in {hits}"
    image = docker_client.images.get(tag)
    metadata = json.dumps([image.attrs, image.history()])
    assert sentinel not in metadata  # not in a label, ENV, build arg or history line either
