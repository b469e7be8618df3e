"""What every dockyard task shares: options, config layering, playbook loading, exit codes.

Config layering follows Invoke: the collection's defaults < invoke.yaml (or dockyard.yaml for the `dockyard`
program) < `INVOKE_DOCKYARD_*` / `DOCKYARD_*` environment variables < command-line flags.

Every task takes the common options first, in this order, so Invoke gives them the same short flags
everywhere: `-e/--env NAME`, `-p/--playbook PATH`, `-j/--json`, `-v/--verbose`. Tasks that connect over SSH
(`dockyard_task(connects=True)`) also take `--strict-host-keys` (config `strict_host_keys`,
`DOCKYARD_STRICT_HOST_KEYS=1`); `load` applies it to the playbook as `ssh.strict_host_keys: true`.
"""

from __future__ import annotations

import functools
import inspect
import json as jsonlib
import os
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from invoke import task
from invoke.context import Context
from invoke.exceptions import Exit

from provision.errors import EXIT_FAILED, DockyardError, InputError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULTS: dict[str, Any] = {
    "env": None,  # default environment when -e is not given
    "playbook": None,
    "root": ".",  # the project directory holding playbooks/ (and templates/)
    "json": False,
    "verbose": False,
    "strict_host_keys": False,  # refuse trust on first use of SSH host keys (CI)
}

COMMON_HELP = {
    "env": "environment NAME: uses playbooks/NAME.yml",
    "playbook": "path of a playbook file (overrides --env)",
    "json": "print one JSON document on stdout (progress and messages go to stderr)",
    "verbose": "show commands, build logs and details",
}
STRICT_HELP = ("refuse unknown SSH host keys (no trust on first use): pin them with ssh.host_key or "
               "ssh.known_hosts")
# The --strict-host-keys flag of the running task (set by the task wrapper; `options` layers it).
_STRICT_FLAG: ContextVar[bool] = ContextVar("dockyard_strict_host_keys", default=False)


@dataclass(frozen=True)
class Options:
    env: str | None
    playbook: str | None
    json: bool
    verbose: bool
    root: Path
    strict_host_keys: bool = False


def _layer(ctx: Context, name: str, flag: Any) -> Any:
    """flag > DOCKYARD_<NAME> env > invoke config (files, INVOKE_DOCKYARD_<NAME>) > default."""
    if flag not in (None, False):
        return flag
    env_value = os.environ.get(f"DOCKYARD_{name.upper()}")
    if env_value is not None and env_value != "":
        if isinstance(DEFAULTS[name], bool):
            return env_value.strip().lower() in ("1", "true", "yes", "on")
        return env_value
    section = ctx.config.get("dockyard", {}) if hasattr(ctx, "config") else {}
    value = section.get(name, DEFAULTS[name]) if hasattr(section, "get") else DEFAULTS[name]
    return flag if value is None else value


def options(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
            verbose: bool = False) -> Options:
    return Options(
        env=_layer(ctx, "env", env),
        playbook=_layer(ctx, "playbook", playbook),
        json=bool(_layer(ctx, "json", json)),
        verbose=bool(_layer(ctx, "verbose", verbose)),
        root=Path(_layer(ctx, "root", None)).expanduser().resolve(),
        strict_host_keys=bool(_layer(ctx, "strict_host_keys", _STRICT_FLAG.get())),
    )


def load(opts: Options):  # -> Playbook (imported lazily: keeps `dockyard --help` fast)
    # deferred: pydantic loads when a command runs, not for `dockyard --help`
    from provision.playbook import load_playbook, resolve_playbook

    pb = load_playbook(resolve_playbook(opts.env, opts.playbook, opts.root))
    if opts.strict_host_keys and not pb.ssh.strict_host_keys:  # the flag/config can only tighten the playbook
        pb = pb.model_copy(update={"ssh": pb.ssh.model_copy(update={"strict_host_keys": True})})
    return pb


def emit_json(document: Any) -> None:
    sys.stdout.write(jsonlib.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def _report_error(exc: DockyardError, as_json: bool) -> None:
    kind = "invalid input" if isinstance(exc, InputError) else "failed"
    if as_json:
        if isinstance(exc, InputError):
            errors = [{"message": p.message, "file": str(p.file) if p.file else None,
                       "key_path": p.key_path, "line": p.line} for p in exc.problems]
        else:
            errors = [{"message": str(exc)}]
        emit_json({"ok": False, "exit_code": exc.exit_code, "error": {"kind": kind, "message": str(exc)},
                   "errors": errors})
    lines = str(exc).splitlines() or [exc.__class__.__name__]
    for line in lines:
        print(f"dockyard: {kind}: {line}", file=sys.stderr)


def _json_wanted(ctx: Context, flag: Any) -> bool:
    try:
        return bool(_layer(ctx, "json", flag))
    except Exception:  # a broken config must not hide the error being reported
        return bool(flag)


def handles_errors(func: F, *, connects: bool = False) -> F:
    """Turn dockyard's errors into one readable message and the documented exit code (no traceback).

    `connects`: the task also takes `--strict-host-keys`, added to its signature here (invoke builds the
    command line from it) and handed to `options` through a context variable, so no task repeats it."""

    @functools.wraps(func)
    def wrapper(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        token = _STRICT_FLAG.set(bool(kwargs.pop("strict_host_keys", False)))
        try:
            return func(ctx, *args, **kwargs)
        except DockyardError as exc:
            # the same layering as options(): --json, DOCKYARD_JSON or a config file's `dockyard.json`
            _report_error(exc, _json_wanted(ctx, kwargs.get("json")))
            raise Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            print("dockyard: interrupted", file=sys.stderr)
            raise Exit(code=EXIT_FAILED) from None
        finally:
            _STRICT_FLAG.reset(token)

    if connects:
        sig = inspect.signature(func)
        flag = inspect.Parameter("strict_host_keys", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False)
        wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), flag])  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def dockyard_task(*, help: dict[str, str] | None = None, connects: bool = False,
                  **task_kwargs: Any) -> Callable[[F], Any]:
    """`@invoke.task` with the common options' help and dockyard's error handling; `connects=True` for tasks
    that open SSH connections (adds `--strict-host-keys`)."""
    def decorate(func: F) -> Any:
        extra = {"strict_host_keys": STRICT_HELP} if connects else {}
        return task(help={**COMMON_HELP, **extra, **(help or {})}, **task_kwargs)(
            handles_errors(func, connects=connects))

    return decorate
