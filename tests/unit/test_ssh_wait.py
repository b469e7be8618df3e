"""The SSH wait: a banner (not just an open port), bounded attempts, progress, a timeout naming its target."""

from __future__ import annotations

import pytest

from provision.errors import StepFailed
from provision.ssh_wait import read_banner, wait_for_ssh

pytestmark = pytest.mark.unit


class FakeStream:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.closed = False

    def recv(self, n: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def settimeout(self, value: float | None) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def scripted(*outcomes: object):
    """A dial function returning/raising the given outcomes in order (the last one repeats)."""
    seen: list[tuple[str, int]] = []
    queue = list(outcomes)

    def dial(host: str, port: int, timeout: float) -> FakeStream:
        seen.append((host, port))
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return FakeStream(list(outcome))  # type: ignore[arg-type]

    return dial, seen


def test_waits_through_refusals_and_silent_ports_until_a_banner() -> None:
    dial, seen = scripted(ConnectionRefusedError(), [b""], [b"SSH-2.0-OpenSSH_9.6\r\n"])
    lines: list[str] = []
    banner = wait_for_ssh("127.0.0.1", 2222, timeout=30, interval=0, progress=lines.append, dial=dial)
    assert banner == "SSH-2.0-OpenSSH_9.6"
    assert seen == [("127.0.0.1", 2222)] * 3
    assert len(lines) == 2 and "connection refused" in lines[0] and "closed before" in lines[1]


def test_banner_may_follow_prelude_lines_and_arrive_in_pieces() -> None:
    stream = FakeStream([b"hello there\r\nSSH-2.0-Open", b"SSH_9.2p1 Debian\r\n"])
    assert read_banner(stream, deadline=float("inf")) == "SSH-2.0-OpenSSH_9.2p1 Debian"


def test_something_else_on_the_port_is_not_ssh() -> None:
    dial, _ = scripted([b"HTTP/1.1 400 Bad Request\r\n" + b"x" * 600])
    with pytest.raises(StepFailed, match=r"not an SSH server"):
        wait_for_ssh("127.0.0.1", 80, timeout=0.05, interval=0.01, dial=dial)


def test_timeout_names_address_and_target_and_attempts_are_bounded() -> None:
    dial, seen = scripted(ConnectionRefusedError())
    with pytest.raises(StepFailed) as err:
        wait_for_ssh("127.0.0.1", 2222, timeout=0.2, interval=0.01, what="i-0abc public IP", dial=dial)
    message = str(err.value)
    assert "127.0.0.1:2222 (i-0abc public IP)" in message and "connection refused" in message
    assert "ssh_from" in message
    assert 1 <= len(seen) <= int(0.2 / 0.01) + 2


def test_ssh1_only_server_is_refused() -> None:
    dial, _ = scripted([b"SSH-1.5-ancient\r\n"])
    with pytest.raises(StepFailed, match="unsupported protocol"):
        wait_for_ssh("127.0.0.1", 22, timeout=0.05, interval=0.01, dial=dial)
