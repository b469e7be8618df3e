"""The read-and-run commands' host work: `status`, `logs`, `exec`. Each takes the Playbook and plain values,
reaches the host over its one SSH connection, and hands what it reads to the caller (rows, or chunks written
to the binary streams it is given); the CLI only parses options and prints.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from provision.deploy import AppStatus, find_container
from provision.deploy import status as app_status
from provision.errors import StepFailed
from provision.exec_tty import docker_exec_argv, run_with_tty
from provision.phases.host import remote_for
from provision.spec import Playbook
from provision.sshconn import command_line


def status_rows(pb: Playbook, host: Any = None) -> list[AppStatus]:
    """`host`: the HostInfo when the caller looked it up already (else the provider's lookup)."""
    with remote_for(pb, host) as remote:
        return app_status(pb, remote)


def log_chunks(pb: Playbook, app: str, *, lines: int, follow: bool) -> Iterator[bytes]:
    """The app's container log (its newest container, running or not): the last `lines` (0 = all), then,
    with `follow`, new output as it comes (until the container stops or the caller stops iterating)."""
    with remote_for(pb) as remote:
        api = remote.docker(timeout=None).api  # the first client of this run: no read timeout (quiet logs)
        cid = find_container(pb, remote, app, running=False)
        tail: Any = lines if lines > 0 else "all"
        if follow:
            yield from api.logs(cid, stream=True, follow=True, tail=tail)
        else:
            yield api.logs(cid, tail=tail)


def exec_in_app(pb: Playbook, app: str, argv: list[str], *, stdout: BinaryIO, stderr: BinaryIO,
                env: Mapping[str, str] | None = None) -> int:
    """Run `argv` in the app's running container (with `env` added to its environment), streaming its output;
    returns its exit code."""
    with remote_for(pb) as remote:
        remote.docker(timeout=None)  # the first client of this run: no read timeout (a quiet command)
        return exec_in_container(remote, find_container(pb, remote, app), argv, env=env, stdout=stdout,
                                 stderr=stderr)


def exec_in_container(remote: Any, cid: str, argv: list[str], *, stdout: BinaryIO, stderr: BinaryIO,
                      env: Mapping[str, str] | None = None) -> int:
    """`argv` in container `cid` on `remote`'s engine, its output streamed; its exit code (also swarm's exec).
    The caller made `remote`'s first SDK client with timeout=None: a quiet command must not time out."""
    api = remote.docker(timeout=None).api
    exec_id = api.exec_create(cid, argv, stdout=True, stderr=True,
                              environment=[f"{k}={v}" for k, v in (env or {}).items()] or None)["Id"]
    for out, err in api.exec_start(exec_id, stream=True, demux=True):
        for stream, data in ((stdout, out), (stderr, err)):
            if data:
                stream.write(data)
                stream.flush()
    return int(api.exec_inspect(exec_id).get("ExitCode") or 0)


def exec_tty_in_app(pb: Playbook, app: str, argv: list[str], *, stdin_fd: int | None, stdout: BinaryIO,
                    env: Mapping[str, str] | None = None) -> int:
    """`exec -t`: `argv` in the app's running container behind a terminal (`docker exec -i -t` on a pty
    channel of the host's SSH connection), the local terminal's keys forwarded; returns its exit code."""
    with remote_for(pb) as remote:
        return exec_tty_in_container(remote, find_container(pb, remote, app), argv, app=app, stdin_fd=stdin_fd,
                                     stdout=stdout, env=env)


def exec_tty_in_container(remote: Any, cid: str, argv: list[str], *, app: str, stdin_fd: int | None,
                          stdout: BinaryIO, env: Mapping[str, str] | None = None) -> int:
    line = command_line(docker_exec_argv(cid, argv, env or {}, tty=True), sudo=False, user=remote.user)
    code = run_with_tty(remote.open_channel, line, stdin_fd=stdin_fd, out=stdout)
    if code < 0:  # the channel closed without an exit status
        raise StepFailed(f"exec -t in app {app}: the session ended without an exit status (connection lost?)")
    return code
