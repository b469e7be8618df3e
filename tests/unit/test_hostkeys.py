"""provision.hostkeys: the console parser on recorded output, and the trust decision on known_hosts files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import paramiko
import pytest
from invoke import Config, Context
from pydantic import ValidationError

from provision.cli.common import dockyard_task, load, options
from provision.errors import StepFailed
from provision.hostkeys import (
    HostKeyRejected,
    HostKeyTrust,
    check_host_key,
    fingerprint,
    forget_host_keys,
    parse_console_host_keys,
    preferred_key_types,
    read_known_hosts,
    record_host_keys,
    remember_key,
)
from provision.spec import SshSpec

pytestmark = pytest.mark.unit

CONSOLE = Path(__file__).parent / "console_output"
KEYS: dict[str, str] = json.loads((CONSOLE / "keys.json").read_text())  # type → "TYPE BASE64"
NAME = "[203.0.113.9]:2222"


def pkey(line: str) -> paramiko.PKey:
    key_type, b64 = line.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))


def other_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


ED = pkey(KEYS["ed25519"])
ECDSA = pkey(KEYS["ecdsa"])
RSA = pkey(KEYS["rsa"])


def check(key: paramiko.PKey, kh: Path, **trust) -> object:
    return check_host_key(label="ssh ubuntu@203.0.113.9:2222", name=NAME, key=key, trust=HostKeyTrust(**trust),
                          known_hosts=kh)


# --- console output ----------------------------------------------------------------------------------------


def test_ubuntu_console_gives_every_key_of_the_block() -> None:
    keys = parse_console_host_keys((CONSOLE / "ubuntu-24.04.txt").read_text())
    assert [" ".join(k) for k in keys] == [KEYS["ecdsa"], KEYS["ed25519"], KEYS["rsa"]]


def test_prefixed_lines_and_a_block_cut_off_by_a_reboot() -> None:
    """AL2023 prefixes `ec2: `; the second boot's block has no END (console still being written): the last
    complete block counts, never a truncated key."""
    keys = parse_console_host_keys((CONSOLE / "al2023-rebooted.txt").read_text())
    assert [" ".join(k) for k in keys] == [KEYS["ecdsa"], KEYS["ed25519"]]


def test_console_without_keys_or_with_forged_types_gives_nothing() -> None:
    assert parse_console_host_keys(None) == []
    assert parse_console_host_keys("Linux version 2.6.16-xenU\nBIOS-provided physical RAM map:\n") == []
    ed_blob = KEYS["ed25519"].split()[1]
    forged = (f"-----BEGIN SSH HOST KEY KEYS-----\nssh-rsa {ed_blob} x\nssh-ed25519 !!!\n"
              "-----END SSH HOST KEY KEYS-----\n")
    assert parse_console_host_keys(forged) == []  # the blob says ed25519, the line says rsa


def test_record_replaces_the_keys_of_an_earlier_host_at_that_address(tmp_path: Path) -> None:
    kh = tmp_path / "d" / "known_hosts"
    kh.parent.mkdir()
    old = other_key()
    kh.write_text(f"# team keys\nbastion ssh-ed25519 {ED.get_base64()}\n{NAME} {old.get_name()} {old.get_base64()}\n")
    keys = parse_console_host_keys((CONSOLE / "ubuntu-24.04.txt").read_text())
    assert record_host_keys(kh, NAME, keys) == 3
    assert {e.key.asbytes() for e in read_known_hosts(kh, NAME)} == {ED.asbytes(), ECDSA.asbytes(),
                                                                     RSA.asbytes()}
    assert kh.read_text().startswith(f"# team keys\nbastion ssh-ed25519 {ED.get_base64()}\n")
    assert record_host_keys(kh, NAME, keys) == 0  # the same keys again: the file is left alone


# --- the decision --------------------------------------------------------------------------------------------


def test_first_use_is_remembered_only_outside_strict_mode(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    verdict = check(ED, kh)
    assert verdict.accepted and verdict.remember
    with pytest.raises(HostKeyRejected) as err:
        check(ED, kh, strict=True)
    msg = str(err.value)
    assert msg.startswith("ssh ubuntu@203.0.113.9:2222: unknown host key ssh-ed25519 SHA256:")
    assert f'ssh.host_key: "{fingerprint(ED)}"' in msg and "ssh.known_hosts" in msg and "\n" not in msg
    remember_key(kh, NAME, ED)
    remember_key(kh, NAME, ED)
    assert kh.read_text() == f"{NAME} ssh-ed25519 {ED.get_base64()}\n"
    assert check(ED, kh, strict=True).matched == f"{kh}:1"


def test_a_hashed_entry_in_a_read_only_file_is_trusted_and_never_written(tmp_path: Path) -> None:
    user = tmp_path / "user_known_hosts"
    hashed = paramiko.HostKeys.hash_host(NAME)
    user.write_text(f"{hashed} ssh-ed25519 {ED.get_base64()}\n")
    before = user.read_text()
    verdict = check(ED, tmp_path / "env_known_hosts", strict=True, read_only=(user,))
    assert verdict.accepted and not verdict.remember and verdict.matched == f"{user}:1"
    assert user.read_text() == before and not (tmp_path / "env_known_hosts").exists()


def test_a_changed_key_names_host_file_and_line(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"# header\nother ssh-ed25519 {ED.get_base64()}\n{NAME} ssh-ed25519 {ED.get_base64()}\n")
    with pytest.raises(HostKeyRejected) as err:
        check(ECDSA, kh)
    msg = str(err.value)
    assert msg.startswith("ssh ubuntu@203.0.113.9:2222: the host key changed for [203.0.113.9]:2222")
    assert f"{kh}:3" in msg and f"ssh-keygen -R '{NAME}' -f {kh}" in msg and fingerprint(ECDSA) in msg


def test_revoked_keys_are_refused_even_when_listed_elsewhere(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{NAME} ssh-ed25519 {ED.get_base64()}\n@revoked * ssh-ed25519 {ED.get_base64()}\n"
                  f"@cert-authority * ssh-ed25519 {ECDSA.get_base64()}\n")
    with pytest.raises(HostKeyRejected, match="@revoked"):
        check(ED, kh)


def test_pinned_host_key_wins_over_files_and_names_both_fingerprints(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{NAME} ecdsa-sha2-nistp256 {ECDSA.get_base64()}\n")
    assert check(ED, kh, pinned=(KEYS["ed25519"],)).matched == "ssh.host_key"
    assert check(ED, kh, pinned=(fingerprint(ED),), strict=True).accepted
    for pin in (KEYS["rsa"], fingerprint(RSA)):
        with pytest.raises(HostKeyRejected) as err:
            check(ECDSA, kh, pinned=(pin,))  # known in the file, but the pin decides
        msg = str(err.value)
        assert "ssh ubuntu@203.0.113.9:2222" in msg
        assert f"expected {fingerprint(RSA)}" in msg and f"offers ecdsa-sha2-nistp256 {fingerprint(ECDSA)}" in msg
    assert HostKeyTrust(pinned=(fingerprint(RSA),)).for_jump().pinned == ()


def test_key_types_we_know_are_offered_first(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{NAME} ssh-rsa {RSA.get_base64()}\n")
    assert preferred_key_types(NAME, HostKeyTrust(), kh) == ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    assert preferred_key_types(NAME, HostKeyTrust(pinned=(KEYS["ecdsa"],)), kh) == ["ecdsa-sha2-nistp256"]
    assert preferred_key_types("elsewhere", HostKeyTrust(), kh) == []


def test_forget_drops_plain_and_hashed_entries_only(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    keep = f"# comment\nkeep.example ssh-ed25519 {ED.get_base64()}\n"
    kh.write_text(keep + f"{NAME} ssh-ed25519 {ED.get_base64()}\n"
                  f"{paramiko.HostKeys.hash_host(NAME)} ssh-ed25519 {ED.get_base64()}\n")
    assert forget_host_keys(kh, [NAME, "gone.example"]) == 2
    assert kh.read_text() == keep
    kh.write_text(f"{NAME} ssh-ed25519 AAAA\n{NAME} sk-ssh-ed25519@openssh.com AAAA\n!{NAME},* ssh-ed25519 "
                  f"{ED.get_base64()}\n")  # unreadable keys and a negated pattern: never a match, never a crash
    assert read_known_hosts(kh, NAME) == [] and check(ED, kh).remember


# --- the playbook and the command line -----------------------------------------------------------------------


def test_ssh_host_key_accepts_keys_and_fingerprints_and_refuses_the_rest() -> None:
    assert SshSpec(host_key=KEYS["ed25519"] + " root@host").host_key == (KEYS["ed25519"],)
    assert SshSpec(host_key=[fingerprint(ED)]).host_key == (fingerprint(ED),)
    ed_blob = KEYS["ed25519"].split()[1]
    for bad in ("SHA256:short", f"ssh-rsa {ed_blob}", "ssh-ed25519 not-base64", "AAAA"):
        with pytest.raises(ValidationError, match="host_key"):
            SshSpec(host_key=bad)


def _playbook(tmp_path: Path, strict: bool = False) -> Path:
    path = tmp_path / "playbooks" / "staging.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("project: shop\nenvironment: staging\nprovider: existing\nhost: {address: 127.0.0.1}\n"
                    + ("ssh: {strict_host_keys: true}\n" if strict else ""))
    return path


def test_strict_host_keys_layering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--strict-host-keys, DOCKYARD_STRICT_HOST_KEYS, the `dockyard:` config section and the playbook: any of
    them turns strict mode on (a flag can only tighten what the playbook says)."""
    seen: list[bool] = []

    @dockyard_task(connects=True)
    def probe(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
              verbose: bool = False) -> None:
        seen.append(load(options(ctx, env, playbook, json, verbose)).ssh.strict_host_keys)

    assert "strict_host_keys" in [a.name for a in probe.get_arguments()]
    monkeypatch.delenv("DOCKYARD_STRICT_HOST_KEYS", raising=False)
    (tmp_path / "s").mkdir()
    plain, strict_pb = str(_playbook(tmp_path)), str(_playbook(tmp_path / "s", strict=True))
    ctx = Context(Config(overrides={"dockyard": {"root": str(tmp_path)}}))
    probe(ctx, playbook=plain)
    probe(ctx, playbook=plain, strict_host_keys=True)
    probe(ctx, playbook=strict_pb)
    probe(Context(Config(overrides={"dockyard": {"strict_host_keys": True}})), playbook=plain)
    monkeypatch.setenv("DOCKYARD_STRICT_HOST_KEYS", "1")
    probe(ctx, playbook=plain)
    assert seen == [False, True, True, True, True]


def test_sandbox_pin_keeps_only_the_sandbox_key_for_its_port(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from provision.sandbox.keys import pin_host_key

    known = tmp_path / "known_hosts"
    other = "[127.0.0.1]:2200 " + KEYS["ed25519"] + "\n"
    known.write_text("[127.0.0.1]:40022 " + KEYS["ecdsa"] + "\n" + other)
    exec_result = SimpleNamespace(exit_code=0, output=(KEYS["ed25519"] + " root@sandbox\n").encode())
    client = SimpleNamespace(containers=SimpleNamespace(
        get=lambda cid: SimpleNamespace(exec_run=lambda argv: exec_result)))
    pin_host_key(client, "cid", known, 40022)
    assert known.read_text() == other + "[127.0.0.1]:40022 " + KEYS["ed25519"] + "\n"
    exec_result.output = b"ssh-ed25519 not-base64!\n"
    with pytest.raises(StepFailed):
        pin_host_key(client, "cid", tmp_path / "fresh", 40023)
