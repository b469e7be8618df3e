"""provision → provision → teardown through the real CLI (`python -m provision`, i.e. `dockyard`)
against a ThreadedMotoServer reached through AWS_ENDPOINT_URL, every step verified with describe calls.

The SSH wait dials the test sshd on 127.0.0.1 (ssh.host/ssh.port), never the fake 54.x/10.x address.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import aws_resources, cli_env, ec2_client, json_of
from tests.e2e.helpers import dockyard as run_cli

REGION = "eu-west-1"

pytestmark = pytest.mark.e2e


@pytest.fixture
def aws_cli_env(moto_server: str) -> dict[str, str]:
    return cli_env(AWS_ENDPOINT_URL=moto_server, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_DEFAULT_REGION=REGION)


@pytest.fixture
def ec2(moto_server: str) -> Any:
    return ec2_client(moto_server, REGION)


def dockyard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, *args, timeout=300)


def resources(ec2: Any, project: str) -> tuple[list[str], list[str], list[str]]:
    return aws_resources(ec2, project, "e2e")


def test_provision_and_teardown_through_the_cli(aws_cli_env, ec2, sshd, unique, tmp_path) -> None:
    project = unique  # the moto server lives for the whole session: keep this test's resources apart
    ami = ec2.register_image(Name=f"{unique}-ubuntu", RootDeviceName="/dev/sda1")["ImageId"]
    playbook = tmp_path / "e2e.yml"
    playbook.write_text(f"""\
project: {project}
provider: aws
host:
  region: {REGION}
  instance_type: t3.small
  image: {ami}
  volume_gb: 16
  ssh_from: [198.51.100.0/24]
  open_ports: [80]
ssh:
  user: {sshd.user}
  key_file: {sshd.key_file}
  host: {sshd.host}
  port: {sshd.port}
  known_hosts: {tmp_path / 'known_hosts'}
""")
    log_before = sshd.log.read_text().count("Connection from 127.0.0.1")

    first = json_of(dockyard(aws_cli_env, "provision", "-p", str(playbook), "--json"))
    host = first["host"]
    assert first["ok"] is True and first["changed"] == 3 and first["command"] == "provision"
    assert host["id"].startswith("i-") and host["state"] == "running"
    assert host["ssh"] == {"address": "127.0.0.1", "port": sshd.port, "user": "root"}
    assert host["public_address"] and host["public_address"] != "127.0.0.1"  # moto's fake, never dialled
    assert [c["target"] for c in host["changes"]] == [
        "aws:key-pair", "aws:security-group", "aws:security-group:rules", "aws:instance"]
    # the SSH wait really talked to the test sshd
    assert sshd.log.read_text().count("Connection from 127.0.0.1") > log_before

    second = json_of(dockyard(aws_cli_env, "provision", "-p", str(playbook), "--json"))
    assert second["changed"] == 0 and second["host"]["id"] == host["id"]
    assert second["host"]["changes"] == []
    instances, groups, keys = resources(ec2, project)
    assert instances == [host["id"]] and len(groups) == 1 and keys == [f"dockyard-{project}-e2e"]
    [inst] = ec2.describe_instances(InstanceIds=instances)["Reservations"][0]["Instances"]
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    [group] = ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]
    ssh_rules = [p for p in group["IpPermissions"] if p["FromPort"] == sshd.port]  # the rule follows ssh.port
    assert [r["CidrIp"] for p in ssh_rules for r in p["IpRanges"]] == ["198.51.100.0/24"]
    assert not [r for p in ssh_rules for r in p.get("Ipv6Ranges", ())]

    # teardown without --yes and without a terminal refuses (exit 2) and touches nothing
    refused = dockyard(aws_cli_env, "teardown", "-p", str(playbook))
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert resources(ec2, project) == (instances, groups, keys)

    checked = json_of(dockyard(aws_cli_env, "teardown", "-p", str(playbook), "--check", "--json"))
    assert [c["target"] for c in checked["changes"]] == ["aws:instance", "aws:security-group", "aws:key-pair"]
    assert resources(ec2, project) == (instances, groups, keys)

    gone = json_of(dockyard(aws_cli_env, "teardown", "-p", str(playbook), "--yes", "--json"))
    assert gone["changed"] == 3
    # it held the deploy lock on the "host" (this machine, over the test sshd) and released it at the end
    state = Path(f"/var/lib/dockyard/{project}-e2e")
    assert (state / "audit.jsonl").is_file() and not (state / "lock").exists()
    shutil.rmtree(state, ignore_errors=True)
    assert resources(ec2, project) == ([], [], [])
    again = json_of(dockyard(aws_cli_env, "teardown", "-p", str(playbook), "--yes", "--json"))
    assert again["changed"] == 0 and again["changes"] == []

    # recreate = teardown + up (setup and deploy included): it is tested against a sim host in
    # tests/e2e/test_up_aws_simhost.py, never here, where the "host" behind the test sshd is this machine.

    json_of(dockyard(aws_cli_env, "teardown", "-p", str(playbook), "--yes", "--json"))
    assert resources(ec2, project) == ([], [], [])
