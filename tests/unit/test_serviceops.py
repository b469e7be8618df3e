"""The Swarm service executor against a recorded fake of docker-py's APIClient (no engine)."""

from __future__ import annotations

import hashlib

import pytest

from provision.appops import DeployContext
from provision.errors import StepFailed
from provision.ops import EngineCall, Wait, params
from provision.serviceops import converge_state, running_new

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-value-XYZ"
DIGEST = "sha256:" + hashlib.sha256(SECRET.encode()).hexdigest()
HASH = "h1"


class FakeApi:
    def __init__(self, states: list[tuple[str, int]] | None = None) -> None:
        self.calls: list[tuple] = []
        self.states = list(states or [])
        self.secret_store = {"shop-prod-web-DB_PASSWORD-abc": "sid-1"}

    def create_secret(self, name, data, labels=None):
        self.calls.append(("create_secret", name, labels))
        self.secret_store[name] = "sid-new"
        return {"ID": "sid-new"}

    def secrets(self, filters):
        return [{"ID": i, "Spec": {"Name": n}} for n, i in self.secret_store.items() if n in filters["name"]]

    def create_service(self, **kw):
        self.calls.append(("create_service", kw))
        return {"ID": "svc1"}

    def update_service(self, id, version, **kw):
        self.calls.append(("update_service", id, version, kw))

    def _state(self):
        return self.states[0] if len(self.states) == 1 else self.states.pop(0)

    def tasks(self, filters):
        new = {"Status": {"State": "running"}, "Spec": {"ContainerSpec": {"Labels": {"dockyard.config-hash": HASH}}}}
        old = {"Status": {"State": "running"}, "Spec": {"ContainerSpec": {"Labels": {"dockyard.config-hash": "h0"}}}}
        running = self._state()[1]
        return [new] * running + [old] * (3 - running)  # the old version's tasks do not count

    def inspect_service(self, name):
        return {"Spec": {"Labels": {"dockyard.config-hash": HASH}},
                "UpdateStatus": {"State": self.states[0][0], "Message": "update rolled back due to failure"}}


class FakeDocker:
    def __init__(self, api: FakeApi) -> None:
        self.api = api


class FakeRemote:
    def __init__(self, api: FakeApi) -> None:
        self._docker = FakeDocker(api)

    def docker(self):
        return self._docker


class FakeSecrets:
    def __init__(self, value: str) -> None:
        self._value = value

    def value(self, name: str) -> str:
        return self._value


def ctx(api: FakeApi, value: str = SECRET) -> DeployContext:
    return DeployContext(remote=FakeRemote(api), secrets=FakeSecrets(value))


def test_secret_create_sends_the_value_checked_against_the_digest():
    api = FakeApi()
    call = EngineCall("secret.create", params(name="n1", env_name="DB_PASSWORD", digest=DIGEST,
                                              labels={"dockyard.app": "web"}))
    ctx(api).execute(call)
    assert api.calls == [("create_secret", "n1", {"dockyard.app": "web"})]
    with pytest.raises(StepFailed, match="changed while deploying") as err:
        ctx(FakeApi(), value="another").execute(call)
    assert "another" not in str(err.value)


def test_service_create_resolves_secret_ids_by_name():
    api = FakeApi()
    spec = {"name": "shop-prod-web", "task_template": {"ContainerSpec": {"Image": "i", "Secrets": [
        {"File": {"Name": "DB_PASSWORD"}, "SecretID": "", "SecretName": "shop-prod-web-DB_PASSWORD-abc"}]}}}
    ctx(api).execute(EngineCall("service.create", params(spec=spec)))
    [(what, kw)] = api.calls
    assert what == "create_service"
    assert kw["task_template"]["ContainerSpec"]["Secrets"][0]["SecretID"] == "sid-1"
    ctx(api).execute(EngineCall("service.update", params(id="svc1", version=7, spec=spec)))
    assert api.calls[1][:3] == ("update_service", "svc1", 7)


def test_a_missing_secret_fails_before_the_service_is_touched():
    api = FakeApi()
    spec = {"name": "s", "task_template": {"ContainerSpec": {"Image": "i", "Secrets": [
        {"File": {"Name": "X"}, "SecretID": "", "SecretName": "nope"}]}}}
    with pytest.raises(StepFailed, match="nope is missing"):
        ctx(api).execute(EngineCall("service.create", params(spec=spec)))
    assert api.calls == []


@pytest.mark.parametrize(("state", "running", "want"), [
    ("completed", 3, "done"), ("", 3, "done"), ("updating", 3, "wait"), ("completed", 2, "wait"),
    ("rollback_started", 3, "wait"),
    ("rollback_completed", 3, "failed: the update rollback completed (boom)"),
    ("paused", 1, "failed: the update paused (boom)"),
])
def test_converge_state(state, running, want):
    attrs = {"Spec": {"Labels": {"dockyard.config-hash": HASH}}, "UpdateStatus": {"State": state, "Message": "boom"}}
    if not state:
        del attrs["UpdateStatus"]
    assert converge_state(attrs, HASH, running, 3) == want


def test_converge_state_notices_a_foreign_spec():
    attrs = {"Spec": {"Labels": {"dockyard.config-hash": "other"}}, "UpdateStatus": {"State": "completed"}}
    assert converge_state(attrs, HASH, 3, 3).startswith("failed: ")


def _wait(timeout: float = 30.0) -> Wait:
    return Wait("service.converged", params(service="shop-prod-web", config_hash=HASH, replicas=3,
                                            label="app web"), timeout=timeout)


def test_wait_converged_returns_once_every_replica_runs(monkeypatch):
    slept = []
    monkeypatch.setattr("provision.serviceops.time.sleep", slept.append)
    api = FakeApi([("updating", 1), ("updating", 2), ("completed", 3)])
    ctx(api).execute(_wait())
    assert len(api.states) == 1 and len(slept) == 2


def test_wait_converged_fails_on_a_rollback(monkeypatch):
    monkeypatch.setattr("provision.serviceops.time.sleep", lambda s: None)
    with pytest.raises(StepFailed, match=r"rollback completed.*old version keeps running"):
        ctx(FakeApi([("rollback_completed", 3)])).execute(_wait())


def test_wait_converged_is_bounded(monkeypatch):
    ticks = iter(range(0, 1000, 10))
    monkeypatch.setattr("provision.serviceops.time.monotonic", lambda: next(ticks))
    monkeypatch.setattr("provision.serviceops.time.sleep", lambda s: None)
    with pytest.raises(StepFailed, match=r"1/3 replicas .* within 30s"):
        ctx(FakeApi([("updating", 1)])).execute(_wait(30.0))


def test_only_running_tasks_of_the_new_version_count():
    def task(state: str, config_hash: str) -> dict:
        labels = {"dockyard.config-hash": config_hash}
        return {"Status": {"State": state}, "Spec": {"ContainerSpec": {"Labels": labels}}}

    tasks = [task("running", HASH), task("running", "h0"), task("starting", HASH), {"Status": {"State": "running"}}]
    assert running_new(tasks, HASH) == 1
