"""`exec`'s `--env KEY=VALUE` words, the `docker exec` argv of `exec -t`, and the local terminal's mode."""

from __future__ import annotations

import io
import os
import shlex
import socket
import termios

import pytest

from provision.cli.deploy import split_env_words
from provision.errors import InputError
from provision.exec_tty import bridge, docker_exec_argv, parse_env, raw_terminal
from provision.sshconn import command_line

pytestmark = pytest.mark.unit


def test_env_words_split_into_the_environment_name_and_variables() -> None:
    assert split_env_words(["staging", "A=1", "B=x=y"]) == ("staging", ["A=1", "B=x=y"])
    assert split_env_words(["A=1"]) == (None, ["A=1"])
    assert split_env_words(None) == (None, [])
    with pytest.raises(InputError, match="one environment NAME, got 2"):
        split_env_words(["staging", "DEBUG"])


def test_parse_env_keeps_values_as_written() -> None:
    assert parse_env(["A=1", "B=x=y z", "_c9=", "A=2"]) == {"A": "2", "B": "x=y z", "_c9": ""}


@pytest.mark.parametrize("word", ["1A=x", "=x", "A-B=x", "A B=x", "Ä=x", "A\n=x"])
def test_parse_env_refuses_a_bad_name_without_echoing_the_value(word: str) -> None:
    with pytest.raises(ValueError, match="want KEY=VALUE") as err:
        parse_env([word.replace("=x", "=s3cr3t-value")])
    assert "s3cr3t" not in str(err.value)


def test_parse_env_refuses_a_nul_in_a_value() -> None:
    with pytest.raises(ValueError, match="NUL"):
        parse_env(["A=a\x00b"])


def test_docker_exec_argv_is_quoted_once_at_the_ssh_edge() -> None:
    argv = docker_exec_argv("c0ffee", ["python", "manage.py", "createsuperuser"], {"X": "a b;$(id)"}, tty=True)
    assert argv == ["docker", "exec", "-i", "-t", "--env", "X=a b;$(id)", "c0ffee", "python", "manage.py",
                    "createsuperuser"]
    line = command_line(argv, sudo=False, user="deploy")
    assert shlex.split(line) == argv  # the remote shell gets the words back exactly: nothing interpolated
    assert docker_exec_argv("c0ffee", ["true"], {}, tty=False) == ["docker", "exec", "-i", "c0ffee", "true"]


def test_raw_terminal_is_restored_after_an_error() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        with pytest.raises(RuntimeError), raw_terminal(slave) as is_tty:
            assert is_tty
            assert termios.tcgetattr(slave)[3] & termios.ECHO == 0  # raw: no echo, no line editing
            raise RuntimeError
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_raw_terminal_leaves_a_pipe_alone() -> None:
    read, write = os.pipe()
    try:
        with raw_terminal(read) as is_tty:
            assert not is_tty
        with raw_terminal(None) as is_tty:
            assert not is_tty
    finally:
        os.close(read)
        os.close(write)


class FakeChannel:
    """A session channel that prompts, answers the first line it is sent, then exits 7 (select-able through a
    socketpair, as paramiko's channel is through its pipe)."""

    def __init__(self) -> None:
        self._signal, self._wake = socket.socketpair()
        self._pending: list[bytes] = []
        self.sent = b""
        self.status: int | None = None
        self.eof_received = False
        self.closed = False
        self._push(b"Username: ")

    def _push(self, data: bytes) -> None:
        self._pending.append(data)
        self._wake.send(b".")

    def fileno(self) -> int:
        return self._signal.fileno()

    def recv_ready(self) -> bool:
        return bool(self._pending)

    def recv(self, n: int) -> bytes:
        self._signal.recv(1)
        return self._pending.pop(0)

    def sendall(self, data: bytes) -> None:
        self.sent += data
        if b"\n" in self.sent and self.status is None:
            self._push(b"got " + self.sent.split(b"\n")[0] + b"\r\n")
            self.status = 7

    def exit_status_ready(self) -> bool:
        return self.status is not None

    def recv_exit_status(self) -> int:
        return -1 if self.status is None else self.status

    def close(self) -> None:
        self._signal.close()
        self._wake.close()


def test_bridge_copies_both_ways_and_returns_the_exit_status() -> None:
    chan = FakeChannel()
    read, write = os.pipe()
    os.write(write, b"alice\n")
    os.close(write)  # a piped stdin: its end is sent as Ctrl-D
    out = io.BytesIO()
    try:
        assert bridge(chan, read, out, stdin_is_tty=False) == 7
    finally:
        os.close(read)
        chan.close()
    assert out.getvalue() == b"Username: got alice\r\n"
    assert chan.sent.startswith(b"alice\n")
