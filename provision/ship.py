"""Ship images from the local engine to a host's engine without a registry: `docker save | docker load`.

The image is streamed: the local engine's `GET /images/{name}/get` chunks (Docker SDK `APIClient.get_image`)
are written into the stdin of `docker load` on the host, over the host's one SSH connection (a channel from
`Remote.open_channel`, within its budget; nothing is buffered whole, nothing is written to disk on either
side).

Only images the host lacks are shipped, and that is decided once, by the plan: `plan_ship` compares the image
id (the config digest, which save/load preserves) locally and on the host (deploy's `plan_ship_bases`), so a
second deploy ships nothing; `send` streams exactly the refs it is given and checks the result. This is how a local
sandbox's inner engine gets the base images the apps build FROM, and the first half of `build: local`
(build on this machine, ship the result).

    plan_ship(refs, local_ids, remote_ids) -> list[str]          # pure: which refs to send
    send(client, remote, refs, *, sudo=False, say=None, on_sent=None) -> list[Shipped]   # stream exactly refs
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import paramiko

from provision.channels import ConnectionLost
from provision.errors import StepFailed
from provision.sshconn import command_line

CHUNK = 1 << 20  # bytes per chunk read from the local engine
SEND = 1 << 16  # bytes per SSH write
TAIL = 600


@dataclass(frozen=True)
class Shipped:
    ref: str
    image_id: str
    size: int = 0  # bytes streamed (in one stream with the other refs shipped at the same time)


def plan_ship(refs: Iterable[str], local_ids: Mapping[str, str], remote_ids: Mapping[str, str | None]
              ) -> list[str]:
    """The refs whose image (by id) the host does not have under that name, in order, without repeats."""
    out: list[str] = []
    for ref in refs:
        if ref not in out and remote_ids.get(ref) != local_ids[ref]:
            out.append(ref)
    return out


def load_command(*, sudo: bool, user: str) -> str:
    return command_line(["docker", "load"], sudo=sudo, user=user)


def inspect_argv(refs: Iterable[str]) -> list[str]:
    """One round trip for every ref: prints `<ref> <id>` per image the host has (nothing for the others)."""
    script = 'for r in "$@"; do i=$(docker image inspect --format "{{.Id}}" "$r" 2>/dev/null) && ' \
             'printf "%s %s\\n" "$r" "$i"; done; exit 0'
    return ["sh", "-c", script, "sh", *refs]


def parse_inspect(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].startswith("sha256:"):
            out[parts[0]] = parts[1]
    return out


def from_images(dockerfile: str) -> list[str]:
    """The images a Dockerfile builds FROM, in order (build stages and `scratch` left out; line
    continuations joined; `${VAR}` references are not resolved, so such lines are skipped)."""
    text = re.sub(r"\\\r?\n", " ", dockerfile)
    stages: set[str] = set()
    out: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() != "FROM":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if not args:
            continue
        image = args[0]
        if len(args) >= 3 and args[1].upper() == "AS":
            stages.add(args[2].lower())
        if image.lower() in stages or image == "scratch" or "$" in image or image in out:
            continue
        out.append(image)
    return out


# --- effects --------------------------------------------------------------------------------------------


def local_ids(client: Any, refs: Iterable[str]) -> dict[str, str]:
    # deferred: docker, requests load only when this path runs
    import docker

    out = {}
    for ref in refs:
        try:
            out[ref] = client.images.get(ref).id
        except docker.errors.ImageNotFound:
            raise StepFailed(f"cannot ship {ref}: the local engine has no such image") from None
    return out


def remote_ids(remote: Any, refs: list[str], *, sudo: bool = False) -> dict[str, str]:
    if not refs:
        return {}
    return parse_inspect(remote.run(inspect_argv(refs), sudo=sudo).stdout)


def _chunks(client: Any, refs: list[str]) -> Iterator[bytes]:
    """One `docker save` stream of every ref (`GET /images/get?names=…`): layers the images share (their base)
    travel once. Public docker-py API only: `APIClient.get_image` for one ref; for several, a streamed GET
    through the APIClient's own requests session (`api.base_url`, `api.api_version`)."""
    api = client.api
    if len(refs) == 1:
        yield from api.get_image(refs[0], chunk_size=CHUNK)
        return
    response = api.get(f"{api.base_url}/v{api.api_version}/images/get", params={"names": refs}, stream=True)
    try:
        if response.status_code != 200:
            raise StepFailed(f"the local engine cannot save {', '.join(refs)}: "
                             f"{response.status_code} {tail_text(response.text)}")
        yield from response.iter_content(CHUNK)
    finally:
        response.close()


def tail_text(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TAIL else "…" + text[-TAIL:]


def stream_load(remote: Any, chunks: Iterable[bytes], *, sudo: bool = False, what: str = "image",
                on_sent: Callable[[int], None] | None = None) -> int:
    """Write `chunks` into `docker load` on the host (one budgeted channel); returns the number of bytes sent
    (also given to `on_sent` after each chunk, for progress)."""
    out: list[bytes] = []
    err: list[bytes] = []

    def drain(read: Callable[[int], bytes], sink: list[bytes]) -> None:
        with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
            while data := read(65536):
                sink.append(data)

    sent = 0
    with remote.open_channel("`docker load`") as lease:
        chan = lease.channel
        readers = [threading.Thread(target=drain, args=(chan.recv, out), daemon=True),
                   threading.Thread(target=drain, args=(chan.recv_stderr, err), daemon=True)]
        try:
            chan.exec_command(load_command(sudo=sudo, user=remote.user))
        except paramiko.SSHException as exc:
            raise ConnectionLost(f"ssh {remote.target.label}: cannot start `docker load`: {exc}") from None
        for t in readers:
            t.start()
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                for start in range(0, len(view), SEND):
                    chan.sendall(view[start:start + SEND])
                sent += len(chunk)
                if on_sent is not None:
                    on_sent(sent)
        except (OSError, paramiko.SSHException):
            pass  # `docker load` stopped reading: its exit code and stderr say why
        with contextlib.suppress(OSError, paramiko.SSHException):
            chan.shutdown_write()
        code = chan.recv_exit_status()
        for t in readers:
            t.join(30)
        transport = chan.get_transport()
        alive = transport is not None and transport.is_active()
    if code == -1 and not alive:
        raise ConnectionLost(f"ssh {remote.target.label}: connection lost during `docker load` of {what}")
    if code != 0:
        detail = b"".join(err).decode("utf-8", "replace").strip()[-TAIL:]
        raise StepFailed(f"`docker load` of {what} on {remote.target.label} exited {code}: {detail}")
    return sent


def send(client: Any, remote: Any, refs: Iterable[str], *, sudo: bool = False,
         say: Callable[[str], None] | None = None, on_sent: Callable[[int], None] | None = None) -> list[Shipped]:
    """Stream exactly `refs` (what the plan decided to ship: `plan_ship`, or an image just built locally) in one
    `docker save | docker load`, then check the host holds each with this machine's image id."""
    refs = list(dict.fromkeys(refs))
    if not refs:
        return []
    mine = local_ids(client, refs)
    if say is not None:
        say(f"shipping {', '.join(refs)} to {remote.target.label}")
    size = stream_load(remote, _chunks(client, refs), sudo=sudo, what=", ".join(refs), on_sent=on_sent)
    after = remote_ids(remote, refs, sudo=sudo)
    wrong = [ref for ref in refs if after.get(ref) != mine[ref]]
    if wrong:
        raise StepFailed(f"after `docker load`, the host's {', '.join(wrong)} still differ from this "
                         "machine's")
    return [Shipped(ref, mine[ref], size) for ref in refs]
