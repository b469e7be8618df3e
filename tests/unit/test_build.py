"""Build context assembly: docker's .dockerignore rules, the content hash and the tar stream."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from provision.build import INJECTED_DOCKERFILE, assemble, image_tag
from provision.dockerignore import Matcher, clean_pattern, parse_dockerignore
from provision.errors import InputError

pytestmark = pytest.mark.unit

DOCKERFILE = "FROM scratch\nCOPY . /app\n"


def excluded(ignore: str, path: str) -> bool:
    return Matcher(parse_dockerignore(ignore)).excluded(path)


@pytest.mark.parametrize(
    ("ignore", "path", "expected"),
    [
        ("*.pyc", "a.pyc", True),
        ("*.pyc", "pkg/a.pyc", False),  # '*' does not cross '/'; docker patterns are rooted
        ("**/*.pyc", "pkg/sub/a.pyc", True),
        ("**/*.pyc", "a.pyc", True),  # '**/' also matches zero directories
        ("node_modules", "node_modules/x/y.js", True),  # a matched directory excludes everything beneath
        ("/build", "build/out.o", True),  # leading '/' is dropped
        ("./build/", "build/out.o", True),  # cleaned like filepath.Clean
        ("build/**", "build/deep/er/x", True),
        ("build/**", "buildx/a", False),
        ("a/**/z", "a/z", True),
        ("a/**/z", "a/b/c/z", True),
        ("a/**/z", "a/b/c/y", False),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file10.txt", False),
        ("file[0-9].txt", "file7.txt", True),
        ("file[^0-9].txt", "file7.txt", False),
        ("file[^0-9].txt", "filex.txt", True),
        ("a.b", "axb", False),  # '.' is literal
        ("# comment\n\n  *.log  \n", "x.log", True),
        ("#x.log", "#x.log", False),
        ("\\#x.log", "#x.log", True),
        ("*.md\n!README.md", "README.md", False),
        ("*.md\n!README.md", "CHANGES.md", True),
        ("*.md\n!README.md\nREADME*", "README.md", True),  # the last matching line wins
        ("docs\n!docs/keep.txt", "docs/keep.txt", False),
        ("docs\n!docs/keep.txt", "docs/other.txt", True),
        ("**", "anything/at/all", True),
        ("**\n!src", "src/main.py", False),
    ],
)
def test_dockerignore_rules(ignore: str, path: str, expected: bool) -> None:
    assert excluded(ignore, path) is expected


def test_clean_pattern() -> None:
    assert clean_pattern("/a//b/../c/") == "a/c"
    assert clean_pattern("./x") == "x"
    assert clean_pattern("/") == "."


def test_bad_pattern_is_input_error(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("foo[\n")
    with pytest.raises(InputError) as err:
        assemble(tmp_path, DOCKERFILE)
    assert ".dockerignore" in str(err.value)


def make_tree(root: Path) -> None:
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "src" / "cache.pyc").write_bytes(b"\0junk")
    (root / "node_modules" / "dep").mkdir(parents=True)
    (root / "node_modules" / "dep" / "index.js").write_text("x")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / ".dockerignore").write_text("**/*.pyc\nnode_modules\nDockerfile\n.dockerignore\n")


def test_assemble_honours_dockerignore_and_injects_dockerfile(tmp_path: Path) -> None:
    make_tree(tmp_path)
    ctx = assemble(tmp_path, DOCKERFILE)
    # .dockerignore is always sent; the user's own Dockerfile is an ordinary (here excluded) file for a
    # template app, whose Dockerfile is the injected rendering
    assert ctx.files == sorted([".dockerignore", INJECTED_DOCKERFILE, "run.sh", "src/app.py"])
    assert ctx.dockerfile_path == INJECTED_DOCKERFILE
    with tarfile.open(fileobj=ctx.tar()) as tar:
        names = tar.getnames()
        assert "node_modules" not in names and "src/cache.pyc" not in names
        assert "src" in names  # directories are sent (COPY of empty dirs works)
        injected = tar.extractfile(INJECTED_DOCKERFILE)
        assert injected is not None and injected.read().decode() == DOCKERFILE
        member = tar.getmember("run.sh")
        assert member.mode == 0o755 and member.mtime == 0 and member.uid == 0
        app = tar.extractfile("src/app.py")
        assert app is not None and app.read() == b"print('hi')\n"


def test_own_dockerfile_is_always_sent(tmp_path: Path) -> None:
    make_tree(tmp_path)
    ctx = assemble(tmp_path, DOCKERFILE, dockerfile_path="Dockerfile")
    assert ctx.dockerfile_path == "Dockerfile"
    assert "Dockerfile" in ctx.files and INJECTED_DOCKERFILE not in ctx.files
    with pytest.raises(InputError):
        assemble(tmp_path, DOCKERFILE, dockerfile_path="docker/Missing.Dockerfile")


def test_hash_is_stable_and_ignores_mtime_and_excluded_files(tmp_path: Path) -> None:
    make_tree(tmp_path)
    first = assemble(tmp_path, DOCKERFILE).content_hash
    os.utime(tmp_path / "src" / "app.py", (1, 1))
    (tmp_path / "src" / "other.pyc").write_text("ignored")
    (tmp_path / "node_modules" / "dep" / "index.js").write_text("changed but ignored")
    assert assemble(tmp_path, DOCKERFILE).content_hash == first
    assert len(first) == 64


@pytest.mark.parametrize("mutation", ["content", "mode", "new_file", "rename", "dockerfile", "build_arg"])
def test_hash_changes_with_what_decides_the_image(tmp_path: Path, mutation: str) -> None:
    make_tree(tmp_path)
    args = {"PY": "3.11"}
    before = assemble(tmp_path, DOCKERFILE, args).content_hash
    dockerfile = DOCKERFILE
    if mutation == "content":
        (tmp_path / "src" / "app.py").write_text("print('bye')\n")
    elif mutation == "mode":
        (tmp_path / "run.sh").chmod(0o700)
    elif mutation == "new_file":
        (tmp_path / "src" / "extra.py").write_text("")
    elif mutation == "rename":
        (tmp_path / "src" / "app.py").rename(tmp_path / "src" / "main.py")
    elif mutation == "dockerfile":
        dockerfile += "USER 1000\n"
    elif mutation == "build_arg":
        args = {"PY": "3.12"}
    assert assemble(tmp_path, dockerfile, args).content_hash != before


def test_user_file_at_injected_path_is_replaced(tmp_path: Path) -> None:
    (tmp_path / INJECTED_DOCKERFILE).write_text("FROM evil\n")
    ctx = assemble(tmp_path, DOCKERFILE)
    with tarfile.open(fileobj=ctx.tar()) as tar:
        assert tar.getnames().count(INJECTED_DOCKERFILE) == 1
        f = tar.extractfile(INJECTED_DOCKERFILE)
        assert f is not None and f.read().decode() == DOCKERFILE


def test_symlinks_are_sent_as_links(tmp_path: Path) -> None:
    (tmp_path / "target.txt").write_text("t")
    (tmp_path / "link.txt").symlink_to("target.txt")
    ctx = assemble(tmp_path, DOCKERFILE)
    with tarfile.open(fileobj=ctx.tar()) as tar:
        assert tar.getmember("link.txt").issym()
        assert tar.getmember("link.txt").linkname == "target.txt"


def test_image_tag() -> None:
    assert image_tag("shop", "web", "abcdef0123456789") == "shop/web:abcdef012345"


def test_own_dockerfile_inside_an_excluded_directory_is_sent(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "prod.Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "docker" / "notes.txt").write_text("not sent")
    (tmp_path / ".dockerignore").write_text("docker\n")
    ctx = assemble(tmp_path, DOCKERFILE, dockerfile_path="docker/prod.Dockerfile")
    assert ctx.files == [".dockerignore", "docker/prod.Dockerfile"]
