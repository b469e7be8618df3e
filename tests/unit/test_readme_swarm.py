"""The README's "When one host is not enough" playbooks are valid playbooks (they load, as `validate` reads
them) and say what the section says: three hosts, swarm mode, replicated apps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provision.playbook import load_playbook

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[2] / "README.md"


def section_playbooks() -> list[str]:
    text = README.read_text()
    start = text.index("## When one host is not enough")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```yaml\n(.*?)```", text[start:end], flags=re.S)


def test_the_section_has_the_existing_and_the_aws_playbook():
    assert len(section_playbooks()) == 2


@pytest.mark.parametrize("index", [0, 1])
def test_each_playbook_loads_as_a_three_host_swarm(tmp_path: Path, index: int) -> None:
    path = tmp_path / "playbooks" / "prod.yml"
    path.parent.mkdir()
    path.write_text(section_playbooks()[index])
    pb = load_playbook(path)
    assert pb.engine.mode == "swarm" and pb.engine.managers == 3
    assert (len(pb.host.addresses) if pb.provider == "existing" else pb.host.count) == 3
    assert pb.apps["web"].replicas == 3
