"""Which SSH host keys dockyard trusts, and what it says when a key is unknown, changed or not the pinned one.

Sources, for the name dockyard dials (`host`, or `[host]:port` as OpenSSH writes it):

- `ssh.host_key` (target only, never the jump host): pinned keys (`ssh-ed25519 AAAA…`) or fingerprints
  (`SHA256:…`). When given, only they count: known_hosts files are not consulted for the target.
- the environment's known_hosts file (`Playbook.known_hosts_file`: `ssh.known_hosts`, else
  `.dockyard/<env>/known_hosts`): read, and the only file dockyard ever writes (first use outside strict mode,
  keys read from an EC2 console, forgetting destroyed hosts).
- read-only files, e.g. `~/.ssh/known_hosts`: trusted, never written.

Files are read with paramiko's `HostKeyEntry`, so hashed names (`|1|salt|hash`) match; `@revoked` lines refuse
their key; `@cert-authority` lines are ignored (dockyard does not do host certificates).

The decision is one pure function (`check_host_key`); `TrustPolicy` plugs it into paramiko. The client is
given no host keys of its own, so paramiko always asks the policy, which raises `HostKeyRejected` (a
`StepFailed`: exit 1, one line, naming the host) or returns after accepting (and maybe remembering) the key.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys, InvalidHostKey

from provision.errors import StepFailed

USER_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
CONSOLE_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
CONSOLE_END = "-----END SSH HOST KEY KEYS-----"
_KEY_TYPE = r"(?:ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(?:256|384|521))"
_KEY_RE = re.compile(rf"({_KEY_TYPE})\s+([A-Za-z0-9+/]+={{0,2}})(?:\s|$)")
# The host key algorithms paramiko may negotiate for a key type remembered in known_hosts.
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


class HostKeyRejected(StepFailed):
    """A host key dockyard will not trust (unknown in strict mode, changed, revoked, or not the pinned one)."""


@dataclass(frozen=True)
class HostKeyTrust:
    """How one connection decides about host keys (the target's; `for_jump()` gives the bastion's)."""

    strict: bool = False  # refuse trust on first use
    pinned: tuple[str, ...] = ()  # ssh.host_key values: "TYPE BASE64" or "SHA256:…"
    read_only: tuple[Path, ...] = ()  # trusted known_hosts files dockyard never writes

    @classmethod
    def from_playbook(cls, playbook: Any) -> HostKeyTrust:
        return cls(strict=bool(playbook.ssh.strict_host_keys), pinned=tuple(playbook.ssh.host_key),
                   read_only=(USER_KNOWN_HOSTS.expanduser(),))

    def for_jump(self) -> HostKeyTrust:
        """ssh.host_key pins the target; the jump host is checked against the known_hosts files only."""
        return replace(self, pinned=())


@dataclass(frozen=True)
class KnownEntry:
    file: Path
    line: int
    key: paramiko.PKey
    revoked: bool = False


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    remember: bool = False  # append the key to the environment's known_hosts (first use)
    matched: str = ""  # where the accepting key came from


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey | bytes) -> str:
    """OpenSSH's `SHA256:…` form (base64 without padding of the SHA-256 of the key blob)."""
    blob = key if isinstance(key, bytes) else key.asbytes()
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def describe(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {fingerprint(key)}"


def _pin_blob(pin: str) -> bytes | None:
    """The key blob of a "TYPE BASE64" pin; None for a fingerprint pin."""
    fields = pin.split()
    if len(fields) >= 2 and not fields[0].startswith("SHA256:"):
        return base64.b64decode(fields[1])
    return None


def pin_fingerprint(pin: str) -> str:
    blob = _pin_blob(pin)
    return fingerprint(blob) if blob is not None else pin.strip().rstrip("=")


def read_known_hosts(path: Path, name: str) -> list[KnownEntry]:
    """Every entry of `path` that names `name` (hashed or plain), in file order; [] when unreadable."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    probe = HostKeys()
    out: list[KnownEntry] = []
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        revoked = False
        if text.startswith("@"):
            marker, _, text = text.partition(" ")
            if marker != "@revoked":
                continue  # @cert-authority: not supported, never a match
            revoked = True
        if not _names_match(probe, name, text.split(None, 1)[0].split(",")):
            continue  # name first, key only on a match: 1000 plain entries take ~1 ms instead of ~20
        try:
            entry = HostKeyEntry.from_line(text, number)
        except (InvalidHostKey, paramiko.SSHException, ValueError, TypeError):
            continue
        if entry is not None and entry.key is not None:  # a key type paramiko cannot read never matches
            out.append(KnownEntry(path, number, entry.key, revoked))
    return out


def _names_match(probe: HostKeys, name: str, patterns: Sequence[str]) -> bool:
    """OpenSSH's host patterns: hashed (`|1|salt|hash`), plain, `*`/`?` wildcards, `!negated`."""
    hit = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            matched = probe.hash_host(name, pattern) == pattern
        elif "*" in pattern or "?" in pattern:
            regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
            matched = re.fullmatch(regex, name, re.IGNORECASE) is not None
        else:
            matched = pattern.lower() == name.lower()
        if matched and negated:
            return False
        hit = hit or matched
    return hit


def check_host_key(*, label: str, name: str, key: paramiko.PKey, trust: HostKeyTrust,
                   known_hosts: Path) -> Verdict:
    """Pure decision (reads files only): accept, accept and remember (first use), or raise HostKeyRejected."""
    offered = describe(key)
    if trust.pinned:
        for pin in trust.pinned:
            blob = _pin_blob(pin)
            if (blob == key.asbytes()) if blob is not None else pin_fingerprint(pin) == fingerprint(key):
                return Verdict(True, matched="ssh.host_key")
        expected = " or ".join(pin_fingerprint(p) for p in trust.pinned)
        raise HostKeyRejected(f"{label}: the host key is not the one pinned in ssh.host_key: expected "
                              f"{expected}, the server offers {offered}")
    entries = [e for path in (known_hosts, *trust.read_only) for e in read_known_hosts(path, name)]
    blob = key.asbytes()
    for e in entries:
        if e.revoked and e.key.asbytes() == blob:
            raise HostKeyRejected(f"{label}: the host key {offered} is marked @revoked in {e.file}:{e.line}")
    for e in entries:
        if not e.revoked and e.key.asbytes() == blob:
            return Verdict(True, matched=f"{e.file}:{e.line}")
    remembered = [e for e in entries if not e.revoked]
    if remembered:
        first = remembered[0]
        raise HostKeyRejected(
            f"{label}: the host key changed for {name} (remembered in {first.file}:{first.line}, the server "
            f"now offers {offered}); if the host was rebuilt, clear it with "
            f"ssh-keygen -R '{name}' -f {first.file}")
    if trust.strict:
        raise HostKeyRejected(
            f"{label}: unknown host key {offered} and strict host keys are on (no trust on first use): pin it "
            f"with ssh.host_key: \"{fingerprint(key)}\" or add it to the file ssh.known_hosts names")
    return Verdict(True, remember=True, matched="first use")


def remember_key(path: Path, name: str, key: paramiko.PKey) -> None:
    """Append `name TYPE BASE64` unless that exact entry is already there (e.g. a bastion that is the target)."""
    if any(e.key.asbytes() == key.asbytes() and not e.revoked for e in read_known_hosts(path, name)):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    with path.open("a", encoding="utf-8") as fh:
        if existing and not existing.endswith("\n"):
            fh.write("\n")
        fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")


def forget_host_keys(path: Path, names: Iterable[str]) -> int:
    """Drop the lines naming any of `names` (plain or hashed), as `ssh-keygen -R` does; every other line stays
    byte for byte. Returns how many lines went."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError:
        return 0
    wanted = [n for n in names if n]
    probe = HostKeys()
    keep = []
    for raw in lines:
        fields = raw.split()
        if fields and fields[0].startswith("@") and len(fields) > 1:
            fields = fields[1:]
        patterns = fields[0].split(",") if fields and not fields[0].startswith("#") else []
        if patterns and any(_names_match(probe, n, patterns) for n in wanted):
            continue
        keep.append(raw)
    if len(keep) != len(lines):
        path.write_text("".join(keep), encoding="utf-8")
    return len(lines) - len(keep)


def record_host_keys(path: Path, name: str, keys: Sequence[tuple[str, str]]) -> int:
    """Make `path` hold exactly `keys` ((type, base64) from a trusted channel, e.g. the EC2 console) for
    `name`: entries of an earlier host at that address are replaced. Returns how many keys were added."""
    parsed = []
    for key_type, b64 in keys:
        try:
            parsed.append(paramiko.PKey.from_type_string(key_type, base64.b64decode(b64)))
        except (paramiko.SSHException, ValueError, TypeError):
            continue
    if not parsed:
        return 0
    have = {e.key.asbytes() for e in read_known_hosts(path, name) if not e.revoked}
    want = {k.asbytes() for k in parsed}
    if have == want:
        return 0
    if have - want:
        forget_host_keys(path, [name])
        have = set()
    added = 0
    for key in parsed:
        if key.asbytes() not in have:
            remember_key(path, name, key)
            have.add(key.asbytes())
            added += 1
    return added


def parse_console_host_keys(output: str | None) -> list[tuple[str, str]]:
    """(type, base64) of the host keys cloud-init printed to the console (the last block: the current boot).

    Lines may carry a prefix (`ec2: `, a syslog header, a kernel timestamp); the block may be cut short by a
    console still being written, in which case it does not count (no END marker, no keys)."""
    if not output:
        return []
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] | None = None
    for line in output.replace("\r", "").splitlines():
        if CONSOLE_BEGIN in line:
            current = []
        elif CONSOLE_END in line:
            if current is not None:
                blocks.append(current)
            current = None
        elif current is not None:
            match = _KEY_RE.search(line)
            if match and _blob_type(match.group(2)) == match.group(1):
                pair = (match.group(1), match.group(2))
                if pair not in current:
                    current.append(pair)
    return blocks[-1] if blocks else []


def _blob_type(b64: str) -> str | None:
    """The key type written inside an OpenSSH key blob (a length-prefixed string)."""
    try:
        blob = base64.b64decode(b64, validate=True)
    except ValueError:
        return None
    if len(blob) < 4:
        return None
    size = int.from_bytes(blob[:4], "big")
    return blob[4:4 + size].decode("ascii", "replace") if 0 < size <= 64 else None


# --- paramiko wiring ---------------------------------------------------------------------------------------


class TrustPolicy(paramiko.MissingHostKeyPolicy):
    """Asked for every key (the client holds none): decide with `check_host_key`, remember first-use keys."""

    def __init__(self, label: str, name: str, trust: HostKeyTrust, known_hosts: Path) -> None:
        self.label, self.name, self.trust, self.known_hosts = label, name, trust, known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        verdict = check_host_key(label=self.label, name=self.name, key=key, trust=self.trust,
                                 known_hosts=self.known_hosts)
        if verdict.remember:
            try:
                remember_key(self.known_hosts, self.name, key)
            except OSError as exc:
                raise StepFailed(f"{self.label}: cannot write known_hosts file {self.known_hosts}: "
                                 f"{exc.strerror or exc}") from None


def preferred_key_types(name: str, trust: HostKeyTrust, known_hosts: Path) -> list[str]:
    """Host key algorithms to offer first: those of the keys we already trust for `name` (OpenSSH does the
    same), so a host with several keys presents the one we know."""
    types: list[str] = []
    if trust.pinned:
        types = [p.split()[0] for p in trust.pinned if _pin_blob(p) is not None]
    else:
        for path in (known_hosts, *trust.read_only):
            types += [e.key.get_name() for e in read_known_hosts(path, name) if not e.revoked]
    out: list[str] = []
    for t in types:
        for algorithm in _ALGORITHMS.get(t, (t,)):
            if algorithm not in out:
                out.append(algorithm)
    return out


def prepare_client(conn: Any, *, label: str, name: str, trust: HostKeyTrust, known_hosts: Path) -> None:
    """Set up a fabric Connection's paramiko client: no host keys of its own, our policy, and a transport
    that prefers the key types we know for `name`."""
    client: paramiko.SSHClient = conn.client
    client.get_host_keys().clear()
    client.set_missing_host_key_policy(TrustPolicy(label, name, trust, known_hosts))
    preferred = preferred_key_types(name, trust, known_hosts)
    if not preferred:
        return

    def transport_factory(sock: Any, **kwargs: Any) -> paramiko.Transport:
        transport = paramiko.Transport(sock, **kwargs)
        options = transport.get_security_options()
        offered = list(options.key_types)
        first = [t for t in preferred if t in offered]
        options.key_types = first + [t for t in offered if t not in first]
        return transport

    conn.connect_kwargs["transport_factory"] = transport_factory
