"""render_daemon_json: dockyard's daemon.json defaults merged with the playbook's `engine.daemon`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from provision.errors import InputError
from provision.playbook import load_playbook
from provision.render_daemon import deep_merge, render_daemon_json
from provision.spec import EngineSpec

pytestmark = pytest.mark.unit


def test_defaults_rotate_json_logs_and_live_restore_without_listeners() -> None:
    text = render_daemon_json(EngineSpec())
    doc = json.loads(text)
    assert doc == {"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"},
                   "live-restore": True}
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == json.dumps(doc, indent=2, sort_keys=True) + "\n"  # pretty, sorted: stable for diffs


def test_engine_daemon_is_deep_merged_over_the_defaults() -> None:
    engine = EngineSpec(daemon={"log-opts": {"max-size": "50m", "compress": "true"},
                                "default-address-pools": [{"base": "10.200.0.0/16", "size": 24}],
                                "live-restore": None})
    doc = json.loads(render_daemon_json(engine))
    assert doc == {"log-driver": "json-file",
                   "log-opts": {"max-size": "50m", "max-file": "3", "compress": "true"},
                   "default-address-pools": [{"base": "10.200.0.0/16", "size": 24}]}


def test_a_non_mapping_replaces_a_mapping() -> None:
    assert deep_merge({"a": {"b": 1}, "c": 1}, {"a": "x"}) == {"a": "x", "c": 1}
    assert deep_merge({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}  # lists replace, never append


@pytest.mark.parametrize("hosts", [["tcp://0.0.0.0:2375"], ["unix:///var/run/docker.sock", "TCP://10.0.0.1:2376"],
                                   "tcp://127.0.0.1:2375"])
def test_a_tcp_listener_is_refused(hosts) -> None:
    with pytest.raises(InputError) as exc:
        render_daemon_json(EngineSpec(daemon={"hosts": hosts}))
    (p,) = exc.value.problems
    assert p.key_path == "engine.daemon.hosts"
    assert "TCP listener" in p.message and "tcp://" in p.message.lower()


def test_any_hosts_entry_is_refused_with_the_reason() -> None:
    with pytest.raises(InputError) as exc:
        render_daemon_json(EngineSpec(daemon={"hosts": ["unix:///var/run/docker.sock"]}))
    (p,) = exc.value.problems
    assert p.key_path == "engine.daemon.hosts" and "-H" in p.message


def test_errors_name_the_playbook_and_a_project_may_override_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "playbooks" / "prod.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"project": "shop", "provider": "local",
                                    "engine": {"daemon": {"hosts": ["tcp://0.0.0.0:2375"]}}}))
    pb = load_playbook(path)
    with pytest.raises(InputError) as exc:
        render_daemon_json(pb.engine, pb)
    assert exc.value.problems[0].file == pb.source

    (tmp_path / "templates" / "engine").mkdir(parents=True)
    (tmp_path / "templates" / "engine" / "daemon.json.j2").write_text('{"log-driver": "local"}\n')
    assert json.loads(render_daemon_json(EngineSpec(daemon={"debug": True}), pb)) == {
        "log-driver": "local", "debug": True}


def test_an_override_that_is_not_json_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "playbooks" / "prod.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"project": "shop", "provider": "local"}))
    (tmp_path / "templates" / "engine").mkdir(parents=True)
    (tmp_path / "templates" / "engine" / "daemon.json.j2").write_text('{"log-driver": }\n')
    pb = load_playbook(path)
    with pytest.raises(InputError, match="did not render JSON"):
        render_daemon_json(pb.engine, pb)
