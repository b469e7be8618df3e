"""`host.addresses` (several existing hosts as one environment) and how each becomes a host to dial."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.phases.host import environment_hosts, remote_for
from provision.playbook import load_playbook
from provision.spec_host import split_address

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("item", "want"), [
    ("10.0.0.5", ("10.0.0.5", None)),
    ("10.0.0.7:2222", ("10.0.0.7", 2222)),
    ("node-3.internal", ("node-3.internal", None)),
    ("[fd00::5]:2200", ("fd00::5", 2200)),
    ("[fd00::5]", ("fd00::5", None)),
    ("fd00::5", ("fd00::5", None)),
])
def test_an_address_splits_into_host_and_optional_ssh_port(item: str, want: tuple[str, int | None]) -> None:
    assert split_address(item) == want


@pytest.mark.parametrize(("item", "problem"), [
    ("10.0.0.7:0", "not in 1..65535"),
    ("10.0.0.7:ssh", "must be a number"),
    (":22", "expected a host name or IP address"),
    ("[not-v6]:22", "brackets hold an IPv6 address"),
    ("-oProxyCommand=x", "host name or IP"),
    (22, "expected a string"),
])
def test_a_bad_address_says_what_is_wrong(item: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        split_address(item)


def test_each_address_is_a_host_of_the_environment_with_its_own_port_and_label(tmp_path: Path) -> None:
    path = tmp_path / "prod.yml"
    path.write_text("project: shop\nenvironment: prod\nprovider: existing\nssh: {port: 2022}\n"
                    "engine: {mode: swarm, managers: 3}\n"
                    'host:\n  addresses: ["10.0.0.5", "10.0.0.6:2222", "[fd00::7]:22"]\n')
    pb = load_playbook(path)
    hosts = environment_hosts(pb)
    assert [(label, h.ssh_address, h.ssh_port) for label, h in hosts] == [
        ("shop-prod-1", "10.0.0.5", 2022), ("shop-prod-2", "10.0.0.6", 2222), ("shop-prod-3", "fd00::7", 22)]
    assert pb.engine.mode == "swarm" and pb.engine.managers == 3
    # one-host commands (lock, audit, releases, status) go to the first: it leads the swarm
    target = remote_for(pb).target
    assert (target.host, target.port) == ("10.0.0.5", 2022)


def test_one_address_stays_the_one_host_it_always_was(tmp_path: Path) -> None:
    path = tmp_path / "prod.yml"
    path.write_text("project: shop\nenvironment: prod\nprovider: existing\nhost: {address: 10.0.0.5}\n")
    pb = load_playbook(path)
    assert [(label, h.ssh_address) for label, h in environment_hosts(pb)] == [("shop-prod", "10.0.0.5")]
    assert pb.engine.mode == "standalone" and pb.engine.managers == 1


def test_swarm_mode_drops_the_live_restore_default_and_refuses_asking_for_it(tmp_path: Path) -> None:
    import json

    from provision.errors import InputError
    from provision.render_daemon import render_daemon_json

    path = tmp_path / "prod.yml"
    base = "project: shop\nenvironment: prod\nprovider: existing\nhost: {address: 10.0.0.5}\n"
    path.write_text(base)
    assert json.loads(render_daemon_json(load_playbook(path).engine))["live-restore"] is True
    path.write_text(base + "engine: {mode: swarm}\n")
    assert "live-restore" not in json.loads(render_daemon_json(load_playbook(path).engine))
    path.write_text(base + "engine: {mode: swarm, daemon: {live-restore: true}}\n")
    pb = load_playbook(path)
    with pytest.raises(InputError) as info:
        render_daemon_json(pb.engine, pb)
    assert info.value.problems[0].key_path == "engine.daemon.live-restore"
