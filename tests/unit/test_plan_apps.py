"""The app planner with recorded facts (engine JSON documents), no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision import appops
from provision.build import assemble, image_tag
from provision.commands.docker import container_config
from provision.facts.apps import AppFacts, parse, parse_health
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
    return DesiredApp(name, tag, build, cfg, vols, env_file=(lambda: b"X=1\n") if spec.secrets else None)


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
) -> dict:
    h = config_hash or d.container.config_hash
    return {
        "Id": cid,
        "Names": [f"/{P}-{env}-{d.name}-{h[:10]}"],
        "Image": d.image,
        "ImageID": image_id,
        "State": state,
        "Status": status,
        "Created": 100,
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
    assert image.action == "build" and image.steps[0].effect.func is appops.build_image
    assert image.steps[0].effect.keywords["tag"] == d.image
    (net,) = plan_networks([d.name], f, project=P, environment=E)
    assert net.steps[0].effect.keywords["name"] == "shop-prod-web"
    assert net.steps[0].effect.keywords["labels"]["dockyard.app"] == "web"
    (vols,) = plan_volumes(d, f, project=P, environment=E)
    assert vols.steps[0].effect.keywords["name"] == "shop-prod-web-data"
    (ctr,) = plan_container(d, f)
    assert ctr.action == "create" and ctr.reason == "absent"
    assert [s.effect.func for s in ctr.steps] == [appops.roll_out]
    assert ctr.steps[0].effect.keywords["old"] == ()


def test_changed_source_rebuilds_and_replaces(tmp_path: Path) -> None:
    old = desired(tmp_path, source="v1")
    f = converged(old)
    new = desired(tmp_path, source="v2")
    assert new.build_hash != old.build_hash
    assert plan_image(new, f, project=P, environment=E)[0].action == "build"
    (ctr,) = plan_container(new, f)
    assert ctr.action == "replace" and "config hash differs" in ctr.reason
    roll = ctr.steps[-1].effect
    assert [c.id for c in roll.keywords["old"]] == ["c1"]
    # same host port published by the old container: it has to stop first (the documented short gap)
    assert roll.keywords["stop_first"] == ("c1",)
    assert ctr.before is not None and old.container.config_hash[:12] in ctr.before


def test_no_port_overlap_keeps_old_running_until_new_is_healthy(tmp_path: Path) -> None:
    old = desired(tmp_path, source="v1", publish=None)
    new = desired(tmp_path, source="v2", publish=None)
    (ctr,) = plan_container(new, facts([container_doc(old, port=None)]))
    assert ctr.steps[-1].effect.keywords["stop_first"] == ()


@pytest.mark.parametrize(
    ("state", "status"), [("exited", "Exited (1) 3 seconds ago"), ("running", "Up 1 minute (unhealthy)")]
)
def test_same_hash_but_not_serving_is_replaced(tmp_path: Path, state: str, status: str) -> None:
    d = desired(tmp_path)
    (ctr,) = plan_container(d, facts([container_doc(d, state=state, status=status)]))
    assert ctr.action == "replace"
    if state == "exited":
        assert ctr.steps[0].effect.func is appops.remove_container


def test_stale_leftover_beside_current_is_removed(tmp_path: Path) -> None:
    d = desired(tmp_path)
    (ctr,) = plan_container(
        d,
        facts(
            [
                container_doc(d),
                container_doc(d, cid="c0", config_hash="f" * 64, state="exited", status="Exited (0)"),
            ]
        ),
    )
    assert ctr.action == "cleanup"
    assert [s.effect.keywords["container_id"] for s in ctr.steps] == ["c0"]


def test_secrets_upload_env_file_before_start(tmp_path: Path) -> None:
    d = desired(tmp_path, secrets=["DB_PASSWORD"])
    (ctr,) = plan_container(d, facts())
    funcs = [s.effect.func for s in ctr.steps]
    assert funcs == [appops.upload_env_file, appops.roll_out]
    assert ctr.steps[0].effect.keywords["path"] == "/var/lib/dockyard/shop-prod/web.env"


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
    (prune,) = plan_image_prune(d, f)
    removed = [s.effect.keywords["image_id"] for s in prune.steps]
    # d's image is about to be built: it takes one of the 3 slots, so 5 and 4 stay, 3 and 2 go, 1 is in use
    assert removed == ["sha256:3", "sha256:2"]


def test_keep_last_three_when_current_exists(tmp_path: Path) -> None:
    d = desired(tmp_path)
    images = [image_doc("web", f"{i:064x}", iid=f"sha256:{i}", created=i) for i in range(1, 5)]
    images.append(image_doc("web", d.build_hash, iid="sha256:cur", created=0))
    f = facts([container_doc(d, image_id="sha256:cur")], images)
    (prune,) = plan_image_prune(d, f)
    assert [s.effect.keywords["image_id"] for s in prune.steps] == ["sha256:2", "sha256:1"]


def test_orphans_and_prune(tmp_path: Path) -> None:
    d = desired(tmp_path, "old")
    f = converged(d)
    assert orphans(["web"], f) == ["old"]
    (change,) = plan_prune("old", f, prune_volumes=False)
    funcs = [s.effect.func for s in change.steps]
    assert appops.remove_volume not in funcs
    assert {appops.remove_container, appops.remove_network, appops.remove_image} <= set(funcs)
    assert change.data["kept_volumes"] == ["shop-prod-old-data"]
    (change,) = plan_prune("old", f, prune_volumes=True, env_file="/var/lib/dockyard/shop-prod/old.env")
    assert ("rm", "-f", "/var/lib/dockyard/shop-prod/old.env") in [s.argv for s in change.steps]
    assert appops.remove_volume in [s.effect.func for s in change.steps if s.effect]


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


def test_step_descriptions_carry_no_secret(tmp_path: Path) -> None:
    from dataclasses import replace

    from provision.commands.docker import env_file_content
    from provision.report import unified_diff

    secret = "pl4n-s3cret-7f2c"
    d = desired(tmp_path, secrets=["DB_PASSWORD"])
    # the value goes in the way deploy passes it: a thunk producing the env file (read at upload time)
    d = replace(d, env_file=lambda: env_file_content({"DB_PASSWORD": secret}))
    old = container_doc(desired(tmp_path, source="v0", secrets=["DB_PASSWORD"]))
    changes = plan_container(d, facts([old])) + plan_image(d, facts(), project=P, environment=E)
    upload = next(s for c in changes for s in c.steps if s.effect and s.effect.func is appops.upload_env_file)
    assert secret.encode() in upload.effect.keywords["content"]()  # it IS where it must be
    text = "\n".join(
        [s.description for c in changes for s in c.steps]
        + [repr(s.argv) + repr(s.stdin) for c in changes for s in c.steps]
        + [(c.after or "") + (c.before or "") + repr(c.data) + c.reason for c in changes]
        + [unified_diff(c.target, c.before, c.after) for c in changes]
    )
    assert "upload env file" in text and "DB_PASSWORD" in text
    assert secret not in text


def test_ship_bases_only_what_the_host_lacks() -> None:
    from provision.plan.apps import plan_ship_bases

    local = {"base:1": "sha256:a", "py:1": "sha256:b"}
    assert plan_ship_bases(["base:1", "py:1"], local, {"base:1": "sha256:a", "py:1": "sha256:b"}) == []
    (change,) = plan_ship_bases(["base:1", "py:1"], local, {"base:1": "sha256:a", "py:1": None})
    assert change.steps[0].effect.func is appops.ship_images
    assert change.steps[0].effect.keywords["refs"] == ("py:1",)


def test_build_local_builds_here_and_ships(tmp_path: Path) -> None:
    from dataclasses import replace

    d = replace(desired(tmp_path), build_where="local")
    (change,) = plan_image(d, facts(), project=P, environment=E)
    assert change.steps[0].effect.func is appops.build_local_and_ship
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
