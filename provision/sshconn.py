"""How dockyard's one SSH connection per host is made, apart from the connection itself (provision.remote):

- `connect_error`: one readable line for a failed connection attempt (host keys themselves are decided by
  provision.hostkeys);
- `nodelay`: TCP_NODELAY on the socket (paramiko leaves Nagle on: ~45 ms per round trip otherwise);
- `parse_jump("user@host:port")`: the bastion of `ssh.jump`;
- `SshTarget`: where and how to connect (from the playbook's `ssh.*` or a provider's HostInfo);
- `RunResult`, `tail`, `command_line`: a remote command's result, its stderr tail, and the one place argv
  becomes a shell string.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from provision.channels import DEFAULT_MAX_SESSIONS
from provision.errors import StepFailed
from provision.hostkeys import HostKeyTrust, describe, known_hosts_name

if TYPE_CHECKING:
    from provision.spec import Playbook

STDERR_TAIL = 800  # characters of stderr carried by a failure message


def nodelay(transport: paramiko.Transport | None) -> None:
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def parse_jump(jump: str) -> tuple[str | None, str, int]:
    """`[user@]host[:port]` → (user or None, host, port); an IPv6 host is `[v6]:port`, `[v6]` or bare `v6`."""
    user, _, hostport = jump.rpartition("@")
    host, port = hostport, 22
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif hostport.count(":") == 1:
        host, p = hostport.split(":")
        port = int(p)
    return (user or None), host, port


def connect_error(t: Any, exc: Exception, banner_timeout: float) -> StepFailed:
    """One readable line for a failed connection attempt to `t` (an SshTarget)."""
    where = f"ssh {t.label}"
    if isinstance(exc, paramiko.BadHostKeyException):  # hostkeys.TrustPolicy decides first; a fallback
        return StepFailed(f"ssh {exc.hostname}: the host key changed (the server offers {describe(exc.key)})")
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


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    known_hosts: Path = Path("known_hosts")
    jump: str | None = None  # "user@host:port"
    connect_timeout: float = 10.0
    trust: HostKeyTrust = field(default_factory=HostKeyTrust)
    max_sessions: int = DEFAULT_MAX_SESSIONS  # session channels open at once on the connection

    @classmethod
    def from_playbook(cls, playbook: Playbook, address: str | None) -> SshTarget:
        host = playbook.ssh.host or address
        if not host:
            raise StepFailed("no address to connect to: the host has none yet and ssh.host is not set")
        return cls(host=host, port=playbook.ssh.port, user=playbook.ssh_user, key_file=playbook.key_file,
                   known_hosts=playbook.known_hosts_file, jump=playbook.ssh.jump,
                   connect_timeout=playbook.ssh.connect_timeout, trust=HostKeyTrust.from_playbook(playbook),
                   max_sessions=playbook.ssh.max_sessions)

    @classmethod
    def from_host(cls, playbook: Playbook, info: Any) -> SshTarget:
        """From a provider's HostInfo (`ssh_address`, `ssh_port`, `ssh_user`: ssh.* already applied; a
        provider that made its own key, like `local`, names it in `data["key_file"]`)."""
        target = cls.from_playbook(playbook, info.ssh_address)
        key = (getattr(info, "data", None) or {}).get("key_file")
        return replace(target, host=info.ssh_address or target.host, port=info.ssh_port or target.port,
                       user=info.ssh_user or target.user, key_file=Path(key) if key else target.key_file)

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How the host is written in known_hosts (OpenSSH's convention)."""
        return known_hosts_name(self.host, self.port)


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def tail(text: str, limit: int = STDERR_TAIL) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def command_line(argv: Sequence[str], *, sudo: bool, user: str) -> str:
    """The one place argv becomes a shell string."""
    line = shlex.join(list(argv))
    if sudo and user != "root":
        line = "sudo -n -- " + line
    return line
