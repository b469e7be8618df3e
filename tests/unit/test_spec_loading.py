"""Finding and resolving playbooks (-e / -p), and `extends` chains across directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.errors import InputError
from provision.playbook import find_playbooks, load_playbook, resolve_playbook

pytestmark = pytest.mark.unit


@pytest.fixture
def project(tmp_path: Path) -> Path:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "staging.yml").write_text("project: shop\nprovider: local\n")
    (books / "prod.yaml").write_text("project: shop\nprovider: local\n")
    (books / "notes.txt").write_text("not a playbook\n")
    return tmp_path


def test_find_playbooks_in_a_project_root_or_its_playbooks_folder(project: Path) -> None:
    want = [project / "playbooks" / "prod.yaml", project / "playbooks" / "staging.yml"]
    assert find_playbooks(project) == want
    assert find_playbooks(project / "playbooks") == want
    assert find_playbooks(project / "missing") == []


def test_resolve_by_environment_name(project: Path) -> None:
    assert resolve_playbook("staging", None, project) == project / "playbooks" / "staging.yml"
    assert resolve_playbook("prod", None, project) == project / "playbooks" / "prod.yaml"


def test_explicit_playbook_path_wins(project: Path) -> None:
    other = project / "elsewhere.yml"
    other.write_text("project: x\n")
    assert resolve_playbook("staging", "elsewhere.yml", project) == other
    assert resolve_playbook(None, str(other), Path("/")) == other
    with pytest.raises(InputError, match="playbook file not found"):
        resolve_playbook(None, "nope.yml", project)


def test_neither_lists_the_environments(project: Path) -> None:
    with pytest.raises(InputError) as info:
        resolve_playbook(None, None, project)
    assert "-e NAME or -p PATH" in str(info.value) and "available: prod, staging" in str(info.value)


def test_unknown_environment_suggests_a_close_one(project: Path) -> None:
    with pytest.raises(InputError) as info:
        resolve_playbook("stagin", None, project)
    message = info.value.problems[0].message
    assert "'stagin'" in message and "did you mean 'staging'?" in message and "prod, staging" in message


def test_extends_chain_across_directories(tmp_path: Path) -> None:
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "root.yml").write_text(
        "project: shop\nprovider: local\nvars: {a: 1, list: [1, 2]}\napps:\n  web: {template: generic}\n")
    (tmp_path / "common" / "mid.yml").write_text("extends: root.yml\nvars: {b: 2, list: [3]}\n")
    top = tmp_path / "dev.yml"
    top.write_text("extends: common/mid.yml\nvars: {c: 3}\napps:\n  web: {port: 80}\n")
    pb = load_playbook(top)
    assert pb.environment == "dev"
    assert pb.vars == {"a": 1, "b": 2, "c": 3, "list": [3]}
    assert pb.apps["web"].template == "generic" and pb.apps["web"].port == 80
    assert pb.extends == "common/mid.yml"


def test_an_inherited_key_is_blamed_on_the_base_and_an_override_on_the_child(tmp_path: Path) -> None:
    (tmp_path / "base.yml").write_text("project: shop\nprovider: local\napps:\n  web:\n"
                                       "    template: generic\n    port: 99999\n    memory: 1x\n")
    child = tmp_path / "child.yml"
    child.write_text("extends: base.yml\napps:\n  web:\n    memory: 2y\n")
    with pytest.raises(InputError) as info:
        load_playbook(child)
    got = {(p.file.name if p.file else None, p.key_path, p.line) for p in info.value.problems}
    assert got == {("base.yml", "apps.web.port", 6), ("child.yml", "apps.web.memory", 4)}


def test_a_scalar_replacing_a_base_mapping_takes_the_blame(tmp_path: Path) -> None:
    (tmp_path / "base.yml").write_text("project: shop\nprovider: local\nhost:\n  address: x\n")
    child = tmp_path / "child.yml"
    child.write_text("extends: base.yml\nhost: nope\n")
    with pytest.raises(InputError) as info:
        load_playbook(child)
    (problem,) = info.value.problems
    assert (problem.file, problem.key_path, problem.line) == (child, "host", 2)


def test_self_extension_is_a_cycle(tmp_path: Path) -> None:
    me = tmp_path / "me.yml"
    me.write_text("project: shop\nextends: me.yml\n")
    with pytest.raises(InputError, match=r"extends cycle: me.yml → me.yml"):
        load_playbook(me)


def test_syntax_error_in_a_base_names_the_base(tmp_path: Path) -> None:
    (tmp_path / "base.yml").write_text("project: shop\napps: [\n")
    child = tmp_path / "child.yml"
    child.write_text("extends: base.yml\n")
    with pytest.raises(InputError) as info:
        load_playbook(child)
    (problem,) = info.value.problems
    assert problem.file == tmp_path / "base.yml" and "invalid YAML" in problem.message


def test_invalid_utf8_is_reported(tmp_path: Path) -> None:
    pb = tmp_path / "bin.yml"
    pb.write_bytes(b"project: \xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_playbook(pb)
