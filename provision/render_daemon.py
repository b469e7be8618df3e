"""The engine's daemon.json: dockyard's defaults (templates/engine/daemon.json.j2, rendered like any template)
with the playbook's `engine.daemon` deep-merged over them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from provision.errors import InputError
from provision.render import DAEMON_TEMPLATE, render_template
from provision.spec import EngineSpec, Playbook


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged onto `base`: mappings merge key by key, anything else replaces; None deletes a key."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def render_daemon_json(engine: EngineSpec, playbook: Playbook | None = None) -> str:
    """dockyard's daemon.json defaults (templates/engine/daemon.json.j2) with `engine.daemon` deep-merged
    over them (a `null` value removes a default). Pretty JSON, sorted keys, trailing newline.

    `hosts` is refused: a `tcp://` listener would expose the Docker API (root on the host) to the network
    (dockyard talks to the engine over SSH), and any `hosts` in daemon.json conflicts with the `-H fd://`
    flag of the distributions' docker.service, so dockerd would not start.
    """
    file = playbook.source if playbook is not None else None
    text = render_template(playbook, DAEMON_TEMPLATE, {}, what=f"template {DAEMON_TEMPLATE!r}", app_name=None,
                   var_hint="engine.daemon", syntax_key="engine.daemon")
    try:
        defaults = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError.single(f"template {DAEMON_TEMPLATE!r} did not render JSON: {exc}", file,
                                "engine.daemon") from None
    if not isinstance(defaults, dict):
        raise InputError.single(f"template {DAEMON_TEMPLATE!r} must render a JSON object", file,
                                "engine.daemon")
    merged = deep_merge(defaults, engine.daemon)
    if "hosts" in merged:
        hosts = merged["hosts"]
        listed = [hosts] if isinstance(hosts, str) else list(hosts) if isinstance(hosts, list) else [hosts]
        tcp = [h for h in listed if isinstance(h, str) and h.strip().lower().startswith("tcp://")]
        if tcp:
            msg = (f"refusing a TCP listener for the Docker API ({', '.join(tcp)}): anyone who reaches it is "
                   "root on the host; dockyard talks to the engine over SSH")
        else:
            msg = ("`hosts` in daemon.json conflicts with the -H flag docker.service already passes, and "
                   "dockerd would refuse to start; leave it out (dockyard talks to the engine over SSH)")
        raise InputError.single(msg, file, "engine.daemon.hosts")
    if engine.mode == "swarm" and merged.get("live-restore"):
        # dockerd refuses `swarm init/join` with live-restore on: the default is dropped, a request refused
        if engine.daemon.get("live-restore"):
            raise InputError.single("live-restore is incompatible with engine.mode: swarm (dockerd refuses to "
                                    "join a swarm with it)", file, "engine.daemon.live-restore")
        del merged["live-restore"]
    try:
        return json.dumps(merged, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise InputError.single(f"engine.daemon is not JSON-serialisable: {exc}", file,
                                "engine.daemon") from None
