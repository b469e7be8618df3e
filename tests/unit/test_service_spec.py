"""Pure builders of an app run as a Swarm service: the Engine API ServiceSpec, its hash, its secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.commands.service import (
    ServiceConfig,
    overlay_network,
    secret_name,
    service_config,
)
from provision.errors import InputError
from provision.playbook import load_playbook
from provision.spec import AppSpec, Playbook

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-value-XYZ"
DIGEST = "sha256:" + "ab" * 32


def web(**over) -> AppSpec:
    base = dict(
        template="python-web",
        port=8000,
        publish=18080,
        env={"MODE": "prod"},
        secrets=["DB_PASSWORD"],
        volumes={"data": "/data"},
        memory="256m",
        cpus=0.5,
        healthcheck={"http": "/healthz", "interval": "1s", "retries": 5},
        reach=["api"],
        replicas=3,
        placement=["node.role==worker"],
    )
    base.update(over)
    return AppSpec.model_validate(base)


def svc(app: AppSpec | None = None, digest: str = DIGEST, image: str = "shop/web:abc", **kw) -> ServiceConfig:
    return service_config("shop", "prod", "web", app or web(), image=image, build_hash="b1",
                          secret_digests={"DB_PASSWORD": digest}, read_only=True, **kw)


SECRET_NAME = secret_name("shop", "prod", "web", "DB_PASSWORD", DIGEST)


def kwargs(cfg: ServiceConfig) -> dict:
    return cfg.api_kwargs({s.name: f"id-{s.name}" for s in cfg.secrets})


def test_name_labels_mode_and_hash_label():
    cfg = svc()
    kw = kwargs(cfg)
    assert kw["name"] == "shop-prod-web"
    assert kw["labels"]["dockyard.project"] == "shop"
    assert kw["labels"]["dockyard.environment"] == "prod"
    assert kw["labels"]["dockyard.app"] == "web"
    assert kw["labels"]["dockyard.config-hash"] == cfg.config_hash
    assert kw["mode"] == {"Replicated": {"Replicas": 3}}
    assert kw["task_template"]["ContainerSpec"]["Labels"]["dockyard.app"] == "web"
    assert kw["task_template"]["ContainerSpec"]["Labels"]["dockyard.config-hash"] == cfg.config_hash


def test_env_volumes_limits_health_network_placement():
    tt = kwargs(svc())["task_template"]
    cs = tt["ContainerSpec"]
    assert cs["Image"] == "shop/web:abc"
    assert "MODE=prod" in cs["Env"]
    assert {"Type": "volume", "Source": "shop-prod-web-data", "Target": "/data",
            "VolumeOptions": {"Labels": {"dockyard.project": "shop", "dockyard.environment": "prod",
                                         "dockyard.app": "web"}}} in cs["Mounts"]
    assert {"Type": "tmpfs", "Target": "/tmp"} in cs["Mounts"]
    assert cs["ReadOnly"] is True
    assert tt["Resources"]["Limits"] == {"MemoryBytes": 256 * 1024 * 1024, "NanoCPUs": 500_000_000}
    assert cs["Healthcheck"]["Test"][0] == "CMD-SHELL" and "/healthz" in cs["Healthcheck"]["Test"][1]
    assert cs["Healthcheck"]["Interval"] == 1_000_000_000 and cs["Healthcheck"]["Retries"] == 5
    assert tt["Networks"] == [{"Target": "shop-prod-web", "Aliases": ["web"]}, {"Target": "shop-prod-api"}]
    assert tt["Placement"] == {"Constraints": ["node.role==worker"]}
    assert tt["RestartPolicy"]["Condition"] == "any"


def test_secrets_are_swarm_secrets_never_values():
    cfg = svc()
    kw = kwargs(cfg)
    cs = kw["task_template"]["ContainerSpec"]
    assert cs["Secrets"] == [{"File": {"Name": "DB_PASSWORD", "UID": "0", "GID": "0", "Mode": 0o444},
                              "SecretID": f"id-{SECRET_NAME}", "SecretName": SECRET_NAME}]
    assert "DB_PASSWORD_FILE=/run/secrets/DB_PASSWORD" in cs["Env"]
    assert not any(e.startswith("DB_PASSWORD=") for e in cs["Env"])
    assert SECRET_NAME == "shop-prod-web-DB_PASSWORD-" + "ab" * 6
    assert SECRET not in json.dumps(kw) and SECRET not in cfg.describe()


def test_a_changed_secret_value_is_a_new_secret_and_a_new_hash():
    other = svc(digest="sha256:" + "cd" * 32)
    assert other.secrets[0].name != SECRET_NAME
    assert other.config_hash != svc().config_hash


def test_update_and_rollback_config():
    kw = kwargs(svc())
    assert kw["update_config"]["FailureAction"] == "rollback"
    assert kw["update_config"]["Parallelism"] == 1
    # published with host-mode ports: an old and a new task cannot share a node's port
    assert kw["update_config"]["Order"] == "stop-first"
    assert kw["update_config"]["Monitor"] >= 10 * 1_000_000_000
    assert kw["rollback_config"]["FailureAction"] == "pause"
    unpublished = kwargs(svc(web(publish=None)))
    assert unpublished["update_config"]["Order"] == "start-first"
    assert unpublished["rollback_config"]["Order"] == "start-first"


def test_endpoint_dnsrr_with_host_mode_ports():
    assert kwargs(svc())["endpoint_spec"] == {
        "Mode": "dnsrr",
        "Ports": [{"Protocol": "tcp", "TargetPort": 8000, "PublishedPort": 18080, "PublishMode": "host"}]}
    assert kwargs(svc(web(publish=None)))["endpoint_spec"] == {"Mode": "dnsrr", "Ports": []}


@pytest.mark.parametrize("change", [
    {"replicas": 2}, {"placement": ["node.role==manager"]}, {"env": {"MODE": "dev"}}, {"memory": "512m"},
    {"publish": 18081},
])
def test_the_hash_follows_every_setting(change):
    assert svc(web(**change)).config_hash != svc().config_hash


def test_the_hash_ignores_the_release_id_and_is_stable():
    assert svc(release="abc123").config_hash == svc(release="def456").config_hash
    assert svc().config_hash == svc().config_hash
    assert svc(image="shop/web:other").config_hash != svc().config_hash


def test_describe_shows_swarm_settings():
    text = svc().describe()
    assert "replicas: 3" in text
    assert "placement: node.role==worker" in text
    assert "update: stop-first" in text
    assert "secret DB_PASSWORD (swarm secret at /run/secrets/DB_PASSWORD" in text
    assert "env file" not in text


def test_overlay_network_is_not_attachable():
    net = overlay_network("shop", "prod", "web", "shop-prod-web")
    assert net["driver"] == "overlay" and net["attachable"] is False
    assert net["labels"]["dockyard.app"] == "web"


def test_command_becomes_args():
    cs = kwargs(svc(web(command=["gunicorn", "app:app"])))["task_template"]["ContainerSpec"]
    assert cs["Args"] == ["gunicorn", "app:app"]


# --- the spec keys ---------------------------------------------------------------------------------------


def _pb(tmp_path: Path, mode: str, app: dict) -> Playbook:
    doc = {"project": "shop", "provider": "existing", "host": {"address": "127.0.0.1"},
           "engine": {"mode": mode}, "apps": {"web": {"template": "python-web", "port": 8000, **app}}}
    path = tmp_path / "playbook.yml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return load_playbook(path)


def test_replicas_default_1_and_placement_parse():
    assert AppSpec.model_validate({"template": "python-web"}).replicas == 1
    assert web(placement="node.labels.zone != a").placement == ("node.labels.zone != a",)


@pytest.mark.parametrize("bad", [["node.role"], ["node.role==worker; rm"], [3], ["== x"]])
def test_bad_placement_is_refused(bad):
    with pytest.raises(Exception, match="swarm constraint"):
        web(placement=bad)


@pytest.mark.parametrize("bad", [0, 101, True])
def test_bad_replicas_is_refused(bad):
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError (or ours)
        web(replicas=bad)


@pytest.mark.parametrize("key,value", [("replicas", 2), ("placement", ["node.role==worker"])])
def test_swarm_keys_need_swarm_mode(tmp_path, key, value):
    with pytest.raises(InputError) as err:
        _pb(tmp_path, "standalone", {key: value})
    assert f"`{key}` is a swarm setting" in str(err.value) and f"apps.web.{key}" in str(err.value)
    assert getattr(_pb(tmp_path, "swarm", {key: value}).apps["web"], key) == (value if key == "replicas"
                                                                               else tuple(value))
