"""No secret or key in a build context: the names dockyard never sends, whatever .dockerignore says."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import yaml

from provision.build import NEVER_SENT, assemble, never_sent
from tests.cli import run_cli

pytestmark = pytest.mark.unit

DOCKERFILE = "FROM scratch\nCOPY . /app\n"
SECRET_FILES = {
    ".env": "DB_PASSWORD=sentinel-3b1f\n",
    ".env.production": "API_TOKEN=sentinel-77aa\n",
    ".dockyard/prod/id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----\nsentinel\n",
    ".dockyard/prod/known_hosts": "[127.0.0.1]:2222 ssh-ed25519 AAAA\n",
    ".git/config": '[remote "origin"]\n  url = https://token@example.invalid/x.git\n',
    "server.pem": "-----BEGIN PRIVATE KEY-----\n",
    "certs/tls.key": "-----BEGIN PRIVATE KEY-----\n",
    "deploy/id_rsa": "-----BEGIN RSA PRIVATE KEY-----\n",
    "backup/id_ed25519.old": "-----BEGIN OPENSSH PRIVATE KEY-----\n",  # a key copy under another suffix
    "web/.env": "NESTED=1\n",
}
ORDINARY_FILES = {
    "app.py": "print('hi')\n",
    "id_ed25519.pub": "ssh-ed25519 AAAA public\n",  # a public key may ship
    "id_utils.py": "def new_id(): ...\n",  # an `id_` module is not a key
    ".envrc.example": "layout python\n",
    ".gitignore": ".env\n",
    "web/index.html": "<h1>hi</h1>\n",
}


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize("path", sorted(SECRET_FILES))
def test_secret_and_key_names_are_never_sent(path: str) -> None:
    assert never_sent(path)


@pytest.mark.parametrize("path", sorted(ORDINARY_FILES))
def test_ordinary_names_are_sent(path: str) -> None:
    assert not never_sent(path)


@pytest.mark.parametrize("ignore", ["", "!.env\n!.dockyard\n!.git/config\n!*.pem\n", "*\n!*\n!**/.env\n"])
def test_the_context_and_its_tar_hold_no_secret_even_when_dockerignore_re_includes(tmp_path: Path,
                                                                                   ignore: str) -> None:
    root = tree(tmp_path, {**SECRET_FILES, **ORDINARY_FILES, ".dockerignore": ignore})
    ctx = assemble(root, DOCKERFILE)
    sent = set(ctx.files)
    assert sent >= set(ORDINARY_FILES)  # the ordinary files are there: the check below can fail
    assert not sent & set(SECRET_FILES)
    with tarfile.open(fileobj=ctx.tar()) as tar:
        names = set(tar.getnames())
        contents = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())  # type: ignore[union-attr]
    assert "app.py" in names and not names & {*SECRET_FILES, ".git", ".dockyard"}
    assert b"print('hi')" in contents and b"sentinel" not in contents and b"token@" not in contents


def test_secrets_are_not_in_the_content_hash(tmp_path: Path) -> None:
    root = tree(tmp_path, {**SECRET_FILES, **ORDINARY_FILES})
    before = assemble(root, DOCKERFILE).content_hash
    (root / ".env").write_text("DB_PASSWORD=rotated\n")
    (root / ".dockyard/prod/id_ed25519").write_text("another key\n")
    (root / ".git/HEAD").write_text("ref: refs/heads/other\n")
    assert assemble(root, DOCKERFILE).content_hash == before
    (root / "app.py").write_text("print('changed')\n")  # an ordinary file still counts
    assert assemble(root, DOCKERFILE).content_hash != before


def test_never_sent_list_is_what_validate_names() -> None:
    assert {".env", ".env.*", ".dockyard/", ".git/", "*.pem", "*.key"} <= set(NEVER_SENT)


def _playbook(root: Path, context: str) -> Path:
    doc = {"project": "shop", "provider": "local",
           "apps": {"web": {"template": "generic", "context": context, "vars": {"base_image": "busybox:1.36"}}}}
    (root / "src").mkdir(parents=True, exist_ok=True)
    path = root / "case.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_validate_warns_when_the_context_is_the_playbooks_directory(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("validate", "-p", str(_playbook(tmp_path, "."))) == 0
    err = capsys.readouterr().err
    assert "warning: app web: the build context" in err and "playbook's own directory" in err
    assert ".env" in err and ".dockyard/" in err and "subdirectory" in err
    assert run_cli("validate", "-p", str(_playbook(tmp_path, "src"))) == 0
    assert "warning" not in capsys.readouterr().err
