"""The SSH channel budget (provision/channels.py) and Remote.open_channel, with a fake paramiko Transport that
counts open session channels and refuses past its own MaxSessions, as sshd does."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import paramiko
import pytest

from provision.channels import ChannelBudget, ChannelLease, ConnectionLost, is_connection_loss, ordinal
from provision.errors import StepFailed
from provision.remote import Remote, SshTarget

pytestmark = pytest.mark.unit

JOIN = 20.0  # seconds: the bound of every join below (a deadlock fails the test instead of hanging it)


class FakeTransport:
    """paramiko.Transport as Remote uses it: open_session (refused past `max_sessions`, like sshd) and
    is_active. It records the most channels ever open at once."""

    def __init__(self, max_sessions: int = 10) -> None:
        self.max_sessions = max_sessions
        self.open = 0
        self.peak = 0
        self.refusals = 0
        self.active = True
        self.commands: list[str] = []
        self._lock = threading.Lock()

    def is_active(self) -> bool:
        return self.active

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        with self._lock:
            if not self.active:
                raise paramiko.SSHException("SSH session not active")
            if self.open >= self.max_sessions:
                self.refusals += 1
                raise paramiko.ChannelException(2, "Connect failed")
            self.open += 1
            self.peak = max(self.peak, self.open)
        return FakeChannel(self)

    def closed_one(self) -> None:
        with self._lock:
            self.open -= 1


class FakeChannel:
    """A session channel: `exec_command` of anything but dial-stdio exits 0 with no output; dial-stdio is
    backed by a socketpair whose other end answers every HTTP request with `{"ok": true}` (keep-alive)."""

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.closed = False
        self._sock: socket.socket | None = None

    # the command channel
    def settimeout(self, timeout: float | None) -> None:
        if self._sock is not None:
            self._sock.settimeout(timeout)

    def exec_command(self, line: str) -> None:
        self.transport.commands.append(line)
        if line == "docker system dial-stdio":
            mine, theirs = socket.socketpair()
            self._sock = mine
            threading.Thread(target=_http_engine, args=(theirs,), daemon=True).start()

    def shutdown_write(self) -> None:
        pass

    def recv(self, n: int) -> bytes:
        return self._sock.recv(n) if self._sock is not None else b""

    def recv_stderr(self, n: int) -> bytes:
        return b""

    def exit_status_ready(self) -> bool:
        return True

    def recv_exit_status(self) -> int:
        return 0

    # what urllib3 / http.client need of a socket
    def sendall(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(data)

    def makefile(self, mode: str) -> object:
        assert self._sock is not None
        return self._sock.makefile(mode)

    def fileno(self) -> int:
        assert self._sock is not None
        return self._sock.fileno()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._sock is not None:
            self._sock.close()
        self.transport.closed_one()


def _http_engine(sock: socket.socket) -> None:
    body = json.dumps({"ok": True}).encode()
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.43\r\n"
             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    buf = b""
    with sock:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                _, buf = buf.split(b"\r\n\r\n", 1)
                try:
                    sock.sendall(reply)
                except OSError:
                    return


class FakeConnection:
    """The bit of fabric.Connection Remote reads once connected."""

    def __init__(self, transport: FakeTransport) -> None:
        self.is_connected = True
        self.client = self
        self._transport = transport

    def get_transport(self) -> FakeTransport:
        return self._transport

    def close(self) -> None:
        self.is_connected = False


def remote_on(transport: FakeTransport, max_sessions: int = 8) -> Remote:
    remote = Remote(SshTarget("203.0.113.9", user="root", known_hosts=Path("/nonexistent/known_hosts"),
                              max_sessions=max_sessions))
    remote.conn = FakeConnection(transport)  # type: ignore[assignment]
    remote.connections_opened = 1
    return remote


def run_threads(*targets) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(fn):
        def go() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
        return go

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not any(t.is_alive() for t in threads), "deadlock: a thread never finished"
    return errors


# --- the budget itself ----------------------------------------------------------------------------------------


def test_acquire_waits_for_a_release_and_a_slot_is_released_once() -> None:
    budget = ChannelBudget(2)
    a, b = budget.acquire(), budget.acquire()
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(budget.acquire(JOIN)), daemon=True)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and got == []  # both slots taken: it waits
    a.release()
    waiter.join(JOIN)
    assert len(got) == 1 and budget.in_use == 2
    a.release()  # a second release of the same slot frees nothing
    assert budget.in_use == 2
    b.release()
    got[0].release()  # type: ignore[attr-defined]
    assert budget.in_use == 0 and budget.peak == 2


def test_a_waiter_gives_up_with_a_clear_error_after_its_bound() -> None:
    budget = ChannelBudget(1, name="ssh root@h:22")
    budget.acquire()
    with pytest.raises(StepFailed, match=r"ssh root@h:22: no free SSH channel for `docker load` within 0.2s"):
        budget.acquire(0.2, "`docker load`")


def test_idle_holders_are_asked_to_give_back_before_anyone_waits() -> None:
    budget = ChannelBudget(1)
    idle = [budget.acquire()]
    calls: list[int] = []

    def reclaim() -> int:
        calls.append(len(idle))
        while idle:
            idle.pop().release()
            return 1
        return 0

    budget.add_reclaimer(reclaim)
    slot = budget.acquire(JOIN)
    assert calls == [1] and budget.in_use == 1 and not slot.released
    budget.remove_reclaimer(reclaim)
    slot.release()
    assert budget.in_use == 0


def test_a_new_connection_forgets_the_old_slots() -> None:
    budget = ChannelBudget(2)
    old = budget.acquire()
    budget.reset()
    new = budget.acquire()
    old.release()  # late release of a channel of the dead connection
    assert budget.in_use == 1
    new.release()
    assert budget.in_use == 0


def test_a_refusal_lowers_the_limit_and_is_told_once() -> None:
    budget = ChannelBudget(8, name="ssh root@h:22")
    assert budget.refused(5) == "ssh root@h:22: the server refused a 6th session; using at most 5 at once"
    assert budget.limit == 5
    assert budget.refused(3) is None and budget.limit == 3  # lowered again, silently
    assert budget.refused(7) is None and budget.limit == 3  # never raised
    assert budget.refused(0) is None and budget.limit == 1  # at least one
    assert [ordinal(n) for n in (1, 2, 3, 4, 9, 11, 12, 13, 21, 22)] == [
        "1st", "2nd", "3rd", "4th", "9th", "11th", "12th", "13th", "21st", "22nd"]


def test_a_lease_closes_its_channel_and_releases_its_slot_once() -> None:
    transport = FakeTransport()
    budget = ChannelBudget(3)
    lease = ChannelLease(transport.open_session(), budget.acquire())
    assert budget.open == 0  # reserved, not yet open: a refusal now would not count it
    lease.slot.opened()
    with lease:
        assert transport.open == 1 and budget.in_use == 1 and budget.open == 1
    lease.close()
    assert transport.open == 0 and budget.in_use == 0 and budget.open == 0 and lease.closed


def test_connection_loss_is_told_apart_from_an_answer() -> None:
    import requests

    assert is_connection_loss(ConnectionLost("x"))
    assert is_connection_loss(requests.exceptions.ConnectionError("reset"))
    assert is_connection_loss(paramiko.SSHException("SSH session not active"))
    assert is_connection_loss(EOFError())
    assert not is_connection_loss(StepFailed("`false` exited 1"))
    assert not is_connection_loss(ValueError("bad"))


# --- Remote.open_channel ---------------------------------------------------------------------------------------


def test_never_more_channels_than_the_budget_and_every_run_completes() -> None:
    transport = FakeTransport(max_sessions=10)
    remote = remote_on(transport, max_sessions=3)
    errors = run_threads(*[lambda: remote.run(["true"]) for _ in range(12)])
    assert errors == []
    assert transport.commands.count("true") == 12
    assert transport.peak <= 3 and remote.budget.peak <= 3
    assert transport.open == 0 and remote.budget.in_use == 0


def test_a_refused_channel_lowers_the_budget_waits_and_retries() -> None:
    transport = FakeTransport(max_sessions=3)
    remote = remote_on(transport, max_sessions=8)
    warnings: list[str] = []
    remote.warn = warnings.append
    held = [remote.open_channel() for _ in range(3)]
    result: list[object] = []
    fourth = threading.Thread(target=lambda: result.append(remote.run(["echo", "4th"])), daemon=True)
    fourth.start()
    fourth.join(0.5)
    assert fourth.is_alive()  # refused, then waiting within the lowered budget
    assert transport.refusals == 1 and remote.budget.limit == 3
    held[0].close()
    fourth.join(JOIN)
    assert len(result) == 1 and transport.commands[-1] == "echo 4th"
    assert warnings == ["ssh root@203.0.113.9:22: the server refused a 4th session; using at most 3 at once"]
    for lease in held:
        lease.close()
    assert transport.open == 0 and remote.budget.in_use == 0


class RacyTransport(FakeTransport):
    """paramiko keeps ONE saved exception per Transport: when several threads are refused at once, all but one
    get a bare SSHException("Unable to open channel.") instead of the ChannelException, transport still up."""

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        try:
            return super().open_session(timeout)
        except paramiko.ChannelException:
            raise paramiko.SSHException("Unable to open channel.") from None


def test_a_refusal_paramiko_reports_without_its_channel_exception_is_still_a_refusal() -> None:
    transport = RacyTransport(max_sessions=2)
    remote = remote_on(transport, max_sessions=8)
    remote.warn = lambda _line: None
    held = [remote.open_channel() for _ in range(2)]
    third = threading.Thread(target=lambda: remote.run(["echo", "3rd"]), daemon=True)
    third.start()
    third.join(0.5)
    assert third.is_alive() and transport.refusals == 1 and remote.budget.limit == 2  # waiting, not failed
    held[0].close()
    third.join(JOIN)
    assert not third.is_alive() and transport.commands[-1] == "echo 3rd"
    held[1].close()
    transport.active = False  # the same message on a dead transport is a lost connection
    with pytest.raises(ConnectionLost):
        remote.run(["true"])


def test_a_dead_connection_is_a_connection_loss_and_leaks_no_slot() -> None:
    transport = FakeTransport()
    remote = remote_on(transport)
    transport.active = False
    with pytest.raises(ConnectionLost, match="connection was lost"):
        remote.run(["true"])
    assert remote.budget.in_use == 0


@pytest.mark.parametrize("budget", [1, 2])
def test_no_deadlock_at_a_tiny_budget_build_stream_health_wait_and_run(budget: int) -> None:
    """A build streaming on one channel, another app's health wait polling the Engine API through the Docker
    SDK (whose idle pooled connection must be reclaimed), and `run`s, all at once."""
    transport = FakeTransport(max_sessions=10)
    remote = remote_on(transport, max_sessions=budget)
    remote._api_version = "1.43"  # known: building the client asks the engine nothing
    client = remote.docker()

    def build_stream() -> None:
        with remote.open_channel("a build"):
            time.sleep(0.3)

    def health_wait() -> None:
        for _ in range(5):
            assert client.api.get(f"{client.api.base_url}/v1.43/containers/x/json").json() == {"ok": True}

    def runs() -> None:
        for _ in range(5):
            remote.run(["true"])

    errors = run_threads(build_stream, health_wait, runs, health_wait, runs)
    assert errors == []
    assert transport.peak <= budget and remote.budget.peak <= budget
    assert transport.commands.count("true") == 10 and "docker system dial-stdio" in transport.commands
    remote.close()
    assert transport.open == 0
