"""Build contexts: `.dockerignore` matching, a content hash, and the tar stream sent to the engine.

The content hash covers exactly what decides the image: the Dockerfile text, every file of the context that
`.dockerignore` lets through (its path, type, permission bits and contents — not its mtime or owner), and the
build args. Two machines with the same checkout therefore compute the same hash, and the host is asked to
build only when no image carries it (`dockyard.build-hash` label, tag `<project>/<app>:<hash12>`).

`.dockerignore` follows docker's rules: see provision.dockerignore.

On top of `.dockerignore`, and whatever it says (a `!` line cannot bring them back), a few names are never
sent to an engine nor counted in the hash, at any depth: `.env` and `.env.*` (the secrets beside the
playbook), `.dockyard/` (per-environment SSH keys and known_hosts), `.git/` (history, remotes with tokens)
and private-key files: `*.pem`, `*.key` and ssh-keygen's `id_<type>` names (`id_rsa`, `id_ed25519`, …: an
`id_` name without a dot, so `id_utils.py` stays and `id_ed25519.pub` too). An image is readable by anyone
who can pull it or run it: a template's `COPY . /app` of the playbook's own directory must not ship them.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from provision.dockerignore import Matcher, read_dockerignore
from provision.errors import InputError

# Where the rendered Dockerfile of a template app is placed inside the context sent to the engine. A file
# of the user's with that path is replaced (it cannot be both).
INJECTED_DOCKERFILE = ".dockyard.Dockerfile"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class ContextEntry:
    path: str  # context-relative, "/"-separated
    kind: str  # "file" | "dir" | "symlink"
    mode: int  # permission bits
    source: Path | None = None  # the local file (files); None for injected content and dirs
    link: str = ""  # symlink target
    content: bytes | None = field(default=None, repr=False)  # injected content (the rendered Dockerfile)
    digest: str = ""  # sha256 of the contents (files)


@dataclass
class BuildContext:
    """A build context ready to hash and send: the entries docker would send plus the Dockerfile to use."""

    root: Path
    dockerfile_path: str  # inside the context, as the engine's `dockerfile` parameter
    dockerfile_text: str
    build_args: dict[str, str]
    entries: list[ContextEntry]
    content_hash: str

    @property
    def hash12(self) -> str:
        return self.content_hash[:12]

    @property
    def files(self) -> list[str]:
        return [e.path for e in self.entries if e.kind != "dir"]

    def tar(self) -> IO[bytes]:
        """The context as an uncompressed tar, spooled to disk past 32 MiB, rewound for reading."""
        buf: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=32 << 20)  # noqa: SIM115 - returned open
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for entry in self.entries:
                info = tarfile.TarInfo(entry.path)
                info.mode = entry.mode
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if entry.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif entry.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry.link
                    tar.addfile(info)
                elif entry.content is not None:
                    info.size = len(entry.content)
                    tar.addfile(info, io.BytesIO(entry.content))
                else:
                    assert entry.source is not None
                    with open(entry.source, "rb") as fh:
                        info.size = os.fstat(fh.fileno()).st_size
                        tar.addfile(info, fh)
        buf.seek(0)
        return buf


NEVER_SENT = (".env", ".env.*", ".dockyard/", ".git/", "*.pem", "*.key", "id_* (private keys; not *.pub)")
# `id_<name>` with no dot is a private key by OpenSSH's naming (`id_utils.py` is not); a copy of a standard key
# under another suffix (`id_ed25519.old`, `id_rsa.bak`) is one too, but never its `.pub` half.
_NEVER_SENT_RE = re.compile(r"\.env|\.env\..*|\.dockyard|\.git|.*\.pem|.*\.key|id_[^.]+"
                            r"|id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?\.(?!pub$).*", re.DOTALL)


def never_sent(path: str) -> bool:
    """Whether a context path is (or lies below) one of the NEVER_SENT names."""
    return any(_NEVER_SENT_RE.fullmatch(part) for part in path.split("/"))


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _unreadable(root: Path, rel: str, exc: OSError) -> InputError:
    """An InputError naming the entry relative to the context (the context directory is the file)."""
    return InputError.single(f"cannot read {rel!r} in the build context ({exc.strerror or 'I/O error'})", root)


def _check_readable(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.close(fd)


def walk_context(root: Path, matcher: Matcher, always: Iterable[str] = (), hash_files: bool = True
                 ) -> Iterator[ContextEntry]:
    """Entries of `root` that `.dockerignore` lets through, sorted by path (deterministic). Without
    `hash_files` each file is only opened (validate's readability check) and its digest left empty."""
    always_set = set(always)

    def visit(rel_dir: str, abs_dir: Path) -> Iterator[ContextEntry]:
        try:
            names = sorted(os.listdir(abs_dir))
        except OSError as exc:
            raise _unreadable(root, (rel_dir or ".") + "/", exc) from None
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = abs_dir / name
            if never_sent(rel):
                continue  # secrets and keys: not sent, not hashed, whatever .dockerignore says
            try:
                st = os.lstat(full)
            except OSError as exc:  # removed while we walk
                raise _unreadable(root, rel, exc) from None
            excluded = matcher.excluded(rel) and rel not in always_set
            if stat.S_ISDIR(st.st_mode):
                needed = any(p.startswith(rel + "/") for p in always_set)  # e.g. docker/Dockerfile
                if excluded and not matcher.has_exclusions and not needed:
                    continue  # nothing below can be re-included: skip the whole tree (as docker does)
                if not excluded:
                    yield ContextEntry(rel, "dir", stat.S_IMODE(st.st_mode))
                yield from visit(rel, full)
                continue
            if excluded:
                continue
            try:
                if stat.S_ISLNK(st.st_mode):
                    yield ContextEntry(rel, "symlink", stat.S_IMODE(st.st_mode), link=os.readlink(full))
                elif stat.S_ISREG(st.st_mode):
                    if not hash_files:
                        _check_readable(full)
                    yield ContextEntry(rel, "file", stat.S_IMODE(st.st_mode), source=full,
                                       digest=_file_digest(full) if hash_files else "")
            except OSError as exc:
                raise _unreadable(root, rel, exc) from None
            # sockets, fifos and devices are not sent (docker errors on some; we ignore them)

    yield from visit("", root)


def content_hash(dockerfile_text: str, entries: Iterable[ContextEntry], build_args: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    h.update(b"dockyard-build-v1\0dockerfile\0")
    h.update(dockerfile_text.encode())
    h.update(b"\0context\0")
    for e in entries:
        payload = e.digest if e.kind == "file" else e.link
        h.update(f"{e.kind}\0{e.path}\0{e.mode:o}\0{payload}\0".encode())
    h.update(b"args\0")
    for key in sorted(build_args):
        h.update(f"{key}\0{build_args[key]}\0".encode())
    return h.hexdigest()


def assemble(
    root: Path,
    dockerfile_text: str,
    build_args: Mapping[str, str] | None = None,
    dockerfile_path: str | None = None,
) -> BuildContext:
    """Assemble the context of `root`.

    `dockerfile_path` is given for apps with their own `dockerfile:` (a path inside the context; always sent);
    template apps pass None and the rendered text is injected at INJECTED_DOCKERFILE.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError.single(f"build context {root} is not a directory")
    patterns = read_dockerignore(root)
    args = {k: str(v) for k, v in (build_args or {}).items()}
    always = {".dockerignore"}
    if dockerfile_path is not None:
        always.add(posixpath.normpath(dockerfile_path))
        entries = list(walk_context(root, Matcher(patterns), always))
        path = posixpath.normpath(dockerfile_path)
        if not any(e.path == path for e in entries):
            raise InputError.single(f"dockerfile {dockerfile_path!r} not found in build context {root}")
    else:
        path = INJECTED_DOCKERFILE
        entries = [e for e in walk_context(root, Matcher(patterns), always) if e.path != path]
        data = dockerfile_text.encode()
        entries.append(
            ContextEntry(path, "file", 0o644, content=data, digest=hashlib.sha256(data).hexdigest())
        )
        entries.sort(key=lambda e: e.path)
    digest = content_hash(dockerfile_text, entries, args)
    return BuildContext(
        root=root,
        dockerfile_path=path,
        dockerfile_text=dockerfile_text,
        build_args=args,
        entries=entries,
        content_hash=digest,
    )


def check_context(root: Path, dockerfile_path: str | None = None) -> None:
    """What `assemble` would refuse, without hashing: the directory, `.dockerignore`, and that every file
    sent is readable (whether an app's own Dockerfile exists is render's check, at `dockerfile`). Raises
    InputError (file: the context or `.dockerignore`)."""
    if not root.is_dir():
        raise InputError.single("the build context directory does not exist"
                                if not root.exists() else "the build context is not a directory", root)
    always = {".dockerignore"}
    if dockerfile_path is not None:
        always.add(posixpath.normpath(dockerfile_path))
    for _ in walk_context(root, Matcher(read_dockerignore(root)), always, hash_files=False):
        pass


def image_tag(project: str, app: str, content_hash: str) -> str:
    return f"{project}/{app}:{content_hash[:12]}"


@dataclass(frozen=True)
class BuildSource:
    """A build context as an op parameter: compared by its content hash (which covers Dockerfile, files and
    build args); the context itself rides along for the executor and is never rendered."""

    content_hash: str
    dockerfile: str
    files: int
    context: BuildContext = field(compare=False, repr=False, hash=False)

    @classmethod
    def of(cls, context: BuildContext) -> BuildSource:
        return cls(context.content_hash, context.dockerfile_path, len(context.files), context)
