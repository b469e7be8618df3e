"""The deploy phase: build and run the playbook's apps on the host, over its one SSH connection.

`deploy_host(pb, ...) -> provision.deploy.DeployResult` is the core `up` chains after provision and setup (pass
the HostInfo / Remote); `app_urls(pb, host)` says where the published apps answer.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from provision.changes import Status
from provision.errors import InputError
from provision.phases.host import host_label, remote_for
from provision.phases.lock import LockRequest, holding_lock


def deploy_host(
    pb: Any,
    *,
    check: bool = False,
    diff: bool = False,
    reporter: Any = None,
    host: Any = None,
    remote: Any = None,
    only: list[str] | tuple[str, ...] = (),
    prune: bool = False,
    prune_volumes: bool = False,
    verbose: bool = False,
    lock: LockRequest | None = None,
) -> Any:
    """Deploy the playbook's apps; returns provision.deploy.DeployResult (its `.recap` for the report).

    `lock`: hold the host's deploy lock (and write the audit entry) for the run; `up` passes None (it holds the
    lock itself around setup and deploy). Check mode takes no lock."""
    # deferred: paramiko, pydantic, rich load when a command runs, not for `dockyard --help`
    from provision.deploy import deploy as run_deploy
    from provision.deploy import desired_apps, secret_source, select
    from provision.report import Reporter

    reporter = reporter or Reporter()
    if prune_volumes and not prune:
        raise InputError.single("--prune-volumes only makes sense with --prune", pb.source)
    selection = select(pb, only)
    secrets = secret_source(pb)
    own = remote is None
    if remote is None:
        remote = remote_for(pb, host)  # not connected yet
    label = host_label(pb)
    try:
        # every input problem (templates, contexts, secrets) is found before the host is touched
        desired = desired_apps(pb, selection.apps, secrets, remote.user)
        with reporter.progress(f"[{label}] connecting to {remote.target.label}"):
            remote.open()
        locked = holding_lock(pb, remote, lock, reporter) if lock is not None and not check else nullcontext()
        with locked as held:
            result = run_deploy(pb, remote, reporter=reporter, host=label, only=only, check=check, diff=diff,
                                prune=prune, prune_volumes=prune_volumes, verbose=verbose, secrets=secrets,
                                desired=desired)
            if held is not None:
                held.apps = list(selection.apps)
                held.releases = sorted({d.container.release for d in desired if d.container.release})
                held.finish(failed=result.failed, changed=result.recap.count(Status.CHANGED))
            return result
    finally:
        if own:
            remote.close()


def app_urls(pb: Any, host: Any) -> dict[str, str]:
    out = {}
    for name, app in pb.apps.items():
        if app.domains and pb.proxy is not None:
            out[name] = _routed_url(pb, app.domains[0], host)
            continue
        if app.publish is None:
            continue
        if host is not None and host.published:
            port = host.published.get(app.publish.host_port)
            if port:
                out[name] = f"http://127.0.0.1:{port}/"
            continue
        address = app.publish.host_ip or (getattr(host, "public_address", None) or pb.host.address or "HOST")
        out[name] = f"http://{address}:{app.publish.host_port}/"
    return out


def _routed_url(pb: Any, domain: str, host: Any) -> str:
    """A routed app's URL: its first domain on the proxy's port (https unless tls: off). On the sandbox the
    proxy's port is mapped to a 127.0.0.1 port, and the name must resolve there (e.g. an /etc/hosts line)."""
    tls = pb.proxy.tls != "off"
    binding = pb.proxy.https if tls else pb.proxy.http
    scheme, default = ("https", 443) if tls else ("http", 80)
    port = binding.host_port
    if host is not None and host.published and port in host.published:
        return f"{scheme}://{domain}:{host.published[port]}/ (resolve {domain} to 127.0.0.1)"
    return f"{scheme}://{domain}/" if port == default else f"{scheme}://{domain}:{port}/"


def deploy_swarm_env(
    pb: Any,
    *,
    check: bool = False,
    diff: bool = False,
    reporter: Any = None,
    only: list[str] | tuple[str, ...] = (),
    prune: bool = False,
    verbose: bool = False,
    lock: LockRequest | None = None,
    remotes: list[tuple[str, Any]] | None = None,
) -> Any:
    """engine.mode swarm: the apps as services over every host of the environment (images on each, services
    through the first, which also holds the lock); returns provision.deploy_swarm.SwarmDeployResult.
    `remotes`: (label, Remote) pairs already made (and closed) by the caller, e.g. `up`'s, in the
    environment's order."""
    # deferred: paramiko, pydantic, rich load when a command runs, not for `dockyard --help`
    from provision.deploy import desired_apps, secret_source, select
    from provision.deploy_swarm import deploy_swarm, refuse_unsupported
    from provision.phases.host import environment_hosts
    from provision.report import Reporter

    reporter = reporter or Reporter()
    selection = select(pb, only)
    refuse_unsupported(pb, selection.apps, prune=prune)
    secrets = secret_source(pb)
    own = remotes is None
    hosts = [(label, remote_for(pb, info)) for label, info in environment_hosts(pb)] if remotes is None else remotes
    try:
        desired = desired_apps(pb, selection.apps, secrets, hosts[0][1].user)
        for label, remote in hosts:
            with reporter.progress(f"[{label}] connecting to {remote.target.label}"):
                remote.open()
        locked = holding_lock(pb, hosts[0][1], lock, reporter) if lock is not None and not check else nullcontext()
        with locked as held:
            result = deploy_swarm(pb, hosts, desired, secrets=secrets, reporter=reporter, check=check, diff=diff,
                                  verbose=verbose)
            if held is not None:
                held.apps = list(selection.apps)
                held.finish(failed=result.failed, changed=sum(r.count(Status.CHANGED) for r in result.recaps))
            return result
    finally:
        if own:
            for _, remote in hosts:
                remote.close()
