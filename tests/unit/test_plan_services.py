"""The Swarm service plan: absent → create, config hash differs → update, equal → nothing."""

from __future__ import annotations

import json

import pytest

from provision.commands.service import service_config, with_secret_ids
from provision.ops import EngineCall, Wait, thaw
from provision.plan.services import ServiceFacts, parse_service, plan_app_service, plan_service
from provision.spec import AppSpec

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-value-XYZ"
DIGEST = "sha256:" + "ab" * 32


def desired(**over):
    base = dict(template="python-web", port=8000, publish=18080, secrets=["DB_PASSWORD"], replicas=3,
                healthcheck={"http": "/", "interval": "1s", "retries": 3})
    base.update(over)
    app = AppSpec.model_validate(base)
    return service_config("shop", "prod", "web", app, image="shop/web:abc", build_hash="b1",
                          secret_digests={"DB_PASSWORD": DIGEST}, read_only=False)


def facts_of(cfg, **over) -> ServiceFacts:
    attrs = {"ID": "svc1", "Version": {"Index": 42}, "UpdatedAt": "2026-11-30T20:00:00Z",
             "Spec": {"Name": cfg.name, "Labels": cfg.labels}, "UpdateStatus": {"State": "completed"}}
    attrs.update(over)
    return parse_service(attrs)


def test_parse_service_reads_id_version_hash_and_state():
    cfg = desired()
    f = facts_of(cfg)
    assert (f.id, f.version, f.config_hash, f.update_state) == ("svc1", 42, cfg.config_hash, "completed")
    assert f.config_text == cfg.describe()
    assert parse_service({"ID": "x", "Spec": {}}).config_hash == ""


def test_absent_service_is_created_then_waited_for():
    cfg = desired()
    [change] = plan_service(cfg, None)
    assert (change.target, change.action) == ("app:web:service", "create")
    create, wait = (s.op for s in change.steps)
    assert isinstance(create, EngineCall) and create.op == "service.create"
    spec = thaw(create.get("spec"))
    assert spec["name"] == "shop-prod-web"
    assert spec["labels"]["dockyard.config-hash"] == cfg.config_hash
    assert isinstance(wait, Wait) and wait.probe == "service.converged"
    assert wait.get("config_hash") == cfg.config_hash and wait.get("replicas") == 3
    assert 60 < wait.timeout < 600


def test_equal_hash_plans_nothing():
    cfg = desired()
    assert plan_service(cfg, facts_of(cfg)) == []


def test_changed_hash_updates_with_the_whole_spec_and_the_observed_version():
    old = desired()
    new = desired(env={"V": "2"})
    [change] = plan_service(new, facts_of(old))
    assert (change.action, change.reason) == ("update", "config hash differs")
    update = change.steps[0].op
    assert update.op == "service.update"
    assert update.get("id") == "svc1" and update.get("version") == 42
    assert thaw(update.get("spec"))["task_template"]["ContainerSpec"]["Env"][0] == "V=2"
    assert change.before == old.describe() and change.after == new.describe()
    assert change.steps[1].op.probe == "service.converged"


def test_a_rolled_back_service_carries_the_old_hash_so_the_next_run_updates_again():
    old, new = desired(), desired(env={"V": "2"})
    rolled_back = facts_of(old, UpdateStatus={"State": "rollback_completed"})
    assert [c.action for c in plan_service(new, rolled_back)] == ["update"]


def test_network_and_secret_are_created_when_absent_before_the_service():
    cfg = desired()
    changes = plan_app_service(cfg, None, networks=[], secrets=[])
    assert [c.target for c in changes] == ["app:web:network", "app:web:secret:DB_PASSWORD", "app:web:service"]
    net = changes[0].steps[0].op
    assert net.op == "network.create" and net.get("driver") == "overlay"
    secret = changes[1].steps[0].op
    assert secret.op == "secret.create"
    assert secret.get("name") == cfg.secrets[0].name and secret.get("env_name") == "DB_PASSWORD"
    assert secret.get("digest") == DIGEST
    present = plan_app_service(cfg, facts_of(cfg), networks=["shop-prod-web"], secrets=[cfg.secrets[0].name])
    assert present == []


def test_no_plan_holds_a_secret_value():
    cfg = desired()
    changes = plan_app_service(cfg, None, networks=[], secrets=[])
    text = json.dumps([c.to_json() for c in changes], default=str)
    assert "DB_PASSWORD" in text and SECRET not in text


def test_with_secret_ids_fills_each_reference_by_name():
    cfg = desired()
    spec = thaw(plan_service(cfg, None)[0].steps[0].op.get("spec"))
    assert spec["task_template"]["ContainerSpec"]["Secrets"][0]["SecretID"] == ""
    filled = with_secret_ids(spec, {cfg.secrets[0].name: "sid-1"})
    assert filled["task_template"]["ContainerSpec"]["Secrets"][0]["SecretID"] == "sid-1"
    assert spec["task_template"]["ContainerSpec"]["Secrets"][0]["SecretID"] == ""  # a copy
