"""The Engine API executor of the Swarm service ops (provision.plan.services), run through the first host's
engine (a manager) by DeployContext (provision.appops registers these handlers), driven by
provision.deploy_swarm. STATUS: see provision/commands/service.py.

- `secret.create`: the value comes from the context's secret source, is checked against the plan's digest (a
  value changed since planning would make a secret whose name lies about it) and travels only in the API body;
- `service.create` / `service.update`: the plan's spec with each secret reference's id looked up by name; with
  an `auth` (an image in a registry with credentials, provision.plan.push) the call carries them as its
  X-Registry-Auth header, so each node pulls with them (docker-py would send this machine's ~/.docker
  credentials instead: the request is made here, the same body docker-py sends);
- `secret.remove`: an old secret no service references (plan.services.plan_secret_cleanup); already gone is
  fine, and so is one the engine says is in use (someone referenced it since the read): it stays, the output
  says so;
- `service.converged` (a Wait): polls the service until its update completed and `replicas` tasks run;
  a rollback (the engine's failure_action) or a paused update fails the step: exit 1, old version running;
- `service.rollback` (`dockyard rollback`, `docker service rollback`): the Engine API's service update with
  `rollback=previous` (docker-py has no argument for it: the SDK client's own session posts it), and
  `service.rolled_back` (a Wait): until the previous spec's replicas run (provision.swarm_apps.rollback_state).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from provision.commands.docker import LABEL_CONFIG_HASH
from provision.commands.service import with_secret_ids
from provision.errors import StepFailed, api_status
from provision.imageops import registry_secret_value
from provision.registry import RegistryAuth, auth_config
from provision.secrets import make_redactor
from provision.swarm_apps import rollback_state

POLL = 1.0
FAILED_STATES = ("rollback_paused", "rollback_completed", "paused")  # rollback_started: wait for it to finish


def create_secret(ctx: Any, *, name: str, env_name: str, digest: str, labels: Mapping[str, str]) -> None:
    if ctx.secrets is None:
        raise StepFailed(f"no secret source for {env_name}")
    value = ctx.secrets.value(env_name).encode("utf-8")
    if hashlib.sha256(value).hexdigest() != digest.removeprefix("sha256:"):
        raise StepFailed(f"secret {env_name} changed while deploying: run again")
    try:
        ctx.docker().api.create_secret(name, value, labels=dict(labels))
    except Exception as exc:
        if api_status(exc) != 409:  # already there: same name, same digest, same value
            raise StepFailed(f"creating swarm secret {name} failed: {type(exc).__name__}") from None


def remove_secret(ctx: Any, *, id: str, name: str) -> None:
    try:
        ctx.docker().api.remove_secret(id)
    except Exception as exc:
        status = api_status(exc)
        if status == 404:
            return
        if status in (400, 409) and "in use" in str(exc).lower():
            ctx.log(f"swarm secret {name} is in use again: kept")
            return
        raise StepFailed(f"removing swarm secret {name} failed: {type(exc).__name__}") from None


def _secret_ids(api: Any, names: Sequence[str]) -> dict[str, str]:
    if not names:
        return {}
    found = {str(s["Spec"]["Name"]): str(s["ID"]) for s in api.secrets(filters={"name": list(names)})}
    missing = [n for n in names if n not in found]
    if missing:
        raise StepFailed(f"swarm secret {', '.join(missing)} is missing (create it first)")
    return {n: found[n] for n in names}


def _resolved(api: Any, spec: Mapping[str, Any]) -> dict[str, Any]:
    refs = spec["task_template"]["ContainerSpec"].get("Secrets") or []
    return with_secret_ids(spec, _secret_ids(api, [r["SecretName"] for r in refs]))


def create_service(ctx: Any, *, spec: Mapping[str, Any], auth: RegistryAuth | None = None) -> str:
    api = ctx.docker().api
    if auth is not None:
        return str(_post_with_auth(ctx, api, "services/create", {}, _resolved(api, spec), auth).get("ID", ""))
    return str(api.create_service(**_resolved(api, spec))["ID"])


def update_service(ctx: Any, *, id: str, version: int, spec: Mapping[str, Any],
                   auth: RegistryAuth | None = None) -> None:
    api = ctx.docker().api
    if auth is not None:
        _post_with_auth(ctx, api, f"services/{id}/update", {"version": version}, _resolved(api, spec), auth)
        return
    api.update_service(id, version, **_resolved(api, spec))


def service_body(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The ServiceSpec docker-py's create_service/update_service send for `ServiceConfig.api_kwargs` output."""
    keys = {"name": "Name", "labels": "Labels", "task_template": "TaskTemplate", "mode": "Mode",
            "update_config": "UpdateConfig", "rollback_config": "RollbackConfig", "endpoint_spec": "EndpointSpec"}
    return {keys[k]: v for k, v in kwargs.items() if k in keys and v is not None}


def _post_with_auth(ctx: Any, api: Any, path: str, query: Mapping[str, Any], kwargs: Mapping[str, Any],
                    auth: RegistryAuth) -> dict[str, Any]:
    config, hidden = auth_config(auth, registry_secret_value(ctx))
    redact = make_redactor(hidden) if hidden else str
    header = base64.urlsafe_b64encode(json.dumps(config).encode("ascii")).decode("ascii")  # docker-py's encoding
    url = f"{api.base_url}/v{api.api_version}/{path}"
    resp = api.post(url, params=dict(query), json=service_body(kwargs), headers={"X-Registry-Auth": header},
                    timeout=60)
    if resp.status_code >= 400:
        why = redact(" ".join(resp.text.split())[:300])
        raise StepFailed(f"{path.split('/')[0]} {path.rsplit('/', 1)[-1]} failed: HTTP {resp.status_code} {why}")
    return resp.json() if resp.content else {}


def running_new(tasks: Sequence[Mapping[str, Any]], config_hash: str) -> int:
    """Tasks running the new version: their container spec carries its config hash (an UpdateStatus read right
    after the update call may still be the previous update's "completed")."""
    return sum(1 for t in tasks if (t.get("Status") or {}).get("State") == "running"
               and ((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels", {}).get(LABEL_CONFIG_HASH)
               == config_hash)


def _running(api: Any, service: str, config_hash: str) -> int:
    return running_new(api.tasks(filters={"service": service, "desired-state": "running"}), config_hash)


def converge_state(attrs: Mapping[str, Any], config_hash: str, running: int, replicas: int) -> str:
    """Pure: "done", "wait" or "failed: <why>" from one inspect of the service and its running task count."""
    update = attrs.get("UpdateStatus") or {}
    state = str(update.get("State", ""))
    labels = (attrs.get("Spec") or {}).get("Labels") or {}
    if state == "rollback_started":
        return "wait"  # the old version is coming back: the run fails once it has
    if state in FAILED_STATES:
        why = " ".join(str(update.get("Message", "")).split())[:300]
        return f"failed: the update {state.replace('_', ' ')}" + (f" ({why})" if why else "")
    if labels.get(LABEL_CONFIG_HASH) != config_hash:
        return "failed: the service no longer carries the new config (changed by someone else?)"
    if state in ("", "completed") and running >= replicas:
        return "done"
    return "wait"


def _poll(ctx: Any, verdict_of: Callable[..., str], *, service: str, config_hash: str, replicas: int,
          label: str, timeout: float, doing: str, version: str, on_failure: str = "") -> None:
    """Poll the service (bounded) until `verdict_of(attrs, config_hash, running, replicas)` says done or failed:
    the one loop behind a rollout's and a rollback's wait. `version`: what the replicas should run."""
    api = ctx.docker().api
    deadline = time.monotonic() + timeout
    with ctx.progress(f"{label}: {doing} {replicas} replicas", limit=timeout) as progress:
        while True:
            running = _running(api, service, config_hash)
            verdict = verdict_of(api.inspect_service(service), config_hash, running, replicas)
            if verdict == "done":
                return
            if verdict.startswith("failed: "):
                raise StepFailed(f"{label}: {verdict.removeprefix('failed: ')}{on_failure}")
            progress.update(f"{label}: {running}/{replicas} replicas running {version}")
            if time.monotonic() >= deadline:
                raise StepFailed(f"{label}: {running}/{replicas} replicas ran {version} within {timeout:g}s")
            time.sleep(POLL)


def wait_converged(ctx: Any, *, service: str, config_hash: str, replicas: int, label: str, timeout: float) -> None:
    _poll(ctx, converge_state, service=service, config_hash=config_hash, replicas=replicas, label=label,
          timeout=timeout, doing="rolling out", version="the new version",
          on_failure="; the old version keeps running")


def rollback_service(ctx: Any, *, id: str, version: int) -> None:
    """`docker service rollback`: POST /services/{id}/update?version=N&rollback=previous with the current spec
    as the body (the engine takes PreviousSpec). A version other than the planned one: changed meanwhile."""
    api = ctx.docker().api
    attrs = api.inspect_service(id)
    now = int((attrs.get("Version") or {}).get("Index", 0))
    if now != version:
        raise StepFailed(f"service {id[:12]} changed since it was read (version {version} → {now}): run again")
    url = f"{api.base_url}/v{api.api_version}/services/{id}/update"
    resp = api.post(url, params={"version": version, "rollback": "previous"}, json=attrs["Spec"], timeout=60)
    if resp.status_code >= 400:
        why = " ".join(resp.text.split())[:300]
        raise StepFailed(f"rolling service {id[:12]} back failed: HTTP {resp.status_code} {why}")


def wait_rolled_back(ctx: Any, *, service: str, config_hash: str, replicas: int, label: str,
                     timeout: float) -> None:
    _poll(ctx, rollback_state, service=service, config_hash=config_hash, replicas=replicas, label=label,
          timeout=timeout, doing="rolling back", version="the previous spec")


SERVICE_HANDLERS: dict[str, Callable[..., Any]] = {
    "secret.create": create_secret, "secret.remove": remove_secret,
    "service.create": create_service, "service.update": update_service, "service.rollback": rollback_service,
}
