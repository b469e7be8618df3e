"""Template `django` as a new user runs it: `dockyard up` on a fresh sim host (stock sshd, no engine, no
registry) with an unmodified `django-admin startproject` project + one app with one model (generated here with a
real Django), behind the front proxy with a domain and TLS from the proxy's own CA. The image is built on this
machine (`build: local`) and shipped. Checked through the proxy: the admin's static files (WhiteNoise), the
login page for the domain (ALLOWED_HOSTS), a login POST over HTTPS that passes Django's CSRF checks
(CSRF_TRUSTED_ORIGINS, the proxy's X-Forwarded-Proto) and reaches the database the release command migrated;
then a `deploy` with a new migration applies it (seen with `dockyard exec`).

Traffic: only the sim host's SSH and its published proxy port on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import re
import secrets
import socket
import ssl
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.django_project import add_field, make_project
from tests.e2e.helpers import cli_env, dockyard, explain, json_of, remove_labelled
from tests.images import image_ref
from tests.simhost import start_simhost, stop_simhost

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

HTTP, HTTPS = 8090, 8443  # the proxy's ports inside the sim host (HTTPS mapped to a 127.0.0.1 port here)
DOMAIN = "shop.example.test"


def https(port: int, ca_pem: str, method: str, path: str, headers: dict[str, str] | None = None,
          body: str | None = None) -> tuple[int, dict[str, str], str]:
    """One request to https://DOMAIN{path} on 127.0.0.1:port (SNI and Host = DOMAIN), trusting only `ca_pem`;
    bounded retries while the proxy is not answering yet. Returns (status, headers (Set-Cookie joined), body)."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    last: Exception | None = None
    for _ in range(30):
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn = http.client.HTTPSConnection(DOMAIN, port, timeout=15, context=ctx)
            conn.sock = ctx.wrap_socket(raw, server_hostname=DOMAIN)
            conn.request(method, path, body=body, headers={"Host": DOMAIN, **(headers or {})})
            resp = conn.getresponse()
            got = {k.lower(): v for k, v in resp.getheaders() if k.lower() != "set-cookie"}
            got["set-cookie"] = "; ".join(v for k, v in resp.getheaders() if k.lower() == "set-cookie")
            return resp.status, got, resp.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            last = exc
            time.sleep(1)
    raise AssertionError(f"https://{DOMAIN}{path} on 127.0.0.1:{port} did not answer: {last}")


def test_up_deploys_an_unmodified_startproject_behind_the_proxy_and_a_deploy_runs_its_new_migration(
        tmp_path: Path, unique: str) -> None:
    project, python = make_project(tmp_path)
    host = start_simhost(f"{unique}-simhost", tmp_path / "simhost", extra_ports=(HTTP, HTTPS))
    env = cli_env(SECRET_KEY="django-e2e-" + secrets.token_hex(16))
    playbook = tmp_path / "shop.yml"
    try:
        playbook.write_text(f"""\
project: {unique}
environment: django
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
  web:
    template: django
    context: mysite
    vars: {{base_image: "{image_ref('python')}", workers: 1}}
    build: local
    port: 8000
    domains: [{DOMAIN}]
    secrets: [SECRET_KEY]
    volumes: {{data: /data}}
""")
        up = json_of(dockyard(env, "up", "-p", str(playbook), "--json"))
        assert up["ok"] is True and up["failed"] == 0
        ca = dockyard(env, "proxy-ca", "-p", str(playbook))
        assert ca.returncode == 0 and ca.stdout.startswith("-----BEGIN CERTIFICATE-----"), explain(ca)
        port = host.published(HTTPS)

        status, _, css = https(port, ca.stdout, "GET", "/static/admin/css/base.css")
        assert status == 200 and "body" in css  # WhiteNoise, DEBUG off
        status, headers, page = https(port, ca.stdout, "GET", "/admin/login/")
        assert status == 200, page[:500]  # the domain is in ALLOWED_HOSTS
        cookie = re.search(r"csrftoken=([^;]+)", headers["set-cookie"])
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert cookie and token, headers
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), "username": "nobody",
                                       "password": "wrong", "next": "/admin/"})
        status, _, answer = https(port, ca.stdout, "POST", "/admin/login/", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={cookie.group(1)}",
            "Origin": f"https://{DOMAIN}", "Referer": f"https://{DOMAIN}/admin/login/"})
        # past CSRF (403 otherwise) and into the migrated auth tables: a wrong password, not a server error
        assert status == 200 and "Please enter the correct username and password" in answer, (status, answer[:800])

        add_field(project, python)
        deployed = json_of(dockyard(env, "deploy", "-p", str(playbook), "--json"))
        assert deployed["ok"] is True and deployed["failed"] == 0
        shown = dockyard(env, "exec", "-p", str(playbook), "--app", "web", "--",
                         "python", "manage.py", "showmigrations", "notes")
        assert shown.returncode == 0, explain(shown)
        assert "[X] 0001_initial" in shown.stdout and "[X] 0002_" in shown.stdout, shown.stdout
        assert https(port, ca.stdout, "GET", "/static/admin/css/base.css")[0] == 200
    finally:
        stop_simhost(host)
        remove_labelled(unique)
