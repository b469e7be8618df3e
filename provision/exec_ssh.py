"""The SSH executor: carries out `Argv`, `Upload`, `Reconnect` and `Wait("engine.answers")` on one Remote.

It decides nothing: the plan said what to run. A `SecretFile` upload is resolved here, from the secret source
the context holds (`env_file_for(names) -> bytes`), so secret values never travel inside a plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from provision.commands import engine as cmd
from provision.errors import StepFailed
from provision.ops import Argv, Op, Reconnect, SecretFile, Upload, Wait

ENGINE_POLL = 0.5


class SshExecutor:
    handles = (Argv, Upload, Reconnect, Wait)

    def __init__(self, remote: Any, *, secret_file: Callable[[SecretFile], bytes] | None = None) -> None:
        self.remote = remote  # provision.remote.Remote (or anything with its run/put_file/reconnect)
        self.secret_file = secret_file

    def execute(self, op: Op) -> Any:
        if isinstance(op, Argv):
            return self.remote.run(op.argv, sudo=op.sudo, stdin=op.stdin)
        if isinstance(op, Upload):
            content = op.content
            if isinstance(content, SecretFile):
                if self.secret_file is None:
                    raise StepFailed(f"upload {op.path}: no secret source to read {', '.join(content.names)}")
                content = self.secret_file(content)
            return self.remote.put_file(op.path, content, mode=op.mode, owner=op.owner, sudo=op.sudo)
        if isinstance(op, Reconnect):
            return self.remote.reconnect()
        if isinstance(op, Wait) and op.probe == "engine.answers":
            return wait_for_engine(self.remote, op.timeout)
        raise TypeError(f"the SSH executor does not run {type(op).__name__} ops")


def wait_for_engine(remote: Any, timeout: float) -> None:
    """`docker version` as root until the server answers; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        r = remote.run(cmd.docker_server_version(), sudo=True, check=False, timeout=15)
        if r.exit_code == 0 and r.stdout.strip():
            return
        last = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        if time.monotonic() > deadline:
            raise StepFailed(f"the Docker engine did not answer within {timeout:g}s ({last[0]}); see "
                             "journalctl -u docker or /var/log/docker.log on the host")
        time.sleep(ENGINE_POLL)


def execute(op: Op, ctx: Any) -> Any:
    """The runner's dispatch: a context that knows several backends exposes `execute(op)` (deploy's, the AWS
    one); a bare Remote (setup) is run by the SSH executor."""
    own = getattr(ctx, "execute", None)
    if own is not None:
        return own(op)
    return SshExecutor(ctx).execute(op)
