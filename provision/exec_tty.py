"""`exec -t`: a command in an app's container behind a terminal (`createsuperuser`, a shell, a REPL).

The Engine API's attach needs a hijacked HTTP connection our dial-stdio adapter does not offer, so a terminal
session is `docker exec -i -t …` run over the host's SSH connection on a session channel that asked for a pty:
the host's docker CLI then sees a terminal and gives the container one. This module holds the argv builder
(pure) and the bridge between the local terminal and that channel (effects: the local tty's mode, select,
the channel). Quoting happens once, at the SSH edge (`command_line`).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import termios
import threading
import tty
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO

ENV_NAME_RE = r"[A-Za-z_][A-Za-z0-9_]*"  # what a POSIX shell (and so `printenv`, `$NAME`) accepts as a name
CHUNK = 32768
POLL = 0.2  # seconds select waits before looking at the channel's state again
EOF_CHAR = b"\x04"  # a piped stdin's end, said to the remote terminal the way a user says it (Ctrl-D)


def parse_env(assignments: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` words (from `--env`) → a mapping; ValueError names the first bad one (without its value)."""
    out: dict[str, str] = {}
    for word in assignments:
        name, sep, value = word.partition("=")
        if not sep or not re.fullmatch(ENV_NAME_RE, name):
            shown = name if re.fullmatch(r"[\x21-\x7e]{1,64}", name) else "(a name with spaces or control characters)"
            raise ValueError(f"--env {shown}=…: want KEY=VALUE with KEY a variable name ({ENV_NAME_RE})"
                             if sep else f"--env {shown}: want KEY=VALUE")
        if "\x00" in value:
            raise ValueError(f"--env {name}: the value holds a NUL byte, which no command line can carry")
        out[name] = value
    return out


def docker_exec_argv(container_id: str, argv: Sequence[str], env: Mapping[str, str], *, tty: bool) -> list[str]:
    """`docker exec -i [-t] [--env K=V …] CONTAINER CMD …` (an argv: quoted once at the SSH edge)."""
    out = ["docker", "exec", "-i", *(["-t"] if tty else [])]
    for name, value in env.items():
        out += ["--env", f"{name}={value}"]
    return [*out, container_id, *argv]


def terminal_size(fd: int | None) -> tuple[int, int]:
    """(columns, lines) of the local terminal, or 80x24 when there is none."""
    for candidate in (fd, 1, 2):
        if candidate is None:
            continue
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(candidate)
            return size.columns, size.lines
    return 80, 24


@contextlib.contextmanager
def raw_terminal(fd: int | None) -> Iterator[bool]:
    """The local terminal in raw mode (keys go through as typed: Ctrl-C reaches the remote program), restored
    on the way out whatever happens. Yields whether `fd` is a terminal (nothing to do when it is not)."""
    if fd is None or not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def follow_resizes(chan: Any, fd: int | None) -> Iterator[None]:
    """Pass the local terminal's size changes (SIGWINCH) on to the remote pty (main thread only)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGWINCH"):
        yield
        return

    def resize(*_: object) -> None:
        with contextlib.suppress(Exception):
            chan.resize_pty(*terminal_size(fd))

    previous = signal.signal(signal.SIGWINCH, resize)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def bridge(chan: Any, stdin_fd: int | None, out: BinaryIO, *, stdin_is_tty: bool) -> int:
    """Copy the local stdin to the channel and the channel to `out` until the remote command ends; its exit
    status (-1 when the channel closed without one). A piped stdin's end is sent as Ctrl-D."""
    reading = stdin_fd is not None
    while True:
        ready, _, _ = select.select([chan, *([stdin_fd] if reading else [])], [], [], POLL)
        if chan.recv_ready():
            data = chan.recv(CHUNK)
            if data:
                out.write(data)
                out.flush()
        elif chan.exit_status_ready() or chan.eof_received or chan.closed:
            break
        if reading and stdin_fd in ready:  # read in the same turn as output: Ctrl-C gets through a flood
            data = os.read(stdin_fd, CHUNK)  # type: ignore[arg-type]
            with contextlib.suppress(OSError):  # the remote end closed meanwhile: the next turn sees it
                if data:
                    chan.sendall(data)
                else:
                    reading = False
                    if not stdin_is_tty:
                        chan.sendall(EOF_CHAR)
    while chan.recv_ready():  # what came with the end
        out.write(chan.recv(CHUNK))
    out.flush()
    return int(chan.recv_exit_status())


def run_with_tty(open_channel: Any, command_line: str, *, stdin_fd: int | None, out: BinaryIO) -> int:
    """`command_line` on a new session channel with a pty of the local terminal's size and type, the local
    terminal in raw mode meanwhile; returns the command's exit status."""
    with open_channel("exec -t") as lease:
        chan = lease.channel
        columns, lines = terminal_size(stdin_fd)
        chan.get_pty(term=os.environ.get("TERM") or "xterm", width=columns, height=lines)
        chan.exec_command(command_line)
        with raw_terminal(stdin_fd) as is_tty, follow_resizes(chan, stdin_fd):
            return bridge(chan, stdin_fd, out, stdin_is_tty=is_tty)
