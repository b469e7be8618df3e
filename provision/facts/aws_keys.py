"""The local SSH key as EC2 sees it: the public half of `ssh.key_file`, its type, wire blob and fingerprints in
every form AWS (and moto) report. Split from provision.facts.aws, which re-exports these names."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from provision.errors import InputError


@dataclass(frozen=True)
class LocalKey:
    """The public half of `ssh.key_file`, as EC2 will see it when imported."""

    path: Path
    material: str  # "ssh-ed25519 AAAA… comment"
    key_type: str  # ed25519 | rsa
    blob: str  # the base64 wire blob, for comparing with an API-returned public key
    fingerprints: frozenset[str]  # every form AWS (and moto) may report for this key


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)


def key_fingerprints(material: str) -> tuple[str, str, frozenset[str]]:
    """(key type, wire blob, fingerprints) of an OpenSSH public key line, in every form EC2 reports.

    AWS, for imported keys: RSA → MD5 of the DER SubjectPublicKeyInfo (colon hex); ed25519 → base64 SHA256 of
    the OpenSSH wire blob (as `ssh-keygen -l`, with padding). moto 5 uses SHA256 of the DER for ed25519.
    """
    parts = material.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    key = serialization.load_ssh_public_key(" ".join(parts[:2]).encode())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    blob = parts[1]
    if isinstance(key, Ed25519PublicKey):
        wire = base64.b64decode(blob)
        b64 = base64.b64encode(hashlib.sha256(wire).digest()).decode()
        return "ed25519", blob, frozenset({b64, b64.rstrip("="), _colon_hex(hashlib.sha256(der).digest())})
    if isinstance(key, RSAPublicKey):
        return "rsa", blob, frozenset({_colon_hex(hashlib.md5(der).digest())})  # AWS's format, not security
    raise ValueError("EC2 imports only ed25519 and RSA keys")


def read_local_key(private_key: Path, key_path: str = "ssh.key_file") -> LocalKey:
    pub = Path(str(private_key) + ".pub")
    try:
        material = pub.read_text().strip()
    except OSError as exc:
        raise InputError.single(
            f"cannot read the public key {pub} ({exc.strerror or exc}); create it with "
            f"`ssh-keygen -t ed25519 -f {private_key}` or point ssh.key_file at an existing key",
            key_path=key_path) from None
    try:
        key_type, blob, prints = key_fingerprints(material)
    except (ValueError, TypeError) as exc:
        raise InputError.single(f"{pub} is not a usable public key: {exc}", key_path=key_path) from None
    return LocalKey(path=pub, material=material, key_type=key_type, blob=blob, fingerprints=prints)
