"""SSH key material for local sandboxes: the per-environment client key and the sandbox's pinned host key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision.commands.sandbox import BIND_ADDRESS
from provision.errors import StepFailed
from provision.hostkeys import known_hosts_name, read_known_hosts, record_host_keys

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


def ensure_key(path: Path, *, generate: bool) -> str:
    """The public half of `path` (an OpenSSH line); generates an ed25519 pair (0600) when allowed."""
    pub = path.with_name(path.name + ".pub")
    if not path.exists():
        if not generate:
            raise StepFailed(f"ssh.key_file {path} does not exist")
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private)
        line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH)
        pub.write_text(line.decode() + f" dockyard-{path.parent.name}\n")
    if pub.exists():
        return pub.read_text().strip()
    try:
        k = paramiko.PKey.from_path(str(path))
    except Exception as exc:
        raise StepFailed(f"cannot read the SSH key {path}: {exc}") from None
    return f"{k.get_name()} {k.get_base64()}"


def pin_host_key(client: Any, container_id: str, known_hosts: Path, port: int) -> None:
    """Read the sandbox's host key through the local engine and make it the only entry for its port."""
    out = client.containers.get(container_id).exec_run(["cat", HOST_KEY])
    fields = out.output.decode(errors="replace").split()
    if out.exit_code != 0 or len(fields) < 2:
        raise StepFailed(f"cannot read the sandbox's host key {HOST_KEY}: {out.output[-300:]!r}")
    name = known_hosts_name(BIND_ADDRESS, port)
    record_host_keys(known_hosts, name, [(fields[0], fields[1])])
    if not any(e.key.get_base64() == fields[1] for e in read_known_hosts(known_hosts, name)):
        raise StepFailed(f"the sandbox's host key {HOST_KEY} is not a key paramiko reads")
