"""One SSH connection per host (Fabric), with the Docker SDK riding on the same connection.

Contract (setup and deploy code against these names):

- `SshTarget(host, port, user, key_file, known_hosts, jump, connect_timeout, max_sessions)`;
  `SshTarget.from_playbook(playbook, address)` takes `ssh.*` from the playbook (`ssh.host` overrides
  `address`); `SshTarget.from_host(playbook, host_info)` takes address/port/user from a provider's HostInfo.
- `Remote(target)`: one `fabric.Connection`, opened lazily (or with `open()`), usable as a context manager.
  - `run(argv, *, sudo=False, stdin=None, check=True, timeout=None) -> RunResult(exit_code, stdout, stderr)`:
    argv is quoted once here (`shlex.join`); `sudo=True` prefixes `sudo -n --` unless the user is root.
    A non-zero exit with `check=True` raises `StepFailed` carrying the stderr tail. stdin (bytes) is never
    shown.
  - `run_script(script, *, sudo=False, check=True, timeout=None)`: a POSIX sh script sent on stdin to `sh -s`
    (the batched fact-gathering command: one round trip).
  - `put_file(path, content, mode=0o644, owner=None, sudo=False)`: atomic (temp file in the same directory,
    then rename); SFTP (a channel per upload, closed after it) when no privilege is needed, otherwise
    streamed on stdin to
    `sudo sh -c 'cat > tmp; chmod; mv'`.
    The content never appears in argv.
  - `open_channel(what) -> ChannelLease`: THE place session channels are opened. It takes a slot of the
    connection's `ChannelBudget` first (`ssh.max_sessions`, default 8: below sshd's default MaxSessions 10),
    waiting while all are in use; a channel the server refuses lowers the budget to what was open then
    (warned once through `warn`) and is asked for again after a short pause. `run`, SFTP uploads,
    `engine_get`, the Docker SDK's connections and `docker load` all come through here.
  - `reconnect()`: a new SSH session (e.g. after the user joined the docker group); the Docker client is
    renewed. `recover(generation)`: the runner's reconnect after a lost connection, once for all the threads
    that saw it (`generation` is `connections_opened` when they started).
  - `docker() -> docker.DockerClient`: HTTP over `docker system dial-stdio` channels opened on this same
    paramiko Transport (no second SSH connection, no TCP listener on the host).
  - `engine_get(paths) -> list`: read-only Engine API GETs (decoded JSON, in order) over ONE dial-stdio
    channel with HTTP keep-alive and no Docker SDK (the facts fast path); it remembers the engine's API
    version, so a later `docker()` does not ask for it again.
  - `close()`.
- Host keys: decided by provision.hostkeys (`SshTarget.trust`): ssh.host_key pins, the environment's
  `known_hosts` plus read-only files (~/.ssh/known_hosts), trust on first use unless strict; an unknown (strict),
  changed or unpinned key raises `StepFailed` naming the host (target or jump host) whose key it is.
- TCP_NODELAY is set on the socket (paramiko leaves Nagle on: ~45 ms per round trip otherwise).
- Connection errors (auth failure, refused, timeout, unknown host) become `StepFailed` with one readable line;
  a connection lost mid-operation is `ConnectionLost` (a StepFailed the runner retries once after recover()).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import paramiko
from fabric import Config, Connection

from provision.channels import (
    DEFAULT_WAIT,
    ChannelBudget,
    ChannelLease,
    ConnectionLost,
    drain,
    feed,
)
from provision.errors import StepFailed
from provision.hostkeys import known_hosts_name, prepare_client
from provision.sshconn import RunResult, SshTarget, command_line, connect_error, nodelay, parse_jump, tail

if TYPE_CHECKING:
    import docker

REFUSALS = 8  # channel refusals in a row before giving up (each lowers the budget or waits a little longer)
BACKOFF = 0.2  # seconds after a refused channel, times the attempt number

_log = logging.getLogger("dockyard")

__all__ = ["Remote", "RunResult", "SshTarget", "command_line", "tail"]  # the targets and results live in sshconn


# --- the connection ----------------------------------------------------------------------------------------


class Remote:
    """One SSH connection to one host; see the module docstring for the contract."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.conn: Connection | None = None
        self._gateway: Connection | None = None
        self._docker: docker.DockerClient | None = None
        self.budget = ChannelBudget(target.max_sessions, name=f"ssh {target.label}")
        self.channel_wait = DEFAULT_WAIT  # how long a channel request waits for a free slot
        self.warn: Callable[[str], None] = _log.warning  # the runner points it at the reporter
        self._api_version: str | None = None  # the engine's, from any answer engine_get got (saves a round trip)
        self._lock = threading.RLock()
        self.connections_opened = 0  # how many SSH sessions this Remote made (1 + reconnects)

    # lifecycle
    def __enter__(self) -> Remote:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def user(self) -> str:
        return self.target.user

    @property
    def banner_timeout(self) -> float:
        return max(2.0, 1.5 * self.target.connect_timeout)

    @property
    def transport(self) -> paramiko.Transport:
        conn = self.conn
        if conn is None or not conn.is_connected:  # no lock once connected: channel openers never queue here
            self.open()
            conn = self.conn
        assert conn is not None
        transport = conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionLost(f"ssh {self.target.label}: the connection was lost")
        return transport

    def _connection(self, host: str, port: int, user: str | None, gateway: Connection | None) -> Connection:
        t = self.target
        kwargs: dict[str, Any] = {"banner_timeout": self.banner_timeout,
                                  "auth_timeout": max(t.connect_timeout, 15.0)}
        if t.key_file is not None and t.key_file.exists():
            kwargs.update(key_filename=str(t.key_file), look_for_keys=False, allow_agent=False)
        config = Config(overrides={"load_ssh_configs": False})
        conn = Connection(host, user=user or t.user, port=port,
                          connect_timeout=max(1, round(t.connect_timeout)), connect_kwargs=kwargs,
                          gateway=gateway if gateway is not None else False,
                          config=config)
        jump = gateway is None and bool(t.jump)  # the bastion's connection, not the target's
        label = f"ssh jump host {user or t.user}@{host}:{port}" if jump else f"ssh {t.label}"
        prepare_client(conn, label=label, name=known_hosts_name(host, port), known_hosts=t.known_hosts,
                       trust=t.trust.for_jump() if jump else t.trust)
        return conn

    def open(self) -> Remote:
        with self._lock:
            if self.conn is not None and self.conn.is_connected:
                return self
            t = self.target
            if t.key_file is not None and not t.key_file.exists() and not os.environ.get("SSH_AUTH_SOCK"):
                raise StepFailed(f"ssh {t.label}: key file {t.key_file} does not exist (and no ssh-agent)")
            gateway = None
            if t.jump:
                juser, jhost, jport = parse_jump(t.jump)
                gateway = self._connection(jhost, jport, juser, None)
                self._gateway = gateway
            conn = self._connection(t.host, t.port, None, gateway)
            try:
                conn.open()
            except Exception as exc:
                # Fabric's close() does nothing for a connection that never finished opening, yet paramiko's
                # transport (after a refused host key, say) still holds the socket: sshd counts it against
                # MaxStartups until its LoginGraceTime. Close the clients themselves.
                for half in (conn, gateway):
                    if half is not None:
                        with contextlib.suppress(Exception):
                            half.client.close()
                self._gateway = None
                raise connect_error(self.target, exc, self.banner_timeout) from None
            nodelay(conn.client.get_transport())
            if gateway is not None:
                nodelay(gateway.client.get_transport())
            self.budget.reset()
            self.conn = conn
            self.connections_opened += 1
            return self

    def close(self) -> None:
        with self._lock:
            if self._docker is not None:
                with contextlib.suppress(Exception):
                    self._docker.close()
                self._docker = None
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    self.conn.close()
                self.conn = None
            if self._gateway is not None:
                with contextlib.suppress(Exception):
                    self._gateway.close()
                self._gateway = None
            self.budget.reset()

    def reconnect(self) -> Remote:
        """A fresh SSH session: group membership changes (docker group) apply to it."""
        with self._lock:
            self.close()
            return self.open()

    @property
    def generation(self) -> int:
        return self.connections_opened

    def recover(self, generation: int) -> bool:
        """After a lost connection: reconnect (bounded by the connect timeout), unless another thread already
        did since `generation`, or the connection is in fact still up. True when this call reconnected."""
        with self._lock:
            if self.connections_opened != generation or self._alive():
                return False
            self.reconnect()
            return True

    def _alive(self) -> bool:
        transport = self.conn.client.get_transport() if self.conn is not None else None
        return transport is not None and transport.is_active()

    # channels
    def open_channel(self, what: str = "a session") -> ChannelLease:
        """A new session channel on this connection, within the budget (see the module docstring)."""
        label = f"ssh {self.target.label}"
        for attempt in range(1, REFUSALS + 1):
            slot = self.budget.acquire(self.channel_wait, what)
            try:
                chan = self.transport.open_session(timeout=self.target.connect_timeout)
            except paramiko.SSHException as exc:
                if not self._refusal(exc):
                    slot.release()
                    raise ConnectionLost(f"{label}: cannot open a session: {exc}") from None
                warning = self.budget.refused()  # sshd's MaxSessions is below our budget
                slot.release()
                if warning:
                    self.warn(warning)
                time.sleep(BACKOFF * attempt)
                continue
            except BaseException:
                slot.release()
                raise
            slot.opened()
            return ChannelLease(chan, slot)
        raise ConnectionLost(f"{label}: the server refused a session {REFUSALS} times "
                             f"(with {self.budget.limit} open at most)")

    def _refusal(self, exc: paramiko.SSHException) -> bool:
        """The server said no to one channel, the connection itself is fine. paramiko raises ChannelException
        for that, except when several threads are refused at once: it keeps one saved exception per
        Transport, so the other threads get a bare "Unable to open channel." while the transport stays up."""
        if isinstance(exc, paramiko.ChannelException):
            return True
        return "Unable to open channel" in str(exc) and self._alive()

    # commands
    def run(self, argv: Sequence[str], *, sudo: bool = False, stdin: bytes | None = None, check: bool = True,
            timeout: float | None = None) -> RunResult:
        if isinstance(argv, str):
            raise TypeError("Remote.run takes an argv sequence, not a shell string")
        line = command_line(argv, sudo=sudo, user=self.user)
        return self._exec(line, stdin=stdin, check=check, timeout=timeout, shown=shlex.join(list(argv)))

    def run_script(self, script: str, *, sudo: bool = False, check: bool = True,
                   timeout: float | None = None) -> RunResult:
        line = command_line(["sh", "-s"], sudo=sudo, user=self.user)
        return self._exec(line, stdin=script.encode(), check=check, timeout=timeout, shown="sh -s (script)")

    def _exec(self, line: str, *, stdin: bytes | None, check: bool, timeout: float | None,
              shown: str) -> RunResult:
        lease = self.open_channel(f"`{_short(shown, 60)}`")
        chan = lease.channel
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            chan.settimeout(timeout)
            chan.exec_command(line)
            readers = [threading.Thread(target=drain, args=(chan.recv_stderr, err, True), daemon=True)]
            if stdin is not None:
                readers.append(threading.Thread(target=feed, args=(chan, stdin), daemon=True))
            else:
                chan.shutdown_write()
            for t in readers:
                t.start()
            drain(chan.recv, out)
            for t in readers:
                t.join(None if deadline is None else max(0.1, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() > deadline and not chan.exit_status_ready():
                raise TimeoutError
            code = chan.recv_exit_status()
        except TimeoutError:
            raise StepFailed(f"`{_short(shown)}` timed out after {timeout:g}s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectionLost(f"ssh {self.target.label}: connection lost during `{_short(shown)}`: {exc}"
                                 ) from None
        finally:
            lease.close()
        if code == -1 and not self._alive():  # the channel closed without an exit status: the connection died
            raise ConnectionLost(f"ssh {self.target.label}: connection lost during `{_short(shown)}`")
        result = RunResult(code, b"".join(out).decode("utf-8", "replace"),
                           b"".join(err).decode("utf-8", "replace"))
        if check and code != 0:
            detail = tail(result.stderr) or tail(result.stdout)
            raise StepFailed(f"`{_short(shown)}` exited {code}" + (f": {detail}" if detail else ""))
        return result

    # files
    def put_file(self, path: str, content: bytes, mode: int = 0o644, owner: str | None = None,
                 sudo: bool = False) -> None:
        """Write `content` to `path` atomically with `mode` (and `owner`, e.g. "root" or "root:docker")."""
        target = PurePosixPath(path)
        tmp = str(target.parent / f".{target.name}.dyk-{uuid.uuid4().hex[:12]}")
        privileged = (sudo or owner is not None) and self.user != "root"
        if privileged:
            script = ('set -e; umask 077; trap \'rm -f "$1"\' EXIT; cat > "$1"; chmod "$3" "$1"; '
                      'if [ -n "$4" ]; then chown "$4" "$1"; fi; mv -f "$1" "$2"; trap - EXIT')
            try:
                self.run(["sh", "-c", script, "sh", tmp, str(target), f"{mode:o}", owner or ""], sudo=True,
                         stdin=content)
            except StepFailed as exc:
                detail = str(exc).split(": ", 1)[-1] if "exited" in str(exc) else str(exc)
                raise StepFailed(f"upload {path} to {self.target.label} failed: {detail}") from None
            return
        # a channel per upload, closed before anything else runs: an idle SFTP session would hold a slot of
        # the budget forever, and a `run` inside it would need a second one (a deadlock at max_sessions 1)
        with self.open_channel("SFTP") as lease:
            try:
                lease.channel.invoke_subsystem("sftp")
                sftp = paramiko.SFTPClient(lease.channel)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise ConnectionLost(f"ssh {self.target.label}: cannot start SFTP: {exc}") from None
            try:
                with sftp.open(tmp, "wb") as fh:
                    fh.chmod(mode)  # before any byte is written (secrets are 0600 from the start)
                    fh.set_pipelined(True)
                    fh.write(content)
                if owner is None:
                    sftp.posix_rename(tmp, str(target))
            except OSError as exc:
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
                raise StepFailed(f"upload {path} to {self.target.label} failed: {exc}") from None
            finally:
                sftp.close()
        if owner is not None:
            r = self.run(["sh", "-c", 'chown "$1" "$2" && mv -f "$2" "$3" || { rm -f "$2"; exit 1; }', "sh",
                          owner, tmp, str(target)], check=False)
            if not r.ok:
                raise StepFailed(f"upload {path} to {self.target.label} failed: {tail(r.stderr, 300)}")

    # docker
    def engine_get(self, paths: Sequence[str], *, timeout: float = 60) -> list[Any]:
        """GET each Engine API path over ONE `docker system dial-stdio` channel; see provision.engine_api."""
        # deferred: requests, urllib3 load after the first SSH byte, not before it (bench/first_byte.py)
        from provision.engine_api import read_engine

        docs, version = read_engine(self.open_channel, self.target, paths, timeout=timeout)
        self._api_version = version or self._api_version
        return docs

    def docker(self, *, timeout: float = 120) -> docker.DockerClient:
        """A Docker SDK client whose HTTP requests ride `docker system dial-stdio` on this SSH connection."""
        if self._docker is not None:
            return self._docker
        if self._api_version is None:  # one budgeted read (an explicit version makes the SDK ask nothing)
            self.engine_get(["/version"], timeout=timeout)
        with self._lock:
            if self._docker is None:
                # deferred: requests, urllib3 (and docker) load only when an SDK client is needed
                from provision.engine_api import docker_client

                self._docker = docker_client(self.open_channel, self.budget, timeout, self._api_version or "1.41")
            return self._docker


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
