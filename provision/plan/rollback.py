"""Pure planning of a rollback: start a kept release again through the same health-gated switch a deploy uses.
Never rebuilds, never pulls: the release's stopped container still holds its image, config and env.

- routed (`domains`): start the release, wait until healthy, switch the app's route to it (one proxy reload),
  drain the current one, stop it (kept: a rollback can be rolled forward with `--to`);
- publishing a port: the release's container owns the same port binding, so the current one stops first and
  the release starts (the short gap of any port swap); a release that does not become healthy is stopped and
  the current one started again;
- neither: start the release, wait until healthy, stop the current one.
"""

from __future__ import annotations

from provision.changes import Change, Step
from provision.facts.apps import ContainerFact
from provision.ops import EngineCall, Guarded, Op, Wait, params
from provision.plan.containers import container_target, stop
from provision.plan.proxy import route_switch


def plan_rollback(app: str, target: ContainerFact, current: ContainerFact | None, *, wait: float, drain: float,
                  proxy: bool) -> list[Change]:
    start = EngineCall("container.start", params(id=target.id))
    healthy = Wait("container.healthy", params(container=target.id, health=None, label=app), wait)
    steps: list[Step] = []
    published = bool(target.ports) or bool(current and current.ports)
    if current is not None and published:
        ops: tuple[Op, ...] = (stop(current.id), start, healthy)
        undo: tuple[Op, ...] = (stop(target.id), EngineCall("container.start", params(id=current.id)))
        steps.append(Step(f"stop {current.name}, start {target.name} on its port, wait until healthy",
                          Guarded(ops, undo, note=f"stopped it, started {current.name} again",
                                  logs_of=target.id)))
        return [_change(app, target, current, steps)]
    ops = (start, healthy)
    routed = proxy and target.upstream is not None
    if routed:
        assert target.upstream is not None
        ops += (route_switch(app, target.domains, target.upstream),)
    note = f"stopped it; {current.name} keeps serving" if current else "stopped it"
    steps.append(Step(f"start {target.name} (release {target.release or '-'}), wait until healthy"
                      + (f", then route {', '.join(target.domains)} to it" if routed else ""),
                      Guarded(ops, (stop(target.id),), note=note, logs_of=target.id)))
    if current is not None:
        if routed and current.upstream:
            steps.append(Step(f"drain {current.name} (up to {drain:g}s)", Wait(
                "proxy.drained", params(upstreams=(current.upstream,), label=app), drain)))
        steps.append(Step(f"stop {current.name} (kept as release {current.release or '-'})", stop(current.id)))
        if routed and current.upstream:
            steps.append(Step("forget the drained container in the proxy's config",
                              EngineCall("proxy.sync", params(app=app))))
    return [_change(app, target, current, steps)]


def _change(app: str, target: ContainerFact, current: ContainerFact | None, steps: list[Step]) -> Change:
    return Change(container_target(app), "rollback",
                  f"release {current.release or '-' if current else 'none'} → {target.release or '-'}",
                  tuple(steps), before=current.config_text if current else None, after=target.config_text,
                  data={"container": target.name, "release": target.release,
                        "from": current.release if current else None})
