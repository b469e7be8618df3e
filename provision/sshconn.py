"""How dockyard's one SSH connection per host is made, apart from the connection itself (provision.remote):

- host keys: trust on first use into our known_hosts file, strict afterwards (`prepare_client`,
  `known_hosts_line` for the "key changed" message);
- `nodelay`: TCP_NODELAY on the socket (paramiko leaves Nagle on: ~45 ms per round trip otherwise);
- `parse_jump("user@host:port")`: the bastion of `ssh.jump`.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection

from provision.errors import StepFailed


class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Unknown host → remember its key in our known_hosts file. A *changed* key never reaches this policy:
    paramiko raises BadHostKeyException first (strict afterwards)."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = f"{self.name} {key.get_name()} {key.get_base64()}\n"
        existing = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        if line not in existing.splitlines(keepends=True):  # e.g. a bastion that is also the target
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)


def known_hosts_line(path: Path, name: str) -> int | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if fields and name in fields[0].split(","):
            return number
    return None


def prepare_client(conn: Connection, known_hosts: Path, name: str) -> None:
    client = conn.client
    keys = client.get_host_keys()
    if known_hosts.exists():
        try:
            keys.load(str(known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            raise StepFailed(f"cannot read known_hosts file {known_hosts}: {exc}") from None
    client.set_missing_host_key_policy(TrustOnFirstUse(known_hosts, name))


def nodelay(transport: paramiko.Transport | None) -> None:
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def parse_jump(jump: str) -> tuple[str | None, str, int]:
    user, _, hostport = jump.rpartition("@")
    host, port = hostport, 22
    if hostport.count(":") == 1:
        host, p = hostport.split(":")
        port = int(p)
    return (user or None), host.strip("[]"), port


def connect_error(t: Any, exc: Exception, banner_timeout: float) -> StepFailed:
    """One readable line for a failed connection attempt to `t` (an SshTarget)."""
    where = f"ssh {t.label}"
    if isinstance(exc, paramiko.BadHostKeyException):
        line = known_hosts_line(t.known_hosts, t.known_hosts_name)
        at = f"{t.known_hosts}:{line}" if line else str(t.known_hosts)
        return StepFailed(
            f"{where}: the host key changed (remembered in {at}); if the host was rebuilt, clear it with "
            f"ssh-keygen -R '{t.known_hosts_name}' -f {t.known_hosts}")
    if isinstance(exc, paramiko.AuthenticationException):
        return StepFailed(f"{where}: authentication failed (key {t.key_file})")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return StepFailed(f"{where}: connection refused")
    if isinstance(exc, paramiko.SSHException) and ("banner" in str(exc).lower()
                                                   or "no existing session" in str(exc).lower()):
        return StepFailed(f"{where}: the SSH handshake did not complete within {banner_timeout:g}s "
                          "(no SSH banner: is sshd running there?)")
    if isinstance(exc, socket.timeout | TimeoutError):
        return StepFailed(f"{where}: timed out after {t.connect_timeout:g}s")
    if isinstance(exc, socket.gaierror):
        return StepFailed(f"{where}: unknown host ({exc.strerror})")
    if isinstance(exc, StepFailed):
        return exc
    return StepFailed(f"{where}: {type(exc).__name__}: {exc}".rstrip(": "))
