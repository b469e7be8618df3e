"""Docker image references (`redis:7.2`, `ghcr.io/acme/api:1`, `postgres@sha256:…`): docker's reference
grammar (github.com/distribution/reference), pure. Used by the spec (`apps.*.image`) and by the registry
matching (which registry's credentials a pull needs).

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [ domain "/" ] path-component { "/" path-component }      (at most 255 characters)
    domain    := host [ ":" port ]        (the first component, when it has a "." or ":" or is "localhost")
"""

from __future__ import annotations

import re

MAX_REFERENCE = 512  # name (255) + tag (128) + digest (sha512: 7 + 128), rounded up
MAX_NAME = 255  # docker's NameTotalLengthMax
DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io",
                                "https://index.docker.io/v1/"})

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
DOMAIN_RE = rf"{_HOST}(?::[0-9]{{1,5}})?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{DOMAIN_RE})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII)


def check_reference(value: str) -> str | None:
    """Why `value` is not an image reference docker accepts, or None."""
    if len(value) > MAX_REFERENCE:
        return f"an image reference is at most {MAX_REFERENCE} characters, this one has {len(value)}"
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        return "an image reference has no spaces or control characters (e.g. redis:7.2)"
    m = _REFERENCE.fullmatch(value)
    if m is None:
        shown = value if len(value) <= 80 else value[:80] + "…"
        return (f"{shown!r} is not an image reference: [REGISTRY/]NAME[:TAG][@DIGEST] with a lowercase name, "
                "e.g. redis:7.2, ghcr.io/acme/api:1.4 or postgres@sha256:<64 hex digits>")
    name = value.split("@", 1)[0]
    name = name[:len(name) - len(m.group("tag")) - 1] if m.group("tag") else name
    if len(name) > MAX_NAME:
        return f"an image name is at most {MAX_NAME} characters (without tag and digest)"
    return None


def _looks_like_host(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first != first.lower()


def registry_of(reference: str) -> str:
    """The registry host[:port] a reference is pulled from (`docker.io` when it names none)."""
    first, sep, _ = reference.partition("/")
    if sep and _looks_like_host(first):
        return first
    return DOCKER_HUB


def same_registry(a: str, b: str) -> bool:
    """Do two registry names (as a playbook's `registry.server` or `registry_of`) mean the same registry?"""
    a, b = a.lower().removesuffix("/"), b.lower().removesuffix("/")
    a = a.removeprefix("https://").removeprefix("http://")
    b = b.removeprefix("https://").removeprefix("http://")
    hub = {x.removeprefix("https://").removesuffix("/") for x in DOCKER_HUB_ALIASES}
    return a == b or (a in hub and b in hub) or (a.split("/")[0] in hub and b.split("/")[0] in hub)


def has_digest(reference: str) -> bool:
    return "@" in reference
