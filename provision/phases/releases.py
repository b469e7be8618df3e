"""`releases` and `rollback`: the host work. A rollback holds the deploy lock (and writes its audit entry) like a
deploy, reads the app's kept releases from the host and runs provision.plan.rollback's plan through the same
executor (and proxy switch) as a deploy."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from provision.changes import HostRecap, Status
from provision.errors import InputError
from provision.phases.host import host_label, remote_for
from provision.phases.lock import LockRequest, holding_lock
from provision.spec import Playbook


@dataclass
class RollbackResult:
    recap: HostRecap
    app: str
    release: str  # the release now serving (or that would, with --check)

    @property
    def failed(self) -> bool:
        return self.recap.failed


def _app(pb: Playbook, app: str) -> None:
    if app not in pb.apps:
        raise InputError.single(f"no app {app!r} in the playbook (apps: {', '.join(pb.apps) or 'none'})",
                                pb.source, "apps")


def list_releases(pb: Playbook, app: str | None = None) -> list[Any]:
    """Every kept release of the playbook's apps (or of `app`), newest first per app."""
    # deferred: the facts and releases modules load the Docker-side code only when a command runs
    from provision.facts.apps import gather_remote
    from provision.releases import releases_of

    if app is not None:
        _app(pb, app)
    with remote_for(pb) as remote:
        facts = gather_remote(remote, pb.project, pb.environment)
    names = [app] if app else sorted(set(pb.apps) | set(facts.apps_seen))
    return [r for name in names for r in releases_of(facts, name)]


def rollback(pb: Playbook, app: str, *, to: str | None = None, reporter: Any, check: bool = False,
             lock: LockRequest | None = None) -> RollbackResult:
    # deferred: the executor, facts and plans load only when a command runs
    from provision.appops import DeployContext
    from provision.commands.health import health_for
    from provision.facts.apps import gather_remote
    from provision.plan.containers import NO_HEALTHCHECK_SETTLE
    from provision.plan.proxy import desired_proxy, seed_routes
    from provision.plan.rollback import plan_rollback
    from provision.proxyops import ProxyState
    from provision.releases import releases_of, rollback_target
    from provision.runner import Runner

    _app(pb, app)
    spec = pb.apps[app]
    health = health_for(spec)
    label = host_label(pb)
    with remote_for(pb) as remote:
        remote.open()
        locked = holding_lock(pb, remote, lock, reporter) if lock is not None and not check else nullcontext()
        with locked as held:
            facts = gather_remote(remote, pb.project, pb.environment)
            releases = releases_of(facts, app)
            target = rollback_target(releases, to, source=pb.source, app=app)
            by_id = {c.id: c for c in facts.containers_of(app)}
            current = next((by_id[r.container_id] for r in releases if r.current), None)
            ctx = DeployContext(remote=remote, reporter=reporter, host=label)
            proxy = desired_proxy(pb)
            if proxy is not None:
                ctx.proxy = ProxyState(proxy.container.name, proxy.settings, seed_routes(facts))
            runner = Runner(label, ctx, check=check, reporter=reporter)
            changes = [] if target.current else plan_rollback(
                app, by_id[target.container_id], current, wait=health.wait if health else NO_HEALTHCHECK_SETTLE,
                drain=spec.drain, proxy=proxy is not None)
            if target.current and reporter is not None:
                reporter.warn(f"release {target.release} of {app} is already the current one: nothing to do")
            runner.run_task(f"rollback {app} to {target.release}", changes)
            if held is not None:
                held.apps = [app]
                held.releases = [target.release]
                held.finish(failed=runner.failed, changed=runner.recap.count(Status.CHANGED))
            return RollbackResult(runner.recap, app, target.release)
