"""The one path from the EC2 API to running apps: `dockyard up` with `provider: aws` against a ThreadedMotoServer
(AWS_ENDPOINT_URL, fake credentials), the instance's SSH endpoint mapped onto a sim host (`ssh.host: 127.0.0.1`,
`ssh.port: <the sim host's published 22>`), then `teardown --yes`.

The sim host starts without Docker: `up` installs the engine over SSH (setup). It has no registry either, and
deploy only ships build base images for `provider: local`; so the app uses dockyard's own answer for hosts
without a registry, `build: local`: the image is built on this machine (FROM CI's locally made static image)
and shipped to the host over the same SSH connection (`docker save | docker load`). Nothing is done by hand
between the phases: one `up` command.

Traffic: the moto server on 127.0.0.1, the sim host's SSH and its published app port on 127.0.0.1. Never
moto's fake 54.x/10.x addresses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import (
    aws_resources,
    cli_env,
    dockyard,
    ec2_client,
    explain,
    get,
    json_of,
    remove_labelled,
    tasks,
)
from tests.images import image_ref
from tests.simhost import start_simhost, stop_simhost

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

REGION = "eu-west-1"
ENVIRONMENT = "e2e"
APP_PORT = 8082  # the app's published port inside the sim host (mapped to a 127.0.0.1 port here)


@pytest.fixture
def ec2(moto_server: str) -> Any:
    return ec2_client(moto_server, REGION)


def resources(ec2: Any, project: str) -> tuple[list[str], list[str], list[str]]:
    return aws_resources(ec2, project, ENVIRONMENT)


def test_up_from_the_ec2_api_to_a_running_app_on_a_sim_host(tmp_path: Path, unique: str, moto_server: str,
                                                           ec2: Any) -> None:
    project = unique  # the moto server lives for the whole session: keep this test's resources apart
    host = start_simhost(f"{unique}-simhost", tmp_path / "simhost", extra_ports=(APP_PORT,))
    env = cli_env(AWS_ENDPOINT_URL=moto_server, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                  AWS_DEFAULT_REGION=REGION)
    playbook = tmp_path / "playbooks" / f"{ENVIRONMENT}.yml"
    try:
        ami = ec2.register_image(Name=f"{unique}-ubuntu", RootDeviceName="/dev/sda1")["ImageId"]
        site = tmp_path / "apps" / "site"
        site.mkdir(parents=True)
        (site / "index.html").write_text(f"<h1>hello from {unique} on a sim host</h1>\n")
        playbook.parent.mkdir()
        playbook.write_text(f"""\
project: {project}
environment: {ENVIRONMENT}
provider: aws
host:
  region: {REGION}
  instance_type: t3.small
  image: {ami}
  ssh_from: [198.51.100.0/24]
  open_ports: [{APP_PORT}]
ssh:
  user: {host.user}
  key_file: {host.key_file}
  host: 127.0.0.1
  port: {host.port}
  known_hosts: {tmp_path / 'known_hosts'}
engine:
  source: distro
apps:
  site:
    template: static-site
    context: ../apps/site
    vars: {{base_image: "{image_ref('static')}"}}
    build: local
    port: 8080
    publish: {APP_PORT}
    healthcheck: {{http: /}}
    memory: 64m
""")
        assert host.exec("command -v docker dockerd")[0] != 0  # a fresh "VM": no engine yet

        up = json_of(dockyard(env, "up", "-p", str(playbook), "--json"))
        assert up["ok"] is True and up["failed"] == 0
        instance_id = up["host"]["id"]
        assert instance_id.startswith("i-") and up["host"]["ssh"]["port"] == host.port
        # provision: exactly one instance (and its SG and key pair) in the EC2 API
        instances, groups, keys = resources(ec2, project)
        assert instances == [instance_id] and len(groups) == 1 and keys == [f"dockyard-{project}-{ENVIRONMENT}"]
        # setup: the engine was installed on the sim host, over SSH, by this run
        assert any(t["status"] == "changed" and ("engine" in t["task"] or "docker" in t["task"])
                   for t in tasks(up)), [(t["task"], t["status"]) for t in tasks(up)]
        code, out = host.exec("docker info --format '{{.ServerVersion}}'")
        assert code == 0 and out.strip(), out
        # deploy: built here, shipped, running on the sim host's engine, answering on its published port
        assert [r.rsplit(":", 1)[0] for r in up["built"]] == [f"{project}/site"]
        code, out = host.exec(f"docker ps --filter label=dockyard.project={project} "
                              "--format '{{.Label \"dockyard.app\"}} {{.State}}'")
        assert code == 0 and out.split() == ["site", "running"], out
        status, body = get(f"http://127.0.0.1:{host.published(APP_PORT)}/")
        assert status == 200 and f"hello from {unique} on a sim host" in body
        assert set(up["urls"]) == {"site"}  # the EC2 address (moto's fake): shown, never dialled

        # a second up: the same instance, nothing changed
        again = json_of(dockyard(env, "up", "-p", str(playbook), "--json"))
        assert again["changed"] == 0 and again["host"]["id"] == instance_id, [
            (t["task"], t["status"]) for t in tasks(again) if t["status"] != "ok"]
        assert resources(ec2, project)[0] == [instance_id]

        # recreate: the old instance and what dockyard made for it go, one fresh instance comes, and the
        # same pipeline (setup, deploy) runs on it; the sim host still serves the app afterwards
        fresh = json_of(dockyard(env, "recreate", "-p", str(playbook), "--yes", "--json"))
        assert fresh["ok"] is True and fresh["command"] == "recreate"
        assert [c["target"] for c in fresh["removed"]] == ["aws:instance", "aws:security-group", "aws:key-pair"]
        fresh_id = fresh["host"]["id"]
        assert fresh_id.startswith("i-") and fresh_id != instance_id
        instances, groups, keys = resources(ec2, project)
        assert instances == [fresh_id] and len(groups) == 1 and len(keys) == 1
        assert {t["task"] for t in tasks(fresh)} >= {"gather facts", "app site: container"}
        status, body = get(f"http://127.0.0.1:{host.published(APP_PORT)}/")
        assert status == 200 and f"hello from {unique} on a sim host" in body

        # teardown: no instance, security group or key pair left
        gone = dockyard(env, "teardown", "-p", str(playbook), "--yes", "--json")
        assert gone.returncode == 0, explain(gone)
        assert resources(ec2, project) == ([], [], [])
        for gone_id in (instance_id, fresh_id):
            [inst] = ec2.describe_instances(InstanceIds=[gone_id])["Reservations"][0]["Instances"]
            assert inst["State"]["Name"] == "terminated"
    finally:
        if playbook.exists():
            dockyard(env, "teardown", "-p", str(playbook), "--yes", timeout=300)
        stop_simhost(host)
        remove_labelled(project)  # the app is built here (`build: local`) before it is shipped
