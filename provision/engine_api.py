"""The Docker Engine API over a host's existing SSH connection: `docker system dial-stdio` channels opened on
the Remote's paramiko Transport (no second SSH connection, no TCP listener on the host).

- `read_engine(transport, target, paths)`: read-only GETs over ONE channel with HTTP keep-alive and no Docker
  SDK import: the facts fast path of a no-op deploy.
- `docker_client(transport, timeout, api_version)`: a docker SDK client for builds and container changes,
  reusing the engine's API version when a read already learnt it (no extra round trip).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import paramiko

from provision.errors import StepFailed
from provision.remote import tail

if TYPE_CHECKING:
    import docker

    from provision.remote import SshTarget


class _ChannelSock:
    """What http.client.HTTPResponse needs of a socket; the file is not closed with the response (keep-alive)."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan

    def makefile(self, mode: str) -> Any:
        return self.chan.makefile(mode)


def read_engine(transport: paramiko.Transport, target: SshTarget, paths: Sequence[str], *, timeout: float = 60
                ) -> tuple[list[Any], str | None]:
    """GET each Engine API path (unversioned: the engine's own API version); returns the decoded JSON
    documents, in order, and the engine's API version from the answers' Api-Version header."""
    import http.client
    import json

    try:
        chan = transport.open_session(timeout=target.connect_timeout)
    except paramiko.SSHException as exc:
        raise StepFailed(f"ssh {target.label}: cannot open a session: {exc}") from None
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
        raise StepFailed(f"the Docker engine does not answer over SSH: {detail}") from None
    finally:
        chan.close()
    return docs, version


def docker_client(transport: Callable[[], paramiko.Transport], timeout: float,
                  api_version: str | None = None) -> docker.DockerClient:
    """docker-py's ssh:// adapter opens its own SSHClient; this one reuses our Transport instead.

    The API version is the engine's: `api_version` when already known (an answer's Api-Version header),
    otherwise asked for now (one round trip)."""
    import docker
    from docker.transport.sshconn import RecentlyUsedContainer, SSHHTTPAdapter

    class _Client:  # the bits of paramiko.SSHClient docker's SSHConnectionPool uses
        def get_transport(self) -> paramiko.Transport:
            return transport()  # the Remote's current transport

    class _Adapter(SSHHTTPAdapter):
        def __init__(self) -> None:
            self.ssh_client = _Client()  # type: ignore[assignment]
            self.ssh_host = "dockyard"
            self.ssh_params = {}
            self.timeout = timeout
            self.max_pool_size = 10
            self.pools = RecentlyUsedContainer(10, dispose_func=lambda p: p.close())
            super(SSHHTTPAdapter, self).__init__()

        def _connect(self) -> None:
            raise StepFailed("the SSH connection carrying the Docker API was closed")

        def close(self) -> None:
            self.pools.clear()  # the transport belongs to Remote

    api = docker.APIClient(base_url="unix:///dockyard-unused.sock", version="1.41", timeout=timeout)
    adapter = _Adapter()
    api.mount("http+docker://ssh", adapter)
    api._custom_adapter = adapter
    api.base_url = "http+docker://ssh"
    if api_version:
        api._version = api_version
    else:
        try:
            api._version = api._retrieve_server_version()
        except Exception as exc:
            raise StepFailed(f"the Docker engine does not answer over SSH: {tail(str(exc), 300)}") from None
    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = api
    return client
