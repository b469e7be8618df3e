"""tests/images.py: the content-hash tags of the local test images (shared with .ci/images.sh)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import images

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def image_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path)
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "Dockerfile").write_text("FROM dockyard-ci/bookworm-minbase:1\n")
    (tmp_path / "one" / "files").mkdir()
    (tmp_path / "one" / "files" / "a.conf").write_text("a\n")
    (tmp_path / "notes").mkdir()  # no Dockerfile: not an image
    return tmp_path


def test_tag_is_the_name_and_12_hex_of_the_directory(image_dirs: Path) -> None:
    tag = images.image_tag("one")
    assert re.fullmatch(r"dockyard-ci/one:[0-9a-f]{12}", tag)
    assert images.image_names() == ["one"]


def test_hash_changes_with_content_and_paths_but_not_mtimes(image_dirs: Path) -> None:
    before = images.content_hash("one")
    conf = image_dirs / "one" / "files" / "a.conf"
    conf.touch()
    assert images.content_hash("one") == before
    conf.write_text("b\n")
    changed = images.content_hash("one")
    assert changed != before
    conf.rename(image_dirs / "one" / "files" / "b.conf")
    assert images.content_hash("one") not in (before, changed)
    renamed = images.content_hash("one")
    (image_dirs / "one" / "files" / "__pycache__").mkdir()
    (image_dirs / "one" / "files" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert images.content_hash("one") == renamed  # bytecode caches are not content


def test_unknown_image_says_what_exists(image_dirs: Path) -> None:
    with pytest.raises(images.MissingTestImage, match="known: one"):
        images.image_tag("nope")


def test_the_script_entry_point_prints_the_same_tags_images_sh_uses() -> None:
    for name in images.image_names():
        out = subprocess.run([sys.executable, str(ROOT / "tests" / "images.py"), "tag", name],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
        assert out == images.image_tag(name)
    assert {"base", "node", "python", "static"} <= set(images.image_names())


def test_images_sh_builds_every_directory_through_tests_images_py() -> None:
    script = (ROOT / ".ci" / "images.sh").read_text()
    assert 'tests/images.py" tag' in script and 'tests/images.py" list' in script
    result = subprocess.run(["bash", "-n", str(ROOT / ".ci" / "images.sh")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
