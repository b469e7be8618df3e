"""The local sandbox host image and the base images the shipped example's apps build FROM.

Both are built on the local engine, cached by name (+ a recipe hash), from one of two bases:

- `registry`: `debian:bookworm-slim` (already present locally, or pulled) — used when a registry is reachable;
- `debootstrap`: `debootstrap --variant=minbase bookworm` imported with `docker import` as
  `dockyard/bookworm-minbase:1` (once per machine), then the same Dockerfile built on top.

`DOCKYARD_SANDBOX_BASE=registry|debootstrap` forces one; `DOCKYARD_MINBASE=<image>` names an existing
minbase image made the same way (CI's `dockyard-ci/bookworm-minbase:1`) so debootstrap does not run twice.

The build contexts get the host's extra CA certificates (`/usr/local/share/ca-certificates/**/*.crt`) as
`ca-certs/`, so apt, curl and pip trust a corporate or egress proxy; they are never committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import StepFailed

HERE = Path(__file__).resolve().parent
SANDBOX_FILES = ("Dockerfile", "entrypoint.sh", "init.d-docker", "sshd_config")
BASES_DIR = HERE / "bases"
CA_DIR = Path("/usr/local/share/ca-certificates")
REGISTRY_BASE = "debian:bookworm-slim"
MINBASE = "dockyard/bookworm-minbase:1"
MIRROR = "http://deb.debian.org/debian"
SANDBOX_REPO = "dockyard/sandbox"
BASE_TAG = "bookworm"  # dockyard/<name>:bookworm
RECIPE_LABEL = "dockyard.recipe"
VIA_LABEL = "dockyard.built-from"  # registry | debootstrap
BUILD_TIMEOUT = 1800

Say = Callable[[str], None]


@dataclass(frozen=True)
class Built:
    ref: str
    via: str  # registry | debootstrap: what it was built FROM (read from its label when cached)
    built: bool  # False when the image was already there (cached by name + recipe hash)


# --- pure ----------------------------------------------------------------------------------------------


def ca_certs(directory: Path = CA_DIR) -> dict[str, bytes]:
    """The host's extra CA certificates, as `ca-certs/<name>.crt` context entries."""
    out: dict[str, bytes] = {}
    if directory.is_dir():
        for path in sorted(directory.rglob("*.crt")):
            if path.is_file():
                name = path.relative_to(directory).as_posix().replace("/", "_")
                out[f"ca-certs/{name}"] = path.read_bytes()
    return out


def recipe_hash(files: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:12]


def context_tar(files: Mapping[str, bytes]) -> bytes:
    """A build context (small: a Dockerfile and a few scripts) with an always-present ca-certs/ dir."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("ca-certs")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(files[name]), 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def sandbox_files(certs: Mapping[str, bytes]) -> dict[str, bytes]:
    return {**{name: (HERE / name).read_bytes() for name in SANDBOX_FILES}, **certs}


def base_names() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in BASES_DIR.iterdir() if (p / "Dockerfile").is_file()))


def base_files(name: str, certs: Mapping[str, bytes]) -> dict[str, bytes]:
    return {"Dockerfile": (BASES_DIR / name / "Dockerfile").read_bytes(), **certs}


def base_ref(name: str) -> str:
    return f"dockyard/{name}:{BASE_TAG}"


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def referenced_bases(values: Any, known: Iterable[str]) -> tuple[str, ...]:
    """Which of dockyard's base images (`dockyard/<name>:bookworm`) the playbook's vars mention."""
    known = set(known)
    found = set()
    for text in _strings(values):
        for m in re.finditer(r"dockyard/([a-z0-9-]+):" + BASE_TAG + r"\b", text):
            if m.group(1) in known:
                found.add(m.group(1))
    return tuple(sorted(found))


def choose_base(forced: str | None, slim_present: bool, minbase_present: bool) -> str:
    """registry or debootstrap: forced by DOCKYARD_SANDBOX_BASE, else whatever is already here, else
    'try-registry' (the caller pulls once and falls back to debootstrap when that fails)."""
    if forced in ("registry", "debootstrap"):
        return forced
    if slim_present:
        return "registry"
    if minbase_present:
        return "debootstrap"
    return "try-registry"


# --- effects (the local engine) ------------------------------------------------------------------------


def _exists(client: Any, ref: str) -> Any | None:
    # deferred: docker, paramiko, requests load only when this path runs
    import docker

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _minbase_ref(client: Any) -> str | None:
    if _exists(client, MINBASE) is not None:
        return MINBASE
    alt = os.environ.get("DOCKYARD_MINBASE")
    if alt and _exists(client, alt) is not None:
        return alt
    return None


def debootstrap_minbase(client: Any, ref: str = MINBASE, say: Say = print) -> str:
    """`debootstrap --variant=minbase bookworm` + `docker import` (needs root and debootstrap)."""
    binary = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists()
                                             else None)
    if binary is None:
        raise StepFailed("no registry is reachable and debootstrap is not installed: "
                         "apt-get install debootstrap (or make debian:bookworm-slim available locally)")
    if os.geteuid() != 0:
        raise StepFailed("no registry is reachable: building the sandbox base with debootstrap needs root")
    mirror = os.environ.get("DOCKYARD_DEBIAN_MIRROR") or MIRROR
    say(f"no registry image: building {ref} with debootstrap --variant=minbase bookworm (once)")
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-minbase-", dir="/var/tmp"))
    root = tmp / "root"
    try:
        proc = subprocess.run([binary, "--variant=minbase", "bookworm", str(root), mirror],
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-800:]
            raise StepFailed(f"debootstrap failed (exit {proc.returncode}): {tail}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        archive = tmp / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(archive), "."], check=True,
                       timeout=BUILD_TIMEOUT)
        repo, _, tag = ref.rpartition(":")
        client.api.import_image(src=str(archive), repository=repo, tag=tag)
    finally:
        _remove_tree(tmp)
    return ref


def _remove_tree(tmp: Path) -> None:
    """debootstrap mounts proc/sys inside its target: unmount whatever is left before removing anything."""
    prefix = str(tmp) + "/"
    with open("/proc/mounts", encoding="utf-8") as fh:
        mounts = [line.split()[1] for line in fh if line.split()[1].startswith(prefix)]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", str(tmp)], check=False, capture_output=True)


def _pull_slim(client: Any, say: Say) -> bool:
    # deferred: docker, paramiko, requests load only when this path runs
    import docker

    repo, _, tag = REGISTRY_BASE.partition(":")
    try:
        client.images.pull(repo, tag=tag)
        return True
    except docker.errors.APIError as exc:
        say(f"sandbox: cannot pull {REGISTRY_BASE} ({str(exc)[:120]}); falling back to debootstrap")
        return False


def resolve_base(client: Any, say: Say = print) -> tuple[str, str]:
    """(via, image) the sandbox and base images are built FROM."""
    forced = os.environ.get("DOCKYARD_SANDBOX_BASE") or None
    slim = _exists(client, REGISTRY_BASE) is not None
    minbase = _minbase_ref(client)
    choice = choose_base(forced, slim, minbase is not None)
    if choice == "try-registry":
        choice = "registry" if _pull_slim(client, say) else "debootstrap"
    if choice == "registry":
        if not slim and forced == "registry" and not _pull_slim(client, say):
            raise StepFailed(f"DOCKYARD_SANDBOX_BASE=registry but {REGISTRY_BASE} cannot be pulled")
        return "registry", REGISTRY_BASE
    return "debootstrap", minbase or debootstrap_minbase(client, say=say)


def _build(client: Any, ref: str, files: Mapping[str, bytes], base: str, via: str, recipe: str,
           say: Say) -> None:
    # deferred: docker, paramiko, requests load only when this path runs
    import docker

    try:
        client.images.build(fileobj=io.BytesIO(context_tar(files)), custom_context=True, tag=ref, rm=True,
                            forcerm=True, buildargs={"BASE": base},
                            labels={RECIPE_LABEL: recipe, VIA_LABEL: via}, timeout=BUILD_TIMEOUT)
    except docker.errors.BuildError as exc:
        lines = [str(x.get("stream") or x.get("error") or "").rstrip() for x in exc.build_log]
        tail = "\n".join(line for line in lines if line)[-1500:]
        raise StepFailed(f"building {ref} failed: {exc.msg}\n{tail}") from None
    how = "the debootstrap minbase (no registry)" if via == "debootstrap" else "the registry's image"
    say(f"built {ref} FROM {base}: {how}")


def _ensure(client: Any, ref: str, files: Mapping[str, bytes], say: Say) -> Built:
    recipe = recipe_hash(files)
    image = _exists(client, ref)
    if image is not None and (image.labels or {}).get(RECIPE_LABEL) == recipe:
        return Built(ref, (image.labels or {}).get(VIA_LABEL, "unknown"), False)
    via, base = resolve_base(client, say)
    _build(client, ref, files, base, via, recipe, say)
    return Built(ref, via, True)


def ensure_sandbox_image(client: Any, say: Say = print) -> Built:
    """`dockyard/sandbox:<recipe hash>`, built when absent; older recipes no container uses are removed."""
    files = sandbox_files(ca_certs())
    ref = f"{SANDBOX_REPO}:{recipe_hash(files)}"
    built = _ensure(client, ref, files, say)
    if built.built:
        _remove_old_sandbox_images(client, keep=ref)
    return built


def _remove_old_sandbox_images(client: Any, keep: str) -> None:
    # deferred: docker, paramiko, requests load only when this path runs
    import docker

    for image in client.images.list(name=SANDBOX_REPO, filters={"label": RECIPE_LABEL}):
        for tag in image.tags:
            if tag != keep and tag.startswith(SANDBOX_REPO + ":"):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag)  # never forced: an image a sandbox still runs stays


def ensure_base_images(client: Any, names: Iterable[str], say: Say = print) -> list[Built]:
    """`dockyard/<name>:bookworm` for each name, built when absent or made from an older recipe."""
    certs = ca_certs()
    return [_ensure(client, base_ref(name), base_files(name, certs), say) for name in names]
