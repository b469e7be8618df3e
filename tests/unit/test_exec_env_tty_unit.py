"""`exec`'s `--env KEY=VALUE` words, the `docker exec` argv of `exec -t`, and the local terminal's mode."""

from __future__ import annotations

import os
import shlex
import termios

import pytest

from provision.cli.deploy import split_env_words
from provision.errors import InputError
from provision.exec_tty import docker_exec_argv, parse_env, raw_terminal
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
