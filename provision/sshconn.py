"""How dockyard's one SSH connection per host is made, apart from the connection itself (provision.remote):

- `connect_error`: one readable line for a failed connection attempt (host keys themselves are decided by
  provision.hostkeys);
- `nodelay`: TCP_NODELAY on the socket (paramiko leaves Nagle on: ~45 ms per round trip otherwise);
- `parse_jump("user@host:port")`: the bastion of `ssh.jump`.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import paramiko

from provision.errors import StepFailed
from provision.hostkeys import describe


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
