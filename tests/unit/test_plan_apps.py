"""The app planner with recorded facts (engine JSON documents), no engine."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from provision.build import BuildSource, assemble, image_tag
from provision.changes import Step
from provision.commands.docker import container_config
from provision.facts.apps import AppFacts, parse, parse_health
from provision.ops import Argv, EngineCall, Guarded, SecretFile, Upload, Wait, digest, params
from provision.plan.apps import (
    DesiredApp,
    orphans,
    plan_container,
    plan_image,
    plan_image_prune,
    plan_networks,
    plan_prune,
    plan_volumes,
)
from provision.spec import AppSpec

pytestmark = pytest.mark.unit

P, E = "shop", "prod"


def desired(tmp_path: Path, name: str = "web", source: str = "v1", **app_over) -> DesiredApp:
    ctx_dir = tmp_path / name
    ctx_dir.mkdir(exist_ok=True)
    (ctx_dir / "app.py").write_text(source)
    build = assemble(ctx_dir, "FROM base\nCOPY . /app\n")
    spec = AppSpec.model_validate(
        {
            "template": "python-web",
            "port": 8000,
            "publish": "127.0.0.1:18080",
            "volumes": {"data": "/data"},
            "healthcheck": {"http": "/"},
            **app_over,
        }
    )
    tag = image_tag(P, name, build.content_hash)
    cfg = container_config(
        P,
        E,
        name,
        spec,
        image=tag,
        build_hash=build.content_hash,
        secret_digests={s: "d" for s in spec.secrets},
        ssh_user="root",
        read_only=True,
    )
    vols = tuple((f"{P}-{E}-{name}-{v}", v) for v in spec.volumes)
    return DesiredApp(name, tag, build, cfg, vols)


def labels(app: str, env: str = E, **extra: str) -> dict[str, str]:
    return {"dockyard.project": P, "dockyard.environment": env, "dockyard.app": app, **extra}


def container_doc(
    d: DesiredApp,
    *,
    cid: str = "c1",
    config_hash: str | None = None,
    state: str = "running",
    status: str = "Up 2 minutes (healthy)",
    env: str = E,
    image_id: str = "sha256:img1",
    port: int | None = 18080,
    created: int = 100,
) -> dict:
    h = config_hash or d.container.config_hash
    return {
        "Id": cid,
        "Names": [f"/{P}-{env}-{d.name}-{h[:10]}"],
        "Image": d.image,
        "ImageID": image_id,
        "State": state,
        "Status": status,
        "Created": created,
        "Labels": labels(d.name, env, **{"dockyard.config-hash": h, "dockyard.build-hash": d.build_hash}),
        "Ports": [{"IP": "127.0.0.1", "PrivatePort": 8000, "PublicPort": port, "Type": "tcp"}] if port else [],
    }


def image_doc(app: str, build_hash: str, *, iid: str, created: int, tags: list[str] | None = None) -> dict:
    return {
        "Id": iid,
        "RepoTags": tags or [image_tag(P, app, build_hash)],
        "Created": created,
        "Size": 1000,
        "Labels": labels(app, **{"dockyard.build-hash": build_hash}),
    }


def facts(containers=(), images=(), networks=(), volumes=()) -> AppFacts:
    return parse(P, E, containers, images, networks, volumes)


def converged(d: DesiredApp) -> AppFacts:
    return facts(
        [container_doc(d)],
        [image_doc(d.name, d.build_hash, iid="sha256:img1", created=100)],
        [{"Id": "n1", "Name": f"{P}-{E}-{d.name}", "Labels": labels(d.name)}],
        [{"Name": f"{P}-{E}-{d.name}-data", "Labels": labels(d.name, **{"dockyard.volume": "data"})}],
    )


def test_converged_app_has_no_changes(tmp_path: Path) -> None:
    d = desired(tmp_path)
    f = converged(d)
    assert plan_image(d, f, project=P, environment=E) == []
    assert plan_networks([d.name], f, project=P, environment=E) == []
    assert plan_volumes(d, f, project=P, environment=E) == []
    assert plan_container(d, f) == []
    assert plan_image_prune(d, f) == []
    assert orphans(["web"], f) == []


def test_fresh_host_plans_everything(tmp_path: Path) -> None:
    d = desired(tmp_path)
    f = facts()
    (image,) = plan_image(d, f, project=P, environment=E)
    assert image.action == "build"
    assert image.steps == (Step(f"build {d.image} on the host (2 context files)", EngineCall("image.build", params(
        app="web", source=BuildSource.of(d.build), tag=d.image, labels=labels("web"), where="host", redact=()))),)
    (net,) = plan_networks([d.name], f, project=P, environment=E)
    assert net.steps == (Step("create network shop-prod-web",
                              EngineCall("network.create", params(name="shop-prod-web", labels=labels("web")))),)
    (vols,) = plan_volumes(d, f, project=P, environment=E)
    assert [s.op for s in vols.steps] == [EngineCall("volume.create", params(
        name="shop-prod-web-data", labels=labels("web", **{"dockyard.volume": "data"})))]
    (ctr,) = plan_container(d, f)
    assert ctr.action == "create" and ctr.reason == "absent"
    cfg = d.container
    assert [s.op for s in ctr.steps] == [Guarded(
        (EngineCall("container.remove", params(id=cfg.name, ignore_errors=True)),
         Argv(cfg.create_argv()),
         EngineCall("container.start", params(id=cfg.name)),
         Wait("container.healthy", params(container=cfg.name, health=cfg.health, label="web"), cfg.health.wait)),
        (EngineCall("container.remove", params(id=cfg.name)),),
        note="removed it, kept the old container (none)", logs_of=cfg.name)]


def test_changed_source_rebuilds_and_replaces(tmp_path: Path) -> None:
    old = desired(tmp_path, source="v1")
    f = converged(old)
    new = desired(tmp_path, source="v2")
    assert new.build_hash != old.build_hash
    assert plan_image(new, f, project=P, environment=E)[0].action == "build"
    (ctr,) = plan_container(new, f)
    assert ctr.action == "replace" and "config hash differs" in ctr.reason
    roll, stop_old = ctr.steps[-2].op, ctr.steps[-1].op
    # only after the new one is healthy; stopped, not removed: it is the release `rollback` starts again
    assert stop_old == EngineCall("container.stop", params(id="c1", timeout=10))
    # same host port published by the old container: the new version first proves healthy as a candidate
    # without the port; only then the old one stops and the real one starts on the port (the short gap)
    cfg = new.container
    cand_wait = roll.ops.index(Wait("container.healthy", params(container=cfg.candidate_name, health=cfg.health,
                                                                label="web"), cfg.health.wait))
    stop_old = roll.ops.index(EngineCall("container.stop", params(id="c1", timeout=10)))
    start = roll.ops.index(EngineCall("container.start", params(id=cfg.name)))
    assert cand_wait < stop_old == start - 1
    assert roll.ops[stop_old - 1] == Argv(cfg.create_argv())  # created before the gap opens
    assert Argv(cfg.create_argv(candidate=True)) in roll.ops[:cand_wait]
    # the undo: remove the candidate and the new one, start the one stopped for the port (what the plan said)
    assert roll.on_failure == (EngineCall("container.remove", params(id=cfg.candidate_name)),
                               EngineCall("container.remove", params(id=cfg.name)),
                               EngineCall("container.start", params(id="c1")))
    assert roll.note == (f"removed it; the old container ({P}-{E}-web-{old.container.config_hash[:10]}) "
                         "kept the port")
    assert ctr.before is not None and old.container.config_hash[:12] in ctr.before


def test_no_port_overlap_keeps_old_running_until_new_is_healthy(tmp_path: Path) -> None:
    old = desired(tmp_path, source="v1", publish=None)
    new = desired(tmp_path, source="v2", publish=None)
    (ctr,) = plan_container(new, facts([container_doc(old, port=None)]))
    roll = ctr.steps[-2].op
    assert not [op for op in roll.ops if isinstance(op, EngineCall) and op.op == "container.stop"]
    assert roll.on_failure == (EngineCall("container.remove", params(id=new.container.name)),)
    assert ctr.steps[-1].op == EngineCall("container.stop", params(id="c1", timeout=10))


@pytest.mark.parametrize(
    ("state", "status"), [("exited", "Exited (1) 3 seconds ago"), ("running", "Up 1 minute (unhealthy)")]
)
def test_same_hash_but_not_serving_is_replaced(tmp_path: Path, state: str, status: str) -> None:
    d = desired(tmp_path)
    (ctr,) = plan_container(d, facts([container_doc(d, state=state, status=status)]))
    assert ctr.action == "replace"
    roll = ctr.steps[-1 if state == "exited" else -2].op
    if state == "exited":  # the same name as the new one: the roll-out removes it first
        assert roll.ops[0] == EngineCall("container.remove", params(id=d.container.name, ignore_errors=True))
        assert not [s for s in ctr.steps if s.op == EngineCall("container.remove", params(id="c1"))]
    else:  # same name as the new one: renamed aside first (a name decided by the plan, not the clock)
        name = d.container.name
        assert roll.ops[0] == EngineCall("container.rename", params(id="c1", name=f"{name}-prev-c1"))


def test_earlier_releases_are_kept_up_to_keep_releases_and_leftovers_removed(tmp_path: Path) -> None:
    d = desired(tmp_path)
    earlier = [container_doc(d, cid=f"c{i}", config_hash=f"{i:x}" * 64, state="exited", status="Exited (0)",
                             created=i) for i in range(1, 7)]
    candidate = container_doc(d, cid="cand", config_hash="a" * 64, state="running", status="Up")
    candidate["Labels"]["dockyard.role"] = "candidate"
    (ctr,) = plan_container(d, facts([container_doc(d, created=10), *earlier, candidate]))
    assert ctr.action == "cleanup"
    # keep_releases 5 = the current one + the 4 newest stopped (c6..c3); c2, c1 and the leftover candidate go
    assert [s.op for s in ctr.steps] == [EngineCall("container.remove", params(id=i)) for i in ("cand", "c2", "c1")]
    assert plan_container(d, facts([container_doc(d, created=10), *earlier[2:]])) == []


def test_secrets_upload_env_file_before_start(tmp_path: Path) -> None:
    d = desired(tmp_path, secrets=["DB_PASSWORD"])
    (ctr,) = plan_container(d, facts())
    assert [s.op for s in ctr.steps[:3]] == [
        Argv(("mkdir", "-p", "-m", "700", "/var/lib/dockyard/shop-prod")),
        Argv(("chmod", "700", "/var/lib/dockyard/shop-prod")),
        Upload("/var/lib/dockyard/shop-prod/web.env",
               SecretFile(("DB_PASSWORD",), digest(repr(d.container.secret_digests).encode())), mode=0o600)]
    assert isinstance(ctr.steps[3].op, Guarded) and ctr.steps[3].op.redact == ("DB_PASSWORD",)


def test_other_environment_containers_are_not_ours(tmp_path: Path) -> None:
    d = desired(tmp_path)
    f = facts([container_doc(d, env="staging")])
    assert f.containers == () and len(f.other_containers) == 1
    assert plan_container(d, f)[0].action == "create"


def test_networks_include_only_missing(tmp_path: Path) -> None:
    web, api = desired(tmp_path, "web"), desired(tmp_path, "api", publish=None)
    f = facts(networks=[{"Id": "n1", "Name": f"{P}-{E}-web", "Labels": labels("web")}])
    assert [c.data["network"] for c in plan_networks([web.name, api.name], f, project=P, environment=E)] == [
        "shop-prod-api"
    ]


def test_keep_last_three_images(tmp_path: Path) -> None:
    d = desired(tmp_path, source="v9")
    images = [image_doc("web", f"{i:064x}", iid=f"sha256:{i}", created=i) for i in range(1, 6)]
    # the container runs image 1 (the oldest): it must survive
    f = facts([container_doc(d, config_hash="e" * 64, image_id="sha256:1")], images)
    (prune,) = plan_image_prune(d, f, keep=3)
    removed = [s.op.get("image_id") for s in prune.steps]
    tag3 = image_tag(P, "web", f"{3:064x}")
    assert prune.steps[0].op == EngineCall("image.remove", params(image_id="sha256:3", tags=(tag3,)))
    # d's image is about to be built: it takes one of the 3 slots, so 5 and 4 stay, 3 and 2 go, 1 is in use
    assert removed == ["sha256:3", "sha256:2"]


def test_keep_last_three_when_current_exists(tmp_path: Path) -> None:
    d = desired(tmp_path)
    images = [image_doc("web", f"{i:064x}", iid=f"sha256:{i}", created=i) for i in range(1, 5)]
    images.append(image_doc("web", d.build_hash, iid="sha256:cur", created=0))
    f = facts([container_doc(d, image_id="sha256:cur")], images)
    (prune,) = plan_image_prune(d, f, keep=3)
    assert [s.op.get("image_id") for s in prune.steps] == ["sha256:2", "sha256:1"]


def test_orphans_and_prune(tmp_path: Path) -> None:
    d = desired(tmp_path, "old")
    f = converged(d)
    assert orphans(["web"], f) == ["old"]
    (change,) = plan_prune("old", f, prune_volumes=False)
    assert [s.op for s in change.steps] == [
        EngineCall("container.remove", params(id="c1")),
        EngineCall("network.remove", params(id="n1")),
        EngineCall("image.remove", params(image_id="sha256:img1", tags=(d.image,)))]
    assert change.data["kept_volumes"] == ["shop-prod-old-data"]
    (change,) = plan_prune("old", f, prune_volumes=True, env_file="/var/lib/dockyard/shop-prod/old.env")
    assert [s.op for s in change.steps][1:3] == [
        Argv(("rm", "-f", "/var/lib/dockyard/shop-prod/old.env")),
        EngineCall("network.remove", params(id="n1"))]
    assert EngineCall("volume.remove", params(name="shop-prod-old-data")) in [s.op for s in change.steps]


def test_parse_health() -> None:
    assert parse_health("Up 3 seconds (health: starting)") == "starting"
    assert parse_health("Up 2 minutes (healthy)") == "healthy"
    assert parse_health("Up 2 minutes (unhealthy)") == "unhealthy"
    assert parse_health("Up 2 minutes") is None


def test_unlabelled_objects_are_ignored(tmp_path: Path) -> None:
    d = desired(tmp_path)
    doc = container_doc(d)
    doc["Labels"] = {"dockyard.project": "someone-else"}
    f = facts([doc], networks=[{"Id": "x", "Name": "shop-prod-web", "Labels": {}}])
    assert f.containers == () and f.networks == () and f.apps_seen == frozenset()


def test_no_secret_value_in_any_op_while_the_env_file_written_has_it(tmp_path: Path) -> None:
    import json

    from provision.appops import DeployContext
    from provision.ops import render, to_json
    from provision.report import unified_diff

    secret = "pl4n-s3cret-7f2c"
    source = FakeSecrets({"DB_PASSWORD": secret})
    d = desired(tmp_path, secrets=["DB_PASSWORD"])
    d = replace(d, container=replace(d.container, secret_digests=(("DB_PASSWORD", source.digest("DB_PASSWORD")),)))
    old = container_doc(desired(tmp_path, source="v0", secrets=["DB_PASSWORD"]))
    changes = plan_container(d, facts([old])) + plan_image(d, facts(), project=P, environment=E)
    steps = [s for c in changes for s in c.steps]
    text = "\n".join(
        [s.description + repr(s) + render(s.op) + json.dumps(to_json(s.op)) for s in steps]
        + [json.dumps(c.to_json()) for c in changes]
        + [(c.after or "") + (c.before or "") + repr(c.data) + c.reason for c in changes]
        + [unified_diff(c.target, c.before, c.after) for c in changes]
    )
    assert "upload env file" in text and "DB_PASSWORD" in text
    assert secret not in text
    [upload] = [s.op for s in steps if isinstance(s.op, Upload)]
    remote = FakeFiles()
    DeployContext(remote=remote, secrets=source).execute(upload)
    assert remote.files == {"/var/lib/dockyard/shop-prod/web.env": (f"DB_PASSWORD={secret}\n".encode(), 0o600)}
    # a changed secret value changes the op (and the config hash), never showing the value
    other = FakeSecrets({"DB_PASSWORD": secret + "2"})
    d2 = replace(d, container=replace(d.container, secret_digests=(("DB_PASSWORD", other.digest("DB_PASSWORD")),)))
    assert env_upload(d2) != env_upload(d)


def env_upload(d: DesiredApp) -> Upload:
    return next(s.op for c in plan_container(d, facts()) for s in c.steps if isinstance(s.op, Upload))


class FakeSecrets:
    """A SecretSource's read side: value and digest by name."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def value(self, name: str) -> str:
        return self.values[name]

    def digest(self, name: str) -> str:
        return hashlib.sha256(self.values[name].encode()).hexdigest()


class FakeFiles:
    """The Remote's upload side only."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int]] = {}

    def put_file(self, path: str, content: bytes, mode: int = 0o644, owner=None, sudo: bool = False) -> None:
        self.files[path] = (content, mode)


def test_plans_for_equal_inputs_are_equal_and_one_parameter_makes_them_unequal(tmp_path: Path) -> None:
    d = desired(tmp_path, publish=None)
    f = facts()
    assert plan_container(d, f) == plan_container(d, f)
    assert plan_image(d, f, project=P, environment=E) == plan_image(d, f, project=P, environment=E)
    # the same app published on another port: same steps, same descriptions, one op parameter differs
    e = replace(d, container=replace(d.container, publish=("127.0.0.1", 18081)))
    assert [s.description.split(" from ")[1] for c in plan_container(e, f) for s in c.steps] == \
        [s.description.split(" from ")[1] for c in plan_container(d, f) for s in c.steps]
    assert plan_container(e, f) != plan_container(d, f)
    assert plan_networks(["web"], f, project=P, environment=E) != plan_networks(["web"], f, project=P,
                                                                                environment="staging")


def test_ship_bases_only_what_the_host_lacks() -> None:
    from provision.plan.apps import plan_ship_bases

    local = {"base:1": "sha256:a", "py:1": "sha256:b"}
    assert plan_ship_bases(["base:1", "py:1"], local, {"base:1": "sha256:a", "py:1": "sha256:b"}) == []
    (change,) = plan_ship_bases(["base:1", "py:1"], local, {"base:1": "sha256:a", "py:1": None})
    assert change.steps[0].op == EngineCall("image.ship", params(refs=("py:1",)))


def test_build_local_builds_here_and_ships(tmp_path: Path) -> None:
    d = replace(desired(tmp_path), build_where="local")
    (change,) = plan_image(d, facts(), project=P, environment=E)
    assert [s.op.op for s in change.steps] == ["image.build", "image.ship"]
    assert change.steps[0].op.get("where") == "local"
    assert change.steps[1].op == EngineCall("image.ship", params(app="web", refs=(d.image,)))
    assert "on this machine" in change.steps[0].description


def test_diff_before_is_the_old_containers_recorded_settings(tmp_path: Path) -> None:
    old = desired(tmp_path, source="v1")
    doc = container_doc(old)
    doc["Labels"]["dockyard.config"] = old.container.describe()
    new = desired(tmp_path, source="v2")
    (ctr,) = plan_container(new, facts([doc]))
    assert ctr.before == old.container.describe() and ctr.after == new.container.describe()
    assert f"image: {old.image}" in ctr.before and f"image: {new.image}" in ctr.after


def test_a_hostile_app_label_is_never_pruned_nor_made_a_path(tmp_path: Path) -> None:
    from provision.plan.apps import unsafe_app_labels

    d = desired(tmp_path, "old")
    hostile = container_doc(d, cid="c9")
    hostile["Labels"]["dockyard.app"] = "../../etc"
    f = facts([container_doc(d), hostile])
    assert "../../etc" in f.apps_seen  # the fact carries it: the filter below is what keeps it out
    assert orphans(["web"], f) == ["old"]
    assert unsafe_app_labels(f) == ["../../etc"]


def test_deploy_prune_warns_about_a_hostile_label_and_prunes_only_real_apps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from types import SimpleNamespace

    import yaml

    from provision import deploy as deploy_mod
    from provision.playbook import load_playbook
    from provision.report import Reporter

    d = desired(tmp_path, "old")
    hostile = container_doc(d, cid="c9")
    hostile["Labels"]["dockyard.app"] = "../../etc"
    monkeypatch.setattr(deploy_mod, "gather_remote", lambda *_: facts([container_doc(d), hostile]))
    path = tmp_path / "prod.yml"
    path.write_text(yaml.safe_dump({"project": P, "environment": E, "provider": "existing",
                                    "host": {"address": "192.0.2.1"}, "apps": {}}))
    result = deploy_mod.deploy(load_playbook(path), SimpleNamespace(user="root"), reporter=Reporter(),
                               host="shop-prod", check=True, prune=True, desired=[])
    shown = "".join(capsys.readouterr())
    assert result.orphans == ["old"]
    names = [r.task for r in result.recap.results]
    assert "prune app old" in names and not any("etc" in n for n in names)
    assert "../../etc" in shown and "not an app name" in shown
