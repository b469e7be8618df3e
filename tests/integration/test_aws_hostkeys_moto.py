# ruff: noqa: F811  (pytest fixtures imported from test_aws_moto are redefined as arguments)
"""The AWS security defaults and the console host keys, against in-process moto.

moto's console output is a fixed kernel log without host keys, so the tests hand GetConsoleOutput a recorded
cloud-init console (tests/unit/console_output) through a botocore after-call hook on the session: the
provider's real call, parsed response replaced. The refusals go through the command line in-process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import paramiko
import pytest

from provision.providers import aws as provider
from provision.providers import aws_console
from tests.cli import run_cli
from tests.integration.test_aws_moto import (  # noqa: F401  (fixtures)
    aws,
    banner,
    dockyard_groups,
    ingress,
    live_instances,
    no_remote_dials,
    reporter,
    seed_image,
    write_playbook,
)

pytestmark = pytest.mark.integration

CONSOLE = Path(__file__).parents[1] / "unit" / "console_output"
KEYS: dict[str, str] = json.loads((CONSOLE / "keys.json").read_text())


def serve_console(session: boto3.Session, outputs: list[str]) -> list[str]:
    """GetConsoleOutput answers outputs[0], outputs[1], … (the last one from then on); returns the calls."""
    calls: list[str] = []

    def replace(parsed: dict[str, Any], **_: Any) -> None:
        calls.append(parsed.get("InstanceId", ""))
        parsed["Output"] = outputs[min(len(calls), len(outputs)) - 1]

    session.events.register("after-call.ec2.GetConsoleOutput", replace)
    return calls


def test_imds_hop_limit_is_1_unless_the_playbook_opts_in_and_existing_hosts_converge(
        aws, tmp_path, banner, no_remote_dials) -> None:
    seed_image(aws)
    provider.ensure_host(write_playbook(tmp_path, banner), reporter=reporter(), session=aws)
    ec2 = aws.client("ec2")
    [inst] = live_instances(ec2)
    assert inst["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    rep = reporter()
    provider.ensure_host(write_playbook(tmp_path, banner, extra="  imds_hop_limit: 2\n"), reporter=rep,
                         session=aws)
    [after] = live_instances(ec2)
    assert after["InstanceId"] == inst["InstanceId"]
    assert after["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    assert after["MetadataOptions"]["HttpTokens"] == "required"
    assert any(c.target == "aws:instance:metadata" for r in rep.results for c in r.changes)


def test_the_ssh_rule_is_on_ssh_port_only(aws, tmp_path, banner, no_remote_dials) -> None:
    seed_image(aws)
    provider.ensure_host(write_playbook(tmp_path, banner), reporter=reporter(), session=aws)
    rules = ingress(dockyard_groups(aws.client("ec2"))[0])
    assert (banner, "203.0.113.7/32") in rules and banner != 22
    assert not [r for r in rules if r[0] == 22]


def test_console_host_keys_are_recorded_before_the_first_connection(aws, tmp_path, banner,
                                                                    no_remote_dials) -> None:
    seed_image(aws)
    kh = tmp_path / "known_hosts"
    stale, other = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()  # an earlier instance's key
    kh.write_text(f"[127.0.0.1]:{banner} {stale.get_name()} {stale.get_base64()}\n"
                  f"other.example {other.get_name()} {other.get_base64()}\n")
    calls = serve_console(aws, [(CONSOLE / "ubuntu-24.04.txt").read_text()])
    info = provider.ensure_host(write_playbook(tmp_path, banner), reporter=reporter(), session=aws)
    assert calls == [info.host_id]
    lines = kh.read_text().splitlines()
    assert lines[0].startswith("other.example ")  # other hosts' lines stay; the stale key of this address went
    assert sorted(lines[1:]) == sorted(f"[127.0.0.1]:{banner} {KEYS[t]}" for t in ("ecdsa", "ed25519", "rsa"))


def test_strict_mode_waits_a_bounded_time_for_the_console_keys(aws, tmp_path, banner, no_remote_dials,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seed_image(aws)
    monkeypatch.setattr(aws_console, "CONSOLE_WAIT", 0.5)
    booting = "Linux version 6.8.0-1016-aws\n[    8.9] cloud-init[571]: running 'init'\n"
    calls = serve_console(aws, [booting, booting, (CONSOLE / "al2023-rebooted.txt").read_text()])
    pb = write_playbook(tmp_path, banner)
    pb = pb.model_copy(update={"ssh": pb.ssh.model_copy(update={"strict_host_keys": True})})  # as load() does
    provider.ensure_host(pb, reporter=reporter(), session=aws, delay=0.05)
    assert len(calls) == 3
    assert f"[127.0.0.1]:{banner} {KEYS['ed25519']}" in (tmp_path / "known_hosts").read_text()
    calls.clear()  # a second run: keys are known, one read, nothing waits
    serve_console(aws, [booting])
    provider.ensure_host(pb, reporter=reporter(), session=aws, delay=0.05)
    assert len(calls) == 1


@pytest.mark.parametrize(("host", "key_path", "words"), [
    ("  ssh_from: [0.0.0.0/0]\n  open_ports: [80]\n", "host.ssh_from[0]", "whole internet"),
    ("  ssh_from: [203.0.113.7/32, '::/0']\n", "host.ssh_from[1]", "allow_ssh_from_anywhere"),
    ("  ssh_from: [203.0.113.7/32]\n  open_ports: [443, 22]\n", "host.open_ports[1]", "SSH port"),
])
def test_provision_refuses_ssh_to_the_world_before_any_aws_call(aws, tmp_path, capsys, host: str,
                                                                key_path: str, words: str) -> None:
    path = tmp_path / "staging.yml"
    path.write_text(f"project: shop\nprovider: aws\nhost:\n  region: eu-west-1\n{host}")
    assert run_cli("provision", "-p", str(path)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dockyard: invalid input: {path}:") and f": {key_path}: " in err and words in err
    assert aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["dockyard-shop-staging"]}])["SecurityGroups"] == []
