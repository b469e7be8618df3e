"""The local test base images: their content-hash tags, shared by `.ci/images.sh` and the tests.

`dockyard-ci/<name>:<hash>` where `<hash>` is the first 12 hex digits of a sha256 over the files of
`tests/images/<name>/`, sorted by relative path, each fed as `<path>\\n<sha256 of content>\\n`. A changed
directory therefore gets a new tag (and is rebuilt), an unchanged one is reused.

`.ci/images.sh` calls this module (`python3 tests/images.py tag NAME`) so there is one implementation.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

IMAGES_DIR = Path(__file__).resolve().parent / "images"
REPOSITORY = "dockyard-ci"
MINBASE = f"{REPOSITORY}/bookworm-minbase:1"
_IGNORED = {"__pycache__", ".DS_Store"}


class MissingTestImage(RuntimeError):
    """The test image is not in the local engine: `bash .ci/images.sh` builds it."""


def image_names() -> list[str]:
    return sorted(d.name for d in IMAGES_DIR.iterdir() if (d / "Dockerfile").is_file())


def content_hash(name: str) -> str:
    root = IMAGES_DIR / name
    if not (root / "Dockerfile").is_file():
        raise MissingTestImage(f"no test image {name!r}: {root}/Dockerfile does not exist "
                               f"(known: {', '.join(image_names())})")
    files = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if p.is_file() and not _IGNORED.intersection(p.relative_to(root).parts)
    )
    outer = hashlib.sha256()
    for rel in files:
        outer.update(f"{rel}\n{hashlib.sha256((root / rel).read_bytes()).hexdigest()}\n".encode())
    return outer.hexdigest()[:12]


def image_tag(name: str) -> str:
    """The tag `.ci/images.sh` gives the image built from `tests/images/<name>/` (no engine needed)."""
    return f"{REPOSITORY}/{name}:{content_hash(name)}"


def image_ref(name: str, client=None) -> str:
    """The tag of a built test image; fails with the command to run when the engine lacks it."""
    tag = image_tag(name)
    import docker
    from docker.errors import ImageNotFound

    own = client is None
    client = client or docker.from_env()
    try:
        client.images.get(tag)
    except ImageNotFound:
        raise MissingTestImage(
            f"test image {tag} is missing (tests/images/{name}/ changed or was never built): "
            "run bash .ci/images.sh") from None
    finally:
        if own:
            client.close()
    return tag


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "tag":
        print(image_tag(argv[1]))
        return 0
    if argv == ["list"]:
        print("\n".join(image_names()))
        return 0
    print("usage: python3 tests/images.py tag NAME | list", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
