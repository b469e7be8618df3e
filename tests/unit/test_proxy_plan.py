"""The front proxy's pure parts: the Caddy config, the proxy container, its plan, the routed roll-out, the
routing table's switch/undo/drain bookkeeping (with a fake admin API), and labels read back from a host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provision.appops import DeployContext
from provision.build import assemble, image_tag
from provision.commands.docker import container_config
from provision.commands.proxy import (
    CATCH_ALL_BODY,
    ProxyContainer,
    ProxySettings,
    Route,
    admin_post,
    caddy_config,
    loaded_routing_id,
    parse_upstreams,
    routing_id,
)
from provision.errors import StepFailed
from provision.facts.apps import parse
from provision.ops import EngineCall, Guarded, Wait, params
from provision.plan.apps import DesiredApp, plan_container, plan_prune
from provision.plan.proxy import DesiredProxy, plan_proxy, seed_routes
from provision.proxyops import ProxyState, route, sync
from provision.spec import AppSpec

pytestmark = pytest.mark.unit
P, E = "shop", "prod"


def test_the_config_routes_by_host_then_404s_and_keeps_draining_upstreams_unreachable() -> None:
    settings = ProxySettings("off", grace=10.0, routes=(
        Route("docs", ("docs.example.com",), "c-new:8080", draining=("c-old:8080",)),
        Route("api", ("api.example.com", "www.api.example.com"), "a:9000")))
    server = caddy_config(settings)["apps"]["http"]["servers"]["dockyard"]
    routes = server["routes"]
    assert [r.get("match") for r in routes[:2]] == [[{"host": ["api.example.com", "www.api.example.com"]}],
                                                    [{"host": ["docs.example.com"]}]]
    assert routes[1]["handle"][0]["upstreams"] == [{"dial": "c-new:8080"}]
    assert routes[2] == {"handle": [{"handler": "static_response", "status_code": 404, "body": CATCH_ALL_BODY}],
                         "terminal": True}
    # the draining upstream comes after the terminal catch-all: no request can reach it
    assert routes[3]["handle"][0]["upstreams"] == [{"dial": "c-old:8080"}] and "match" not in routes[3]
    assert server["listen"] == [":80"] and server["automatic_https"] == {"disable": True}
    assert caddy_config(settings)["apps"]["http"]["grace_period"] == "10000ms"
    assert "tls" not in caddy_config(settings)["apps"]


def test_tls_modes_choose_the_issuer_and_never_install_a_trust_store() -> None:
    routes = (Route("docs", ("docs.example.com",), "c:8080"),)
    internal = caddy_config(ProxySettings("internal", routes=routes))["apps"]
    assert internal["tls"]["automation"]["policies"] == [{"subjects": ["docs.example.com"],
                                                          "issuers": [{"module": "internal"}]}]
    assert internal["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    assert internal["http"]["servers"]["dockyard"]["listen"] == [":443"]  # Caddy adds the :80 redirects
    auto = caddy_config(ProxySettings("auto", email="ops@example.com", routes=routes))["apps"]
    assert auto["tls"]["automation"]["policies"][0]["issuers"] == [{"module": "acme", "email": "ops@example.com"}]


def test_the_routing_id_changes_with_the_routing_and_is_read_back_from_the_loaded_config() -> None:
    a = ProxySettings("off", routes=(Route("docs", ("docs.example.com",), "c1:8080"),))
    b = ProxySettings("off", routes=(Route("docs", ("docs.example.com",), "c2:8080"),))
    assert routing_id(a) != routing_id(b)
    assert loaded_routing_id(json.dumps(caddy_config(a))) == routing_id(a)
    for junk in ("", "null", "[]", '{"apps": 3}', "{" * 1000):
        assert loaded_routing_id(junk) is None


def test_admin_calls_carry_values_as_arguments_never_in_the_script() -> None:
    argv = admin_post("/load", {"x": "'; rm -rf / #"})
    assert argv[:2] == ("sh", "-c") and "rm -rf" not in argv[2]
    assert argv[4] == "/load" and json.loads(argv[5]) == {"x": "'; rm -rf / #"}


def test_upstream_counts_parse_defensively() -> None:
    assert parse_upstreams('[{"address":"a:1","num_requests":2},{"address":"b:2"}]') == {"a:1": 2, "b:2": 0}
    assert parse_upstreams("not json") == {} and parse_upstreams('{"a": 1}') == {}


def test_the_proxy_container_publishes_only_http_and_https_and_drops_capabilities() -> None:
    c = ProxyContainer(P, E, "caddy:2", ("127.0.0.1", 8080), ("", 8443))
    argv = c.create_argv()
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--publish"] == ["127.0.0.1:8080:80", "8443:443"]
    assert "2019" not in " ".join(argv)  # the admin API is never published
    assert argv[argv.index("--cap-drop") + 1] == "ALL" and argv[-3:] == ("caddy", "run", "--resume")
    assert c.name == "shop-prod_proxy"  # '_' keeps it apart from any app's names
    assert ProxyContainer(P, E, "caddy:2", ("127.0.0.1", 8080), None).config_hash != c.config_hash


def routed_app(tmp_path: Path, version: str, **extra: Any) -> DesiredApp:
    (tmp_path / "app.py").write_text(version)
    build = assemble(tmp_path, "FROM base\n")
    spec = AppSpec.model_validate({"dockerfile": "Dockerfile", "port": 8080, "domains": ["docs.example.com"],
                                   "env": {"V": version}, **extra})
    tag = image_tag(P, "docs", build.content_hash)
    cfg = container_config(P, E, "docs", spec, image=tag, build_hash=build.content_hash, secret_digests={},
                           ssh_user="root", read_only=False)
    return DesiredApp("docs", tag, build, cfg, (), drain=spec.drain)


def container_doc(d: DesiredApp, cid: str, *, state: str = "running", role: str = "") -> dict[str, Any]:
    labels = dict(d.container.labels)
    if role:
        labels["dockyard.role"] = role
    return {"Id": cid, "Names": ["/" + d.container.name + ("-candidate" if role else "")], "Image": d.image,
            "ImageID": "sha256:i", "State": state, "Status": "Up 1 minute (healthy)", "Created": 1,
            "Labels": labels, "NetworkSettings": {"Networks": {"shop-prod-docs": {}}}}


def test_a_routed_roll_out_switches_after_the_health_check_then_drains_then_stops_the_old(tmp_path: Path) -> None:
    old = routed_app(tmp_path, "v1", drain="12s")
    new = routed_app(tmp_path, "v2", drain="12s")
    (change,) = plan_container(new, parse(P, E, [container_doc(old, "old1")], [], [], []), proxy=True)
    ops = [s.op for s in change.steps]
    roll: Guarded = ops[0]
    cfg = new.container
    # healthy first, then ONE switch of the route; a failure undoes only the new container
    assert roll.ops[-2:] == (Wait("container.healthy", params(container=cfg.name, health=cfg.health, label="docs"),
                                  cfg.health.wait),
                             EngineCall("proxy.route", params(app="docs", domains=("docs.example.com",),
                                                              upstream=f"{cfg.name}:8080")))
    assert not any(isinstance(o, EngineCall) and o.op == "container.stop" for o in roll.ops)  # no gap
    assert roll.on_failure == (EngineCall("container.remove", params(id=cfg.name)),)
    assert ops[1:] == [Wait("proxy.drained", params(upstreams=(f"{old.container.name}:8080",), label="docs"), 12.0),
                       EngineCall("container.stop", params(id="old1", timeout=10)),  # kept: a release
                       EngineCall("proxy.sync", params(app="docs"))]
    # a routed app without a healthcheck is probed on / with its domain as Host, any status below 500
    assert "docs.example.com" in cfg.health.test and " 500" in cfg.health.test


def test_a_leftover_candidate_is_removed_and_never_kept_as_the_live_container(tmp_path: Path) -> None:
    d = routed_app(tmp_path, "v1")
    facts = parse(P, E, [container_doc(d, "cand1", role="candidate")], [], [], [])
    assert facts.live_container("docs") is None and seed_routes(facts) == {}
    (change,) = plan_container(d, facts, proxy=True)
    assert change.steps[0].op == EngineCall("container.remove", params(id="cand1"))


def test_routes_are_seeded_from_labels_and_hostile_labels_are_dropped(tmp_path: Path) -> None:
    d = routed_app(tmp_path, "v1")
    doc = container_doc(d, "c1")
    assert seed_routes(parse(P, E, [doc], [], [], [])) == {
        "docs": Route("docs", ("docs.example.com",), f"{d.container.name}:8080")}
    doc["Labels"]["dockyard.domains"] = 'docs.example.com,evil"}]},{"x,UPPER.example.com,' + "a" * 300
    assert parse(P, E, [doc], [], [], []).containers[0].domains == ("docs.example.com",)
    doc["Labels"]["dockyard.port"] = "8080; rm"
    assert seed_routes(parse(P, E, [doc], [], [], [])) == {}


def test_prune_unroutes_before_removing(tmp_path: Path) -> None:
    d = routed_app(tmp_path, "v1")
    (change,) = plan_prune("docs", parse(P, E, [container_doc(d, "c1")], [], [], []), prune_volumes=False,
                           proxy=True)
    assert change.steps[0].op == EngineCall("proxy.unroute", params(app="docs"))


def desired_proxy(networks: tuple[str, ...] = ("shop-prod-docs",)) -> DesiredProxy:
    return DesiredProxy(ProxyContainer(P, E, "caddy:2", ("", 80), ("", 443)), ProxySettings("internal"), networks)


def proxy_doc(c: ProxyContainer, *, networks: tuple[str, ...] = (), state: str = "running") -> dict[str, Any]:
    return {"Id": "p1", "Names": ["/" + c.name], "Image": c.image, "ImageID": "sha256:p", "State": state,
            "Status": "Up", "Created": 1, "Labels": c.labels,
            "NetworkSettings": {"Networks": {n: {} for n in (c.network, *networks)}}}


def test_plan_proxy_creates_everything_then_loads_routes_from_labels() -> None:
    want = desired_proxy()
    changes = plan_proxy(want, parse(P, E, [], [], [], []), image_on_host=False, loaded_routing=None, routes={})
    assert [c.target for c in changes] == ["proxy:image", "proxy:storage", "proxy:container"]
    steps = [s.op for s in changes[-1].steps]
    assert steps[-1] == EngineCall("proxy.sync", params(force=True))
    assert EngineCall("container.connect", params(container=want.container.name, network="shop-prod-docs",
                                                  aliases=())) in steps


def test_plan_proxy_is_a_no_op_when_container_networks_and_routes_match() -> None:
    want = desired_proxy()
    c = want.container
    facts = parse(P, E, [proxy_doc(c, networks=want.networks)], [],
                  [{"Id": "n", "Name": c.network, "Labels": c.labels}],
                  [{"Name": v, "Labels": c.labels} for v, _ in c.volumes])
    routes = {"docs": Route("docs", ("docs.example.com",), "x:8080")}
    settings = ProxySettings("internal", routes=tuple(routes.values()))
    assert plan_proxy(want, facts, image_on_host=True, loaded_routing=routing_id(settings), routes=routes) == []
    drift = plan_proxy(want, facts, image_on_host=True, loaded_routing="dockyard-other", routes=routes)
    assert [c.target for c in drift] == ["proxy:routes"]
    upgraded = DesiredProxy(ProxyContainer(P, E, "caddy:2.8", ("", 80), ("", 443)), want.settings, want.networks)
    (replace,) = plan_proxy(upgraded, facts, image_on_host=True, loaded_routing=routing_id(settings), routes=routes)
    assert replace.action == "replace" and replace.steps[0].op == EngineCall("container.remove", params(id="p1"))


class FakeAdmin:
    """exec_create/exec_start/exec_inspect of the engine API, answering the admin API's calls."""

    def __init__(self, fail_loads: int = 0) -> None:
        self.loaded: list[dict[str, Any]] = []
        self.fail_loads = fail_loads
        self._pending: list[str] = []

    def exec_create(self, container: str, cmd: list[str], **_: Any) -> dict[str, str]:
        self._pending.append(json.dumps(cmd))
        return {"Id": str(len(self._pending) - 1)}

    def exec_start(self, exec_id: str) -> bytes:
        cmd = json.loads(self._pending[int(exec_id)])
        if cmd[4] == "/load":
            if self.fail_loads:
                self.fail_loads -= 1
                self._code = 22
                return b'{"error":"loading new config: bad"}'
            self.loaded.append(json.loads(cmd[5]))
        self._code = 0
        return json.dumps(self.loaded[-1] if self.loaded else {}).encode()

    def exec_inspect(self, exec_id: str) -> dict[str, int]:
        return {"ExitCode": self._code}


class Remote:
    def __init__(self, api: FakeAdmin) -> None:
        self.api = api

    def docker(self) -> Any:
        return self


def test_the_switch_keeps_the_old_upstream_draining_and_a_failed_load_changes_nothing() -> None:
    api = FakeAdmin()
    ctx = DeployContext(remote=Remote(api))
    ctx.proxy = ProxyState("shop-prod_proxy", ProxySettings("off"),
                           {"docs": Route("docs", ("docs.example.com",), "old:8080")})
    route(ctx, app="docs", domains=("docs.example.com",), upstream="new:8080")
    assert ctx.proxy.routes["docs"] == Route("docs", ("docs.example.com",), "new:8080", draining=("old:8080",))
    assert api.loaded[-1]["apps"]["http"]["servers"]["dockyard"]["routes"][-1]["handle"][0]["upstreams"] == [
        {"dial": "old:8080"}]
    api.fail_loads = 1
    with pytest.raises(StepFailed, match="admin API failed"):
        route(ctx, app="docs", domains=("docs.example.com",), upstream="newer:8080")
    assert ctx.proxy.routes["docs"].upstream == "new:8080"  # unchanged: the proxy still routes there
    sync(ctx, app="docs")
    assert ctx.proxy.routes["docs"].draining == () and len(api.loaded) == 2


def test_diff_shows_a_route_change(tmp_path: Path) -> None:
    old = routed_app(tmp_path, "v1")
    moved = DesiredApp(old.name, old.image, old.build, container_config(
        P, E, "docs", AppSpec.model_validate({"dockerfile": "Dockerfile", "port": 8080, "env": {"V": "v1"},
                                              "domains": ["docs2.example.com"]}),
        image=old.image, build_hash=old.build_hash, secret_digests={}, ssh_user="root", read_only=False),
        ())
    (change,) = plan_container(moved, parse(P, E, [container_doc(old, "old1")], [], [], []), proxy=True)
    assert "domains: docs.example.com (through the proxy, to port 8080)" in (change.before or "")
    assert "domains: docs2.example.com (through the proxy, to port 8080)" in (change.after or "")
    assert change.data["route"] == {"domains": ["docs2.example.com"], "upstream": f"{moved.container.name}:8080"}


def test_a_release_command_runs_once_before_the_new_container_with_the_apps_env_volumes_and_secrets(
        tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("v2")
    build = assemble(tmp_path, "FROM base\n")
    spec = AppSpec.model_validate({"dockerfile": "Dockerfile", "port": 8080, "env": {"MODE": "prod"},
                                   "secrets": ["DB_PASSWORD"], "volumes": {"data": "/data"},
                                   "release_command": "python manage.py migrate"})
    cfg = container_config(P, E, "web", spec, image="shop/web:1", build_hash=build.content_hash,
                           secret_digests={"DB_PASSWORD": "d"}, ssh_user="root", read_only=True,
                           release_command=spec.release_command)
    d = DesiredApp("web", "shop/web:1", build, cfg, ())
    (change,) = plan_container(d, parse(P, E, [], [], [], []))
    names = [s.description for s in change.steps]
    run = next(i for i, n in enumerate(names) if n.startswith("run the release command"))
    start = next(i for i, n in enumerate(names) if n.startswith("start "))
    assert run < start  # before the new container exists: a failure leaves the old release serving
    argv = change.steps[run].op.get("argv")
    assert argv[:3] == ("docker", "run", "--rm") and argv[-4:] == ("shop/web:1", "python", "manage.py", "migrate")
    assert "--env-file" in argv and "MODE=prod" in argv and "type=volume,source=shop-prod-web-data,target=/data" in argv
    assert "--publish" not in argv and "--restart" not in argv and "--read-only" in argv
    assert "DB_PASSWORD=" not in " ".join(argv)  # secrets come from the env file only
    # no new release (same config running): nothing runs
    doc = {"Id": "c1", "Names": ["/" + cfg.name], "Image": cfg.image, "ImageID": "sha256:i", "State": "running",
           "Status": "Up 1 minute (healthy)", "Created": 1, "Labels": cfg.labels}
    assert plan_container(d, parse(P, E, [doc], [], [], [])) == []
