"""`validate` and `render`: read-only commands that load, check and show; they touch no host."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from invoke.context import Context

from provision.build import NEVER_SENT
from provision.cli.common import Options, dockyard_task, emit_json, load, options
from provision.errors import InputError, Problem
from provision.secrets import SecretSource

__all__ = ["render", "validate"]


def _playbook_files(opts: Options) -> list[Path]:
    # deferred: pydantic loads when a command runs, not for `dockyard --help`
    from provision.playbook import find_playbooks, resolve_playbook

    if opts.env or opts.playbook:
        return [resolve_playbook(opts.env, opts.playbook, opts.root)]
    files = find_playbooks(opts.root / "playbooks")
    if not files:
        raise InputError.single(f"no playbooks found in {opts.root / 'playbooks'} (expected *.yml files)")
    return files


def _dial_address(pb: Any) -> str:
    if pb.ssh.host:
        return pb.ssh.host
    if pb.provider == "existing":
        return pb.host.address
    return "<public ip>" if pb.provider == "aws" else "<sandbox>"


def describe(pb: Any) -> dict[str, Any]:
    """The resolved plan of one playbook: what host, reached how, running which apps."""
    host: dict[str, Any] = {"provider": pb.provider}
    if pb.provider == "aws":
        host |= {"region": pb.host.region or "(from the AWS environment)", "instance_type": pb.host.instance_type,
                 "image": pb.host.image, "volume_gb": pb.host.volume_gb,
                 "ssh_from": [str(n) for n in pb.host.ssh_from or ()], "open_ports": list(pb.host.open_ports)}
    elif pb.provider == "existing":
        host["address"] = pb.host.address
    host["ssh"] = f"{pb.ssh_user}@{_dial_address(pb)}:{pb.ssh.port}" + (f" via {pb.ssh.jump}" if pb.ssh.jump else "")
    apps: dict[str, Any] = {}
    for name, app in pb.apps.items():
        apps[name] = {
            "source": (f"image {app.image} (pull: {app.pull or 'missing'})" if app.image is not None else
                       f"template {app.template}" if app.template else f"dockerfile {app.dockerfile}"),
            "context": str(pb.app_context(name)),
            "port": app.port,
            "publish": None if app.publish is None else
            f"{app.publish.host_ip or '0.0.0.0'}:{app.publish.host_port}",
            "healthcheck": None if app.healthcheck is None else
            (f"http {app.healthcheck.http}" if app.healthcheck.http else "cmd " + " ".join(app.healthcheck.cmd)),
            "memory": app.memory, "cpus": app.cpus, "restart": app.restart,
            "env": sorted(app.env), "secrets": list(app.secrets), "volumes": dict(app.volumes),
            "reach": list(app.reach),
        }
    return {"file": str(pb.source), "project": pb.project, "environment": pb.environment, "host": host,
            "engine": {"source": pb.engine.source, "daemon": pb.engine.daemon, "users": list(pb.engine.users)},
            "apps": apps}


def _check_renders(pb: Any) -> list[Problem]:
    # deferred: pydantic loads when a command runs, not for `dockyard --help`
    from provision.render import render_dockerfile

    problems: list[Problem] = []
    for name in pb.apps:
        if pb.apps[name].image is not None:  # prebuilt: nothing to render
            continue
        try:
            render_dockerfile(pb, name)
        except InputError as exc:
            problems.extend(exc.problems)
    return problems


def _missing_secrets(pb: Any) -> dict[str, list[str]]:
    source = SecretSource(pb)
    # deferred: pydantic loads when a command runs, not for `dockyard --help`
    from provision.deploy_images import registry_secrets

    return {name: missing for name, app in pb.apps.items()
            if (missing := list(source.missing([*app.secrets, *registry_secrets(pb, [name])])))}


def context_warnings(pb: Any) -> list[str]:
    """Apps whose build context holds the playbook's own directory (`context: .`, the default): its .env and
    .dockyard/ keys sit there. dockyard never sends those, but everything else there lands in the image."""
    here = pb.base_dir.resolve()
    out = []
    for name in pb.apps:
        if pb.apps[name].image is not None:  # prebuilt: no build context
            continue
        context = pb.app_context(name)
        if here == context or here.is_relative_to(context):
            what = "is the playbook's own directory" if here == context else "contains the playbook's directory"
            out.append(f"app {name}: the build context {context} {what}; dockyard never sends "
                       f"{', '.join(NEVER_SENT)}, but every other file there goes into the image: put the "
                       f"app's sources in a subdirectory and set `context:` to it (e.g. context: ./{name})")
    return out


def _print_plan(doc: dict[str, Any], warnings: dict[str, list[str]]) -> None:
    host = doc["host"]
    print(f"{doc['file']}: {doc['project']}/{doc['environment']}  provider {host['provider']}")
    if host["provider"] == "aws":
        print(f"  host    {host['instance_type']} {host['image']} in {host['region']}, {host['volume_gb']} GB, "
              f"ssh from {', '.join(host['ssh_from'])}, open {', '.join(map(str, host['open_ports'])) or '-'}")
    elif host["provider"] == "existing":
        print(f"  host    {host['address']}")
    print(f"  ssh     {host['ssh']}")
    daemon = ", ".join(sorted(doc["engine"]["daemon"])) or "defaults"
    print(f"  engine  {doc['engine']['source']}; daemon.json: {daemon}")
    if not doc["apps"]:
        print("  apps    (none)")
    for name, app in doc["apps"].items():
        bits = [app["source"]]
        if app["port"]:
            bits.append(f"port {app['port']}" + (f" -> {app['publish']}" if app["publish"] else ""))
        if app["healthcheck"]:
            bits.append(f"health {app['healthcheck']}")
        if app["volumes"]:
            bits.append("volumes " + ", ".join(f"{k}:{v}" for k, v in app["volumes"].items()))
        if app["secrets"]:
            bits.append("secrets " + ", ".join(app["secrets"]))
        print(f"  app     {name:<12} " + "; ".join(bits))
    for text in doc.get("warnings", ()):
        print(f"  warning: {text}", file=sys.stderr)
    for app_name, names in warnings.items():
        print(f"  warning: app {app_name}: secret {', '.join(names)} not set in the environment or .env "
              "(deploy will refuse)", file=sys.stderr)


@dockyard_task(help={})
def validate(c: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
             verbose: bool = False) -> None:
    """Check playbooks (all of playbooks/*.yml, or one) and print the resolved hosts and apps."""
    opts = options(c, env, playbook, json, verbose)
    problems: list[Problem] = []
    docs: list[dict[str, Any]] = []
    # deferred: pydantic loads when a command runs, not for `dockyard --help`
    from provision.playbook import check_contexts, load_playbook

    for path in _playbook_files(opts):
        try:
            pb = load_playbook(path)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        render_problems = check_contexts(pb) or _check_renders(pb)
        problems.extend(render_problems)
        if render_problems:
            continue
        doc = describe(pb)
        doc["missing_secrets"] = _missing_secrets(pb)
        doc["warnings"] = context_warnings(pb)
        docs.append(doc)
    if problems:
        raise InputError(problems)
    if opts.json:
        emit_json({"ok": True, "playbooks": docs})
        return
    for doc in docs:
        _print_plan(doc, doc["missing_secrets"])
    print(f"{len(docs)} playbook(s) valid")


@dockyard_task(help={"app": "the app whose Dockerfile to print (default: all apps)"}, iterable=["app"])
def render(c: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
           verbose: bool = False, app: list[str] | None = None) -> None:
    """Print the rendered Dockerfile of an app (or of every app)."""
    # deferred: pydantic loads when a command runs, not for `dockyard --help`
    from provision.render import render_dockerfile

    opts = options(c, env, playbook, json, verbose)
    pb = load(opts)
    names = list(app or [n for n in pb.apps if pb.apps[n].image is None])  # image apps have no Dockerfile
    unknown = [n for n in names if n not in pb.apps]
    if unknown:
        raise InputError.single(f"no app named {', '.join(map(repr, unknown))}; the playbook has: "
                                f"{', '.join(pb.apps) or '(none)'}", file=pb.source, key_path="apps")
    rendered = {name: render_dockerfile(pb, name) for name in names}
    if opts.json:
        emit_json({"ok": True, "apps": {name: {"dockerfile": r.text} for name, r in rendered.items()}})
        return
    for name, result in rendered.items():
        if len(rendered) > 1:
            print(f"# ---- app {name} ----")
        sys.stdout.write(result.text if result.text.endswith("\n") else result.text + "\n")
