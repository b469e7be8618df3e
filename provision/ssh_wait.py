"""Wait until SSH really answers: a TCP connect *and* an `SSH-2.0-…` identification line (RFC 4253 §4.2).

A running instance is not a reachable one: sshd comes up tens of seconds after EC2 says "running", and a
security group or route can block it. This only waits for the banner; authentication and host-key policy
belong to `provision.remote`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from provision.errors import StepFailed

MAX_PRELUDE_LINES = 32  # servers may send other lines before the identification string
MAX_LINE = 255


class _Stream(Protocol):
    def recv(self, n: int) -> bytes: ...
    def settimeout(self, value: float | None) -> None: ...
    def close(self) -> None: ...


Dial = Callable[[str, int, float], _Stream]
Progress = Callable[[str], None]


def tcp_dial(host: str, port: int, timeout: float) -> _Stream:
    return socket.create_connection((host, port), timeout=timeout)


def jump_dial(transport: Any) -> Dial:
    """Dial through an open paramiko Transport (the bastion of `ssh.jump`): a direct-tcpip channel."""

    def dial(host: str, port: int, timeout: float) -> _Stream:
        try:
            return transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
        except Exception as exc:  # paramiko raises ChannelException/SSHException: both mean "not yet"
            raise OSError(f"via the jump host: {exc}") from None

    return dial


def read_banner(stream: _Stream, deadline: float) -> str:
    """The first line starting with `SSH-`, skipping (bounded) prelude lines."""
    buf = b""
    lines = 0
    while lines <= MAX_PRELUDE_LINES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no SSH identification line in time")
        stream.settimeout(remaining)
        chunk = stream.recv(512)
        if not chunk:
            raise ConnectionError("closed before sending an SSH identification line")
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.rstrip(b"\r").decode("ascii", "replace")
            if text.startswith("SSH-"):
                return text
            lines += 1
        if len(buf) > MAX_LINE:
            raise ConnectionError(f"not an SSH server (sent {buf[:40]!r}…)")
    raise ConnectionError("not an SSH server (no identification line)")


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return str(exc) if str(exc) and str(exc) != "timed out" else "connect timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or exc.__class__.__name__


def wait_for_ssh(host: str, port: int, *, timeout: float = 300.0, interval: float = 3.0,
                 connect_timeout: float = 5.0, what: str = "", progress: Progress | None = None,
                 dial: Dial = tcp_dial) -> str:
    """Return the server's identification line once `host:port` answers with SSH-2.0 (or SSH-1.99).

    Bounded in time (`timeout`) and in attempts; `progress` gets one line per failed attempt. The timeout
    error names the address and what it belongs to (`what`, e.g. "i-0abc (public IP)").
    """
    start = time.monotonic()
    deadline = start + timeout
    max_attempts = int(timeout / max(interval, 0.01)) + 2
    label = f"{host}:{port}" + (f" ({what})" if what else "")
    last = "no attempt made"
    for attempt in range(1, max_attempts + 1):
        attempt_deadline = min(deadline, time.monotonic() + connect_timeout)
        stream: _Stream | None = None
        try:
            stream = dial(host, port, max(0.1, attempt_deadline - time.monotonic()))
            banner = read_banner(stream, attempt_deadline)
            if banner.startswith(("SSH-2.0-", "SSH-1.99-")):
                return banner
            last = f"unsupported protocol {banner[:40]!r}"
        except (OSError, EOFError) as exc:
            last = _why(exc)
        finally:
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        elapsed = time.monotonic() - start
        if progress is not None:
            progress(f"waiting for SSH on {label}: {last} "
                     f"(attempt {attempt}, {elapsed:.0f}s of {timeout:.0f}s)")
        if time.monotonic() + interval >= deadline:
            break
        time.sleep(interval)
    raise StepFailed(f"timed out after {timeout:.0f}s waiting for SSH to answer on {label}: {last}; check "
                     "that host.ssh_from contains this machine's public address and that the host booted")
