"""The Docker Engine API over a host's existing SSH connection: `docker system dial-stdio` channels opened with
`Remote.open_channel` (within the connection's channel budget; no second SSH connection, no TCP listener on
the host).

- `read_engine(open_channel, target, paths)`: read-only GETs over ONE channel with HTTP keep-alive and no
  Docker SDK import: the facts fast path of a no-op deploy.
- `docker_client(open_channel, budget, timeout, api_version)`: a docker SDK client (public API only:
  `docker.DockerClient(base_url=, version=)` makes no network call when given the version) with our own
  requests adapter mounted for its base URL. Each HTTP connection of that adapter is a dial-stdio channel;
  its pool keeps at most ONE idle (the others are closed when returned), and the budget may close that one
  too when someone waits for a channel, so an idle connection never starves a waiter.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import logging
import queue
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import paramiko
import requests.adapters
import urllib3
from urllib3.connection import HTTPConnection

from provision.channels import ChannelBudget, ChannelLease, ConnectionLost
from provision.errors import StepFailed
from provision.sshconn import tail

if TYPE_CHECKING:
    import docker

    from provision.sshconn import SshTarget

PLACEHOLDER = "dockyard-engine.invalid"  # the base URL's host: never resolved, our adapter answers for it
BASE_URL = f"http://{PLACEHOLDER}:2375"
OpenChannel = Callable[[str], ChannelLease]


class _ChannelSock:
    """What http.client.HTTPResponse needs of a socket; the file is not closed with the response (keep-alive)."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan

    def makefile(self, mode: str) -> Any:
        return self.chan.makefile(mode)


def read_engine(open_channel: OpenChannel, target: SshTarget, paths: Sequence[str], *, timeout: float = 60
                ) -> tuple[list[Any], str | None]:
    """GET each Engine API path (unversioned: the engine's own API version); returns the decoded JSON
    documents, in order, and the engine's API version from the answers' Api-Version header."""
    lease = open_channel("Engine API reads")
    chan = lease.channel
    docs: list[Any] = []
    version: str | None = None
    try:
        chan.settimeout(timeout)
        chan.exec_command("docker system dial-stdio")
        for path in paths:
            chan.sendall(f"GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: dockyard\r\n\r\n".encode())
            resp = http.client.HTTPResponse(_ChannelSock(chan), method="GET")  # type: ignore[arg-type]
            resp.begin()
            body = resp.read()
            if resp.status != 200:
                detail = body.decode("utf-8", "replace")
                with contextlib.suppress(ValueError, AttributeError):
                    detail = json.loads(detail).get("message", detail)
                raise StepFailed(f"the Docker engine answered {resp.status} to GET {path.split('?')[0]}: "
                                 f"{tail(str(detail), 300)}")
            docs.append(json.loads(body))
            version = resp.getheader("Api-Version") or version
    except StepFailed:
        raise
    except (http.client.HTTPException, paramiko.SSHException, OSError, EOFError, ValueError) as exc:
        err = b""
        with contextlib.suppress(Exception):
            if chan.recv_stderr_ready():
                err = chan.recv_stderr(4096)
        detail = tail(err.decode("utf-8", "replace"), 300) or f"{type(exc).__name__}: {exc}"
        transport = chan.get_transport()
        lost = ConnectionLost if transport is None or not transport.is_active() else StepFailed
        raise lost(f"the Docker engine does not answer over SSH: {detail}") from None
    finally:
        lease.close()
    return docs, version


class _ChannelIO(io.RawIOBase):
    """The raw reader under an HTTP response: what docker-py expects a response's socket to be when it reads
    a stream itself (exec, attach: `response.raw._fp.fp.raw`, then `recv`/`fileno`). Closing it leaves the
    channel open (keep-alive); the connection closes the channel."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.chan.recv(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def recv(self, n: int) -> bytes:
        return self.chan.recv(n)

    def fileno(self) -> int:
        return self.chan.fileno()


class _ChannelSocket:
    """A dial-stdio channel as the socket of an http.client connection."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_ChannelIO(self.chan))

    def __getattr__(self, name: str) -> Any:  # sendall, settimeout, gettimeout, fileno, close, recv …
        return getattr(self.chan, name)


class DialStdioConnection(HTTPConnection):
    """An HTTP connection whose socket is a `docker system dial-stdio` channel (what docker-py's own
    SSHConnection does, minus its SSH client). Closing it closes the channel and gives back its budget slot."""

    def __init__(self, *args: Any, open_channel: OpenChannel, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open_channel = open_channel
        self._lease: ChannelLease | None = None

    def connect(self) -> None:
        lease = self._open_channel("a Docker API connection")
        try:
            lease.channel.settimeout(self.timeout if isinstance(self.timeout, int | float) else None)
            lease.channel.exec_command("docker system dial-stdio")
        except Exception:
            lease.close()
            raise
        self._lease = lease
        self.sock = _ChannelSocket(lease.channel)  # type: ignore[assignment]

    def close(self) -> None:
        try:
            super().close()
        finally:
            lease, self._lease = self._lease, None
            if lease is not None:
                lease.close()


class DialStdioPool(urllib3.HTTPConnectionPool):
    ConnectionCls = DialStdioConnection

    def close_idle(self) -> int:
        """Close the pooled idle connections (the budget's reclaimer). The pool's queue holds idle connections
        or None placeholders; every taken item is put back as None."""
        idle = self.pool
        if idle is None:
            return 0
        taken = []
        with contextlib.suppress(queue.Empty):
            for _ in range(self.pool.maxsize):
                taken.append(idle.get_nowait())
        closed = 0
        for conn in taken:
            if conn is not None:
                conn.close()
                closed += 1
            with contextlib.suppress(queue.Full):  # a request handed a connection back meanwhile
                idle.put_nowait(None)
        return closed


class DialStdioAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter (public API) for the placeholder base URL: every connection is a dial-stdio channel
    opened by `open_channel`; at most one is kept idle."""

    def __init__(self, open_channel: OpenChannel, budget: ChannelBudget, timeout: float) -> None:
        super().__init__(pool_connections=1, pool_maxsize=1, max_retries=0)
        self._budget = budget
        self._dial = DialStdioPool(PLACEHOLDER, 2375, timeout=timeout, maxsize=1, block=False,
                                   open_channel=open_channel)
        budget.add_reclaimer(self._dial.close_idle)

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
                                        ) -> urllib3.HTTPConnectionPool:
        return self._dial

    def get_connection(self, url: Any, proxies: Any = None) -> urllib3.HTTPConnectionPool:  # requests < 2.32
        return self._dial

    def close(self) -> None:
        self._budget.remove_reclaimer(self._dial.close_idle)
        self._dial.close()
        super().close()


class _QuietFullPool(logging.Filter):
    """urllib3 logs a warning whenever a returned connection finds the pool full; for our pool that is the
    design (one idle connection at most), not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg.startswith("Connection pool is full") and PLACEHOLDER in map(str, record.args or ()))


logging.getLogger("urllib3.connectionpool").addFilter(_QuietFullPool())


def docker_client(open_channel: OpenChannel, budget: ChannelBudget, timeout: float, api_version: str
                  ) -> docker.DockerClient:
    """A docker SDK client whose requests ride dial-stdio channels of our SSH connection. `api_version` is the
    engine's (learnt by one budgeted read): given explicitly, the SDK asks the engine nothing here."""
    # deferred: docker loads only when this path runs
    import docker

    client = docker.DockerClient(base_url=f"tcp://{PLACEHOLDER}:2375", version=api_version, timeout=timeout)
    client.api.mount(BASE_URL, DialStdioAdapter(open_channel, budget, timeout))
    return client
