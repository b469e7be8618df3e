"""The closed set of operations a plan's Steps carry: frozen data, compared with `==`, rendered as text/JSON.

A plan decides; an executor (one per backend) only carries out. Nothing here runs anything:
- `Argv`       a remote command over SSH (stdin compared and shown only as a digest);
- `Upload`     a file over SFTP; its content is bytes, or `SecretFile` (secret NAMES plus a digest of their
               values: the executor resolves the values from the secret source its context holds);
- `Reconnect`  reopen the SSH connection (a new group membership applies to the session);
- `Wait`       poll a probe until it says yes (`PROBES`), bounded by `timeout`;
- `EngineCall` one Docker Engine API effect (`ENGINE_OPS`);
- `Ec2Call`    one EC2 effect (`EC2_OPS`); `refs` name outputs of earlier calls of the same plan (the group id
               a create returns, the instance id a launch returns), resolved by the EC2 executor;
- `Guarded`    run `ops` in order; if one fails, run `on_failure` (errors there are ignored), then re-raise.
Params are tuples of (key, value) pairs (`params(...)` freezes dicts and lists), so every op is hashable.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

ENGINE_OPS = frozenset({
    "network.create", "network.remove", "volume.create", "volume.remove", "image.build", "image.remove",
    "image.ship", "container.create", "container.remove", "container.rename", "container.connect",
    "container.stop", "container.start", "container.logs", "image.pull",
    "proxy.route", "proxy.unroute", "proxy.sync", "container.run_once",
    "secret.create", "secret.remove", "service.create", "service.update",  # engine.mode swarm (provision.plan.services)
    "service.rollback",  # `rollback` in swarm mode (provision.swarm_apps)
    "image.push",  # swarm mode with a registry: built once, pushed (provision.plan.push)
})
EC2_OPS = frozenset({
    "key_pair.import", "key_pair.delete", "security_group.create", "security_group.delete",
    "security_group.authorize", "security_group.revoke", "instance.run", "instance.start", "instance.stop",
    "instance.terminate", "instance.modify_type", "instance.metadata_options", "instance.groups", "instance.tags",
})
PROBES = frozenset({"engine.answers", "container.healthy", "instance.running", "instance.stopped",
                    "instance.terminated", "proxy.drained", "service.converged",
                    "service.rolled_back"})

Params = tuple[tuple[str, Any], ...]


class FrozenMap(tuple):  # type: ignore[type-arg]
    """A frozen mapping: sorted (key, value) pairs. A tuple (hashable, equal to the same pairs as a plain tuple)
    that remembers it was a mapping, so `thaw` gives a dict back without guessing from its shape."""

    __slots__ = ()


def freeze(value: Any) -> Any:
    """dicts → FrozenMap of sorted (key, value) pairs, lists → tuples, recursively: hashable, order-stable."""
    if isinstance(value, FrozenMap):
        return value
    if isinstance(value, Mapping):
        return FrozenMap((str(k), freeze(v)) for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse for boto3/Docker SDK arguments: FrozenMaps → dicts (an empty one too), tuples → lists."""
    if isinstance(value, FrozenMap):
        return {k: thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def params(**kw: Any) -> Params:
    return tuple((k, freeze(v)) for k, v in kw.items())


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Params:
    params: Params

    def get(self, key: str, default: Any = None) -> Any:
        return next((v for k, v in self.params if k == key), default)


@dataclass(frozen=True)
class Argv:
    argv: tuple[str, ...]
    sudo: bool = False
    stdin: bytes | None = field(default=None, repr=False, compare=False)
    stdin_digest: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "argv", tuple(self.argv))
        if self.stdin is not None:
            object.__setattr__(self, "stdin_digest", digest(self.stdin))


@dataclass(frozen=True)
class SecretFile:
    """An env file made of the named secrets. `digest` covers their values, so a changed secret compares
    unequal; the values themselves are never here."""

    names: tuple[str, ...]
    digest: str


@dataclass(frozen=True)
class Upload:
    path: str
    content: bytes | SecretFile = field(repr=False)
    mode: int = 0o644
    owner: str | None = None
    sudo: bool = False

    @property
    def content_digest(self) -> str:
        return self.content.digest if isinstance(self.content, SecretFile) else digest(self.content)


@dataclass(frozen=True)
class Reconnect:
    pass


@dataclass(frozen=True)
class Wait(_Params):
    probe: str
    params: Params = ()
    timeout: float = 60.0
    refs: tuple[tuple[str, str], ...] = ()  # as Ec2Call's: the instance a launch in the same plan returns

    def __post_init__(self) -> None:
        if self.probe not in PROBES:
            raise ValueError(f"unknown probe {self.probe!r}")


@dataclass(frozen=True)
class EngineCall(_Params):
    op: str
    params: Params = ()

    def __post_init__(self) -> None:
        if self.op not in ENGINE_OPS:
            raise ValueError(f"unknown engine op {self.op!r}")


@dataclass(frozen=True)
class Ec2Call(_Params):
    op: str
    params: Params = ()
    refs: tuple[tuple[str, str], ...] = ()  # (param name, output name of an earlier call), e.g. group_id

    def __post_init__(self) -> None:
        if self.op not in EC2_OPS:
            raise ValueError(f"unknown EC2 op {self.op!r}")


@dataclass(frozen=True)
class Guarded:
    """A roll-out: the plan lists what to do and what undoes it; `note` completes the failure message
    (e.g. "removed it, kept the old container (web-1)"); `logs_of` names the container whose redacted log tail
    the message shows; `redact` names the secrets whose values are masked in it."""

    ops: tuple[Op, ...]
    on_failure: tuple[Op, ...] = ()
    note: str = ""
    logs_of: str | None = None
    redact: tuple[str, ...] = ()


Op = Argv | Upload | Reconnect | Wait | EngineCall | Ec2Call | Guarded


# --- rendering (what --check -v and --json show: never a secret value, never file contents) -----------------


def _show(value: Any) -> Any:
    """A JSON-able, secret-free view of a param value: frozen dataclasses show their identifying fields."""
    if hasattr(value, "op_view"):
        return value.op_view()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _show(getattr(value, f.name)) for f in fields(value) if f.repr}
    if isinstance(value, tuple):
        if value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value):
            return {k: _show(v) for k, v in value}
        return [_show(v) for v in value]
    if isinstance(value, bytes):
        return digest(value)
    return value


def to_json(op: Op) -> dict[str, Any]:
    if isinstance(op, Argv):
        return {"type": "argv", "argv": list(op.argv), "sudo": op.sudo,
                **({"stdin": op.stdin_digest} if op.stdin_digest else {})}
    if isinstance(op, Upload):
        content: Any = ({"secrets": list(op.content.names)} if isinstance(op.content, SecretFile) else
                        {"bytes": len(op.content)})
        return {"type": "upload", "path": op.path, "mode": f"{op.mode:04o}", "owner": op.owner, "sudo": op.sudo,
                "digest": op.content_digest, **content}
    if isinstance(op, Reconnect):
        return {"type": "reconnect"}
    if isinstance(op, Wait):
        return {"type": "wait", "probe": op.probe, "params": _show(op.params) or {}, "timeout": op.timeout,
                **({"refs": dict(op.refs)} if op.refs else {})}
    if isinstance(op, EngineCall):
        return {"type": "engine", "op": op.op, "params": _show(op.params) or {}}
    if isinstance(op, Ec2Call):
        return {"type": "ec2", "op": op.op, "params": _show(op.params) or {},
                **({"refs": dict(op.refs)} if op.refs else {})}
    return {"type": "guarded", "ops": [to_json(o) for o in op.ops],
            "on_failure": [to_json(o) for o in op.on_failure]}


def _kv(p: Params) -> str:
    return " ".join(f"{k}={_text(_show(v))}" for k, v in p)


def _text(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_text(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_text(x) for x in v) + "]"
    return str(v)


def render(op: Op) -> str:
    """One line per op (a Guarded one: its ops, then `on failure:` its undo ops)."""
    if isinstance(op, Argv):
        line = ("sudo " if op.sudo else "") + shlex.join(op.argv)
        return line + (f" < stdin ({op.stdin_digest})" if op.stdin_digest else "")
    if isinstance(op, Upload):
        what = (f"env file of secrets {', '.join(op.content.names)}" if isinstance(op.content, SecretFile)
                else f"{len(op.content)} bytes")
        return (f"upload {op.path} ({what}, {op.content_digest[:19]}, mode {op.mode:04o}"
                + (f", owner {op.owner}" if op.owner else "") + (", sudo" if op.sudo else "") + ")")
    if isinstance(op, Reconnect):
        return "reconnect"
    if isinstance(op, Wait):
        refs = "".join(f" {k}=<{v}>" for k, v in op.refs)
        return f"wait {op.probe} {_kv(op.params)}{refs} (at most {op.timeout:g}s)".replace("  ", " ")
    if isinstance(op, EngineCall):
        return f"engine {op.op} {_kv(op.params)}".rstrip()
    if isinstance(op, Ec2Call):
        refs = " ".join(f"{k}=<{v}>" for k, v in op.refs)
        return f"ec2 {op.op} {_kv(op.params)} {refs}".rstrip()
    return "; ".join(render(o) for o in op.ops) + " | on failure: " + "; ".join(render(o) for o in op.on_failure)
