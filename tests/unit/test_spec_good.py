"""Valid playbooks (tests/unit/good_playbooks/) load into the values the rest of dockyard relies on."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from pydantic import ValidationError

from provision.playbook import load_playbook
from provision.remote import SshTarget
from provision.spec import AppSpec, Playbook, PublishSpec

pytestmark = pytest.mark.unit

GOOD = Path(__file__).parent / "good_playbooks"


@pytest.mark.parametrize("name", sorted(p.name for p in GOOD.glob("*.yml")))
def test_every_good_playbook_loads_and_remembers_its_source(name: str) -> None:
    pb = load_playbook(GOOD / name)
    assert isinstance(pb, Playbook)
    assert pb.source == (GOOD / name).resolve()
    assert pb.base_dir == GOOD.resolve()


def test_minimal_local_playbook_gets_the_defaults() -> None:
    pb = load_playbook(GOOD / "local.yml")
    assert (pb.project, pb.environment, pb.provider, pb.extends) == ("demo", "local", "local", None)
    assert pb.ssh_user == "dockyard"  # the sandbox image's sudo user, like a cloud image's login user
    assert pb.ssh.port == 22 and pb.ssh.connect_timeout == 10.0
    assert pb.engine.source == "distro" and pb.engine.daemon == {} and pb.engine.users == ()
    web = pb.apps["web"]
    assert (web.template, web.dockerfile, web.context, web.port, web.publish) == ("python-web", None, ".",
                                                                                  8000, None)
    assert (web.restart, web.build, web.memory, web.healthcheck, web.secrets) == ("unless-stopped", "host",
                                                                                  None, None, ())
    assert pb.app_context("web") == GOOD.resolve()
    assert pb.known_hosts_file == GOOD.resolve() / ".dockyard" / "local" / "known_hosts"


def test_base_values_are_parsed_into_seconds_bytes_and_networks() -> None:
    pb = load_playbook(GOOD / "base.yml")
    assert pb.environment == "base"
    assert pb.host.ssh_from == (ipaddress.ip_network("203.0.113.7/32"), ipaddress.ip_network("2001:db8::/32"))
    assert pb.host.tags == {"team": "web", "cost-center": "42"}
    web = pb.apps["web"]
    assert web.healthcheck is not None
    assert (web.healthcheck.interval, web.healthcheck.timeout) == (90.0, 0.5)
    assert web.memory == 256 * 1024 * 1024
    assert web.publish == PublishSpec(host_ip="", host_port=8081)
    assert web.env == {"LOG_LEVEL": "info", "WORKERS": "2", "DEBUG": "false"}
    worker = pb.apps["worker"]
    assert worker.command == ("python", "-m", "worker", "--queue", "high prio")
    assert worker.reach == ("web",)
    assert pb.ssh_user == "ubuntu"  # ubuntu-24.04 default image


def test_extends_deep_merges_mappings_and_replaces_lists_and_scalars() -> None:
    pb = load_playbook(GOOD / "staging.yml")
    assert (pb.project, pb.environment, pb.extends) == ("shop", "staging", "base.yml")
    assert (pb.host.region, pb.host.instance_type, pb.host.image) == ("eu-west-1", "t3.medium", "debian-12")
    assert pb.vars == {"base_image": "python:3.12-slim", "nested": {"a": 1, "b": 3, "c": 4}}
    web = pb.apps["web"]
    assert web.env == {"LOG_LEVEL": "debug", "WORKERS": "2", "DEBUG": "false"}  # merged
    assert web.secrets == ("DATABASE_URL",)  # a list replaces
    assert web.publish == PublishSpec(host_ip="127.0.0.1", host_port=8081)
    assert web.memory == 1024**3
    assert web.context == "apps/web" and web.port == 8000  # inherited
    assert list(pb.apps) == ["web", "worker", "static"]
    static = pb.apps["static"]
    assert static.publish == PublishSpec(host_ip="::1", host_port=8082)
    assert str(static.publish) == "[::1]:8082"
    assert static.volumes == {"site-data": "/usr/share/nginx/html"}
    assert pb.ssh_user == "admin"  # debian-12's login user


def test_existing_host_ssh_and_anchors() -> None:
    pb = load_playbook(GOOD / "existing.yml")
    assert (pb.environment, pb.provider, pb.host.address) == ("prod", "existing", "192.0.2.10")
    assert pb.ssh_user == "root"
    assert pb.key_file == GOOD.resolve() / "keys" / "deploy"
    assert (pb.ssh.port, pb.ssh.connect_timeout, pb.ssh.jump) == (2222, 5.0, "bastion@192.0.2.1:22")
    assert pb.ssh.max_sessions == 4 and SshTarget.from_playbook(pb, pb.host.address).max_sessions == 4
    assert load_playbook(GOOD / "local.yml").ssh.max_sessions == 8  # the default, below sshd's MaxSessions 10
    assert pb.engine.source == "docker-ce" and pb.engine.users == ("deploy",)
    api, api2 = pb.apps["api"], pb.apps["api2"]
    assert api.healthcheck is not None and api.healthcheck.cmd == ("curl", "-fsS", "http://127.0.0.1:8080/")
    assert api.healthcheck.retries == 5 and api.healthcheck.http is None
    assert api2.healthcheck == api.healthcheck and api2.restart == "on-failure" and api2.cpus == 0.5
    assert api.publish == PublishSpec(host_ip="0.0.0.0", host_port=9000)
    assert api2.publish == PublishSpec(host_ip="::1", host_port=9000)


def test_ami_image_and_single_cidr_string() -> None:
    pb = load_playbook(GOOD / "ami.yml")
    assert pb.host.image.startswith("ami-")
    assert pb.host.ssh_from == (ipaddress.ip_network("198.51.100.0/24"),)
    assert pb.ssh_user == "ubuntu"


@pytest.mark.parametrize(("image", "user"), [("ubuntu-24.04", "ubuntu"), ("ubuntu-22.04", "ubuntu"),
                                             ("debian-12", "admin"), ("al2023", "ec2-user")])
def test_ssh_user_default_per_image(image: str, user: str) -> None:
    pb = Playbook(project="p", environment="e", host={"image": image, "ssh_from": ["10.0.0.0/8"]})
    assert pb.ssh_user == user
    assert Playbook(project="p", environment="e", host={"image": image, "ssh_from": ["10.0.0.0/8"]},
                    ssh={"user": "deploy"}).ssh_user == "deploy"


def test_the_model_is_frozen() -> None:
    pb = load_playbook(GOOD / "local.yml")
    with pytest.raises(ValidationError):
        pb.project = "other"  # type: ignore[misc]


def test_cross_checks_also_apply_when_built_directly() -> None:
    with pytest.raises(ValidationError, match="already published by app 'a'"):
        Playbook(project="p", environment="e", provider="local",
                 apps={"a": {"template": "generic", "port": 1, "publish": 80},
                       "b": {"template": "generic", "port": 1, "publish": "127.0.0.1:80"}})
    with pytest.raises(ValidationError, match="exactly one of `template`"):
        AppSpec()


@pytest.mark.parametrize(("a", "b", "clash"), [
    ("8080", "8080", True), ("8080", "127.0.0.1:8080", True), ("0.0.0.0:8080", "127.0.0.1:8080", True),
    ("[::]:8080", "[::1]:8080", True), ("0.0.0.0:8080", "[::1]:8080", False),
    ("127.0.0.1:8080", "127.0.0.2:8080", False), ("127.0.0.1:8080", "127.0.0.1:8080", True),
    ("8080", "8081", False),
])
def test_publish_overlap(a: str, b: str, clash: bool) -> None:
    pa = AppSpec(template="t", port=1, publish=a).publish
    pb = AppSpec(template="t", port=1, publish=b).publish
    assert pa is not None and pb is not None
    assert pa.overlaps(pb) is clash and pb.overlaps(pa) is clash


def test_unquoted_restart_no_means_no(tmp_path: Path) -> None:
    pb = tmp_path / "dev.yml"
    pb.write_text("project: shop\nprovider: local\napps:\n  job: {template: generic, restart: no}\n")
    assert load_playbook(pb).apps["job"].restart == "no"
