"""`proxy-ca`: print the root certificate of the front proxy's own CA (proxy.tls: internal).

    dockyard proxy-ca -e staging > staging-ca.pem
    curl --cacert staging-ca.pem https://docs.staging.example.com/
"""

from __future__ import annotations

import sys

from invoke.context import Context

from provision.cli.common import dockyard_task, emit_json, load, options

__all__ = ["proxy_ca"]


@dockyard_task(connects=True)
def proxy_ca(ctx: Context, env: str | None = None, playbook: str | None = None, json: bool = False,
             verbose: bool = False) -> None:
    """Print the PEM root certificate of the proxy's local CA (tls: internal), to trust it."""
    # deferred: paramiko, pydantic load when a command runs, not for `dockyard --help`
    from provision.phases.proxy import proxy_ca as read_ca

    opts = options(ctx, env, playbook, json, verbose)
    pem = read_ca(load(opts))
    if opts.json:
        emit_json({"command": "proxy-ca", "certificate": pem})
        return
    sys.stdout.write(pem)
