"""Pure planning of an app's container: (desired app, observed facts) -> Changes, in the order deploy applies
them. Never touches the network.

- config hash equal and running → ok (older releases beyond `keep_releases` and leftovers are tidied);
- otherwise a new release rolls out: the release command (if any) runs in a one-off container; the new
  container starts and must become healthy (a routed app's domains then switch to it through the proxy and
  the old one drains; a published port goes to it only after a port-less candidate proved healthy); on
  failure the new one is removed and the old one keeps serving;
- the replaced container is STOPPED, not removed: it is a release `rollback` can start again. Stopped
  releases beyond `keep_releases` (the current one counts) are removed.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from provision.changes import Change, Step
from provision.commands.docker import ROLE_CANDIDATE, ROLE_RELEASE, ContainerConfig
from provision.facts.apps import AppFacts, ContainerFact
from provision.ops import Argv, EngineCall, Guarded, Op, SecretFile, Upload, Wait, digest, params
from provision.plan.desired import DesiredApp
from provision.plan.proxy import route_switch

NO_HEALTHCHECK_SETTLE = 2.0  # without a health check: still running this long after start = up


def _publish_conflicts(cfg: ContainerConfig, container: ContainerFact) -> bool:
    if cfg.publish is None or not container.running:
        return False
    host_ip, host_port = cfg.publish
    return any(
        p.host_port == host_port and (not host_ip or p.host_ip in ("", "0.0.0.0", "::", host_ip))
        for p in container.ports
    )


def remove_container(container_id: str) -> EngineCall:
    return EngineCall("container.remove", params(id=container_id))


def env_file_steps(cfg: ContainerConfig) -> list[Step]:
    """The env file of the app's secrets: a 0700 directory, then the file (0600). The op names the secrets
    and carries a digest of their values (config_hash covers the same digests); the executor reads them."""
    assert cfg.env_file
    directory = cfg.env_file.rsplit("/", 1)[0]
    values_digest = digest(repr(cfg.secret_digests).encode())
    return [
        Step(f"create {directory} (0700)", argv=("mkdir", "-p", "-m", "700", directory)),
        Step(f"make {directory} 0700", argv=("chmod", "700", directory)),
        Step(f"upload env file {cfg.env_file} (0600; {len(cfg.secrets)} secrets)",
             Upload(cfg.env_file, SecretFile(cfg.secrets, values_digest), mode=0o600)),
    ]


def _undo_start(stop_first: Sequence[str]) -> tuple[Op, ...]:
    return tuple(EngineCall("container.start", params(id=cid)) for cid in stop_first)


def _health_wait(cfg: ContainerConfig, container: str) -> Wait:
    limit = cfg.health.wait if cfg.health is not None else NO_HEALTHCHECK_SETTLE
    return Wait("container.healthy", params(container=container, health=cfg.health, label=cfg.app), limit)


def _prepare(cfg: ContainerConfig, old: Sequence[ContainerFact]) -> list[Op]:
    """A same-name (same config, unhealthy) container is renamed aside; a leftover of an interrupted run (the
    container or its candidate) is removed."""
    ops: list[Op] = [EngineCall("container.rename", params(id=o.id, name=f"{o.name}-prev-{o.id[:12]}"))
                     for o in old if o.name == cfg.name]
    ops.append(EngineCall("container.remove", params(id=cfg.name, ignore_errors=True)))
    return ops


def _create(cfg: ContainerConfig, *, candidate: bool = False) -> list[Op]:
    name = cfg.candidate_name if candidate else cfg.name
    aliases = () if candidate else (cfg.app,)
    return [Argv(cfg.create_argv(candidate=candidate)),
            *(EngineCall("container.connect", params(container=name, network=n, aliases=aliases))
              for n in cfg.extra_networks)]


def roll_out(cfg: ContainerConfig, old: Sequence[ContainerFact], stop_first: Sequence[str]) -> Guarded:
    """Every decision of a roll-out, as data: the new container is created, joined to the networks it may
    reach; the old ones publishing its host port stop; it starts and must become healthy; a routed app's
    domains then switch to it (one atomic proxy reload). Undo: remove the new one, start the ones stopped for
    the port; the failure shows the new one's (redacted) log tail. A version that never becomes healthy is
    never routed to."""
    ops = _prepare(cfg, old) + _create(cfg)
    ops += [EngineCall("container.stop", params(id=cid, timeout=10)) for cid in stop_first]
    ops.append(EngineCall("container.start", params(id=cfg.name)))
    ops.append(_health_wait(cfg, cfg.name))
    if cfg.upstream:
        ops.append(route_switch(cfg.app, cfg.domains, cfg.upstream))
    undo = (remove_container(cfg.name), *_undo_start(stop_first))
    kept = ", ".join(o.name for o in old) or "none"
    return Guarded(tuple(ops), undo, note=f"removed it, kept the old container ({kept})", logs_of=cfg.name,
                   redact=cfg.secrets)


def roll_out_published(cfg: ContainerConfig, old: Sequence[ContainerFact], stop_first: Sequence[str]) -> Guarded:
    """A published port belongs to one container at a time, and a broken version must never take it: the new
    version first runs as a candidate (same config, no published port, no alias) and must become healthy;
    only then the real container is created, the old one stops, the new one starts on the port and must be
    healthy again; the candidate goes. The gap (connections refused) is the old one's stop plus the new one's
    start-up: `domains` behind the proxy have none."""
    ops = _prepare(cfg, old)
    ops.append(EngineCall("container.remove", params(id=cfg.candidate_name, ignore_errors=True)))
    ops += _create(cfg, candidate=True)
    ops.append(EngineCall("container.start", params(id=cfg.candidate_name)))
    ops.append(_health_wait(cfg, cfg.candidate_name))
    ops += _create(cfg)
    ops += [EngineCall("container.stop", params(id=cid, timeout=10)) for cid in stop_first]
    ops.append(EngineCall("container.start", params(id=cfg.name)))
    ops.append(_health_wait(cfg, cfg.name))
    ops.append(remove_container(cfg.candidate_name))
    undo = (remove_container(cfg.candidate_name), remove_container(cfg.name), *_undo_start(stop_first))
    kept = ", ".join(o.name for o in old) or "none"
    # the log tail shown is the candidate's: a broken version fails there (the real one runs the same config)
    return Guarded(tuple(ops), undo, note=f"removed it; the old container ({kept}) kept the port",
                   logs_of=cfg.candidate_name, redact=cfg.secrets)


def _without_switch(guarded: Guarded) -> Guarded:
    """A routed app deployed with no proxy in this run (cannot happen from a valid playbook; kept safe)."""
    ops = tuple(op for op in guarded.ops if not (isinstance(op, EngineCall) and op.op == "proxy.route"))
    return Guarded(ops, guarded.on_failure, note=guarded.note, logs_of=guarded.logs_of, redact=guarded.redact)


def _by_age(containers: Sequence[ContainerFact]) -> list[ContainerFact]:
    return sorted(containers, key=lambda c: (c.created, c.id), reverse=True)


def _tidy(keep_stopped: Sequence[ContainerFact], stopped: Sequence[ContainerFact], budget: int) -> list[Step]:
    """Remove stopped releases beyond `budget` (newest kept first); `keep_stopped` count first."""
    kept = len(keep_stopped)
    steps: list[Step] = []
    for c in _by_age(stopped):
        if kept < budget:
            kept += 1
            continue
        steps.append(Step(f"remove old release {c.release or c.name} ({c.name}, {c.state})", remove_container(c.id)))
    return steps


def plan_container(desired: DesiredApp, facts: AppFacts, *, proxy: bool = False) -> list[Change]:
    """`proxy`: this deploy runs a front proxy (route switches and unroutes are planned only then)."""
    cfg = desired.container
    want = cfg.config_hash
    mine = facts.containers_of(desired.name)
    seen = [c for c in mine if c.role not in (ROLE_CANDIDATE, ROLE_RELEASE)]
    leftovers = [c for c in mine if c.role in (ROLE_CANDIDATE, ROLE_RELEASE)]
    budget = max(desired.keep_releases - 1, 0)  # stopped releases kept beside the current one
    keep = next((c for c in seen if c.config_hash == want and c.running and c.health != "unhealthy"), None)
    target = container_target(desired.name)
    if keep is not None:
        extra_running = [c for c in seen if c.running and c.id != keep.id]
        stopped = [c for c in seen if not c.running]
        steps = [Step(f"remove leftover {c.name} ({c.state})", remove_container(c.id)) for c in leftovers]
        steps += [Step(f"stop {c.name} (an earlier release beside the current one)", stop(c.id))
                  for c in extra_running[:budget]]
        steps += [Step(f"remove {c.name} (beyond keep_releases)", remove_container(c.id))
                  for c in extra_running[budget:]]
        steps += _tidy(extra_running[:budget], stopped, budget)
        if not steps:
            return []
        return [Change(target, "cleanup", "leftovers or releases beyond keep_releases", tuple(steps),
                       data={"container": keep.name})]
    old = [c for c in seen if c.running]
    stopped = [c for c in seen if not c.running]
    stop_first = [c.id for c in old if _publish_conflicts(cfg, c)]
    if not seen:
        action, reason = "create", "absent"
    elif any(c.config_hash == want for c in seen):
        action, reason = "replace", "not running or unhealthy"
    else:
        running_hash = old[0].config_hash[:12] if old else "none running"
        action, reason = "replace", f"config hash differs ({running_hash} → {want[:12]})"
    # the old running ones become stopped releases: they count against the budget first (newest first)
    keep_old = _by_age(old)[:budget]
    steps: list[Step] = [Step(f"remove leftover {c.name}", remove_container(c.id)) for c in leftovers]
    steps += _tidy(keep_old, [c for c in stopped if c.name != cfg.name], budget)
    if cfg.secrets and cfg.env_file:
        steps += env_file_steps(cfg)
    if cfg.release_command:
        steps.append(Step(f"run the release command `{shlex.join(cfg.release_command)}` in a one-off container "
                          f"of {cfg.image}", EngineCall("container.run_once", params(
                              argv=cfg.release_argv(), label=cfg.app, name=f"{cfg.name}-release",
                              redact=cfg.secrets))))
    if stop_first:
        steps.append(Step(f"start {cfg.candidate_name} (no published port), wait until healthy; then swap the "
                          f"port from the old container to {cfg.name}", roll_out_published(cfg, old, stop_first)))
    else:
        routed = f", then route {', '.join(cfg.domains)} to it" if cfg.upstream and proxy else ""
        rollout = roll_out(cfg, old, stop_first) if proxy or not cfg.upstream else _without_switch(
            roll_out(cfg, old, stop_first))
        steps.append(Step(f"start {cfg.name} from {cfg.image}, wait until healthy{routed}", rollout))
    draining = tuple(u for c in old if (u := c.upstream))
    if proxy and draining and cfg.upstream:
        steps.append(Step(f"drain the old container (up to {desired.drain:g}s)", Wait(
            "proxy.drained", params(upstreams=draining, label=cfg.app), desired.drain)))
    elif proxy and draining:
        steps.append(Step(f"stop routing {cfg.app} through the proxy", EngineCall("proxy.unroute", params(
            app=cfg.app))))
    for c in old:
        if c in keep_old:
            steps.append(Step(f"stop old container {c.name} (kept as release {c.release or '-'} for rollback)",
                              stop(c.id)))
        else:
            steps.append(Step(f"remove old container {c.name}", remove_container(c.id)))
    if proxy and draining and cfg.upstream:
        steps.append(Step("forget the drained container in the proxy's config", EngineCall("proxy.sync", params(
            app=cfg.app))))
    before = "".join(c.config_text or f"config hash: {c.config_hash[:12]}\n" for c in old) or None
    return [
        Change(
            target,
            action,
            reason,
            tuple(steps),
            before=before,
            after=cfg.describe(),
            data={
                "container": cfg.name,
                "config_hash": want,
                "image": cfg.image,
                "release": cfg.release,
                "create": list(cfg.create_argv()),
                **({"route": {"domains": list(cfg.domains), "upstream": cfg.upstream}} if cfg.upstream else {}),
            },
        )
    ]


def stop(container_id: str, timeout: int = 10) -> EngineCall:
    return EngineCall("container.stop", params(id=container_id, timeout=timeout))


def container_target(app: str) -> str:
    """The target name of an app's container changes (deploy's and rollback's)."""
    return f"app:{app}:container"
