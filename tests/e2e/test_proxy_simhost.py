"""The front proxy on a host that cannot pull: `dockyard up` on a fresh sim host (stock sshd, no engine, no
registry) with `proxy.image: dockyard/caddy:bookworm`. The proxy image is built on this machine from Debian's
caddy package and shipped over SSH like the base images; a routed app answers by host name over TLS from the
proxy's own CA, verified against what `dockyard proxy-ca` prints; `status` shows the domains and the proxy.

Traffic: only the sim host's SSH and its published proxy ports on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import cli_env, dockyard, explain, json_of, remove_labelled, tasks
from tests.images import image_ref
from tests.simhost import start_simhost, stop_simhost

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

HTTP, HTTPS = 8090, 8443  # the proxy's ports inside the sim host (mapped to 127.0.0.1 ports here)


def tls_get(port: int, host: str, ca_pem: str) -> tuple[int, str]:
    """GET https://host/ on 127.0.0.1:port (SNI and Host = host), trusting only `ca_pem`; bounded retries."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    last: Exception | None = None
    for _ in range(30):
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn = http.client.HTTPSConnection(host, port, timeout=10, context=ctx)
            conn.sock = ctx.wrap_socket(raw, server_hostname=host)
            conn.request("GET", "/", headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        except (OSError, http.client.HTTPException) as exc:
            last = exc
            time.sleep(1)
    raise AssertionError(f"https://{host} on 127.0.0.1:{port} did not answer: {last}")


def test_up_ships_the_debian_caddy_image_and_serves_tls_by_host_name(tmp_path: Path, unique: str) -> None:
    host = start_simhost(f"{unique}-simhost", tmp_path / "simhost", extra_ports=(HTTP, HTTPS))
    env = cli_env()
    playbook = tmp_path / "playbooks" / "proxy.yml"
    try:
        site = tmp_path / "apps" / "site"
        site.mkdir(parents=True)
        (site / "index.html").write_text(f"<h1>docs of {unique}</h1>\n")
        playbook.parent.mkdir()
        playbook.write_text(f"""\
project: {unique}
environment: proxy
provider: existing
host: {{address: sim-host}}
ssh:
  user: {host.user}
  key_file: {host.key_file}
  host: 127.0.0.1
  port: {host.port}
  known_hosts: {tmp_path / 'known_hosts'}
engine:
  source: distro
proxy:
  http: {HTTP}
  https: {HTTPS}
  tls: internal
  image: dockyard/caddy:bookworm
apps:
  docs:
    template: static-site
    context: ../apps/site
    vars: {{base_image: "{image_ref('static')}"}}
    build: local
    port: 8080
    domains: [docs.example.test]
    memory: 64m
""")
        assert host.exec("command -v docker")[0] != 0  # a fresh "VM"
        up = json_of(dockyard(env, "up", "-p", str(playbook), "--json"))
        assert up["ok"] is True and up["failed"] == 0
        code, out = host.exec("docker image inspect -f '{{.Id}}' dockyard/caddy:bookworm")
        assert code == 0, out  # shipped: the sim host has no registry to pull it from
        ca = dockyard(env, "proxy-ca", "-p", str(playbook))
        assert ca.returncode == 0 and ca.stdout.startswith("-----BEGIN CERTIFICATE-----"), explain(ca)
        status, body = tls_get(host.published(HTTPS), "docs.example.test", ca.stdout)
        assert status == 200 and f"docs of {unique}" in body
        shown = dockyard(env, "status", "-p", str(playbook))
        assert shown.returncode == 0, explain(shown)
        rows = [line.split("\t") for line in shown.stdout.splitlines()]
        header = rows[0]
        docs = next(r for r in rows if r[0] == "docs")
        proxy = next(r for r in rows if r[0] == "[proxy]")
        assert docs[header.index("domains")] == "docs.example.test"
        assert proxy[header.index("state")] == "running" and "1 routes" in proxy[header.index("domains")]
        again = json_of(dockyard(env, "up", "-p", str(playbook), "--json"))
        assert again["ok"] is True and again["changed"] == 0, [
            (t["task"], t["status"]) for t in tasks(again) if t["status"] != "ok"]
    finally:
        stop_simhost(host)
        remove_labelled(unique)
