"""Old Swarm secrets: once every service converged, this environment's dockyard-labelled secrets that no service
references (Spec or PreviousSpec) are removed; the plan is pure (facts → removals), the executor tolerant."""

from __future__ import annotations

import pytest

from provision.errors import StepFailed
from provision.ops import EngineCall, params
from provision.plan.services import SecretFact, parse_secret, parse_service, plan_secret_cleanup
from tests.unit.test_serviceops import FakeApi, ctx

pytestmark = pytest.mark.unit

OURS = {"dockyard.project": "shop", "dockyard.environment": "prod"}


def secret(name: str, app: str = "web", **labels: str) -> SecretFact:
    return parse_secret({"ID": f"id-{name}", "Spec": {"Name": name, "Labels": {**OURS, "dockyard.app": app,
                                                                                 **labels}}})


def svc(*refs: str, previous: tuple[str, ...] = ()):
    def spec(names):
        return {"TaskTemplate": {"ContainerSpec": {"Secrets": [{"SecretName": n, "SecretID": "x"} for n in names]}}}
    attrs = {"ID": "s1", "Spec": {"Name": "shop-prod-web", **spec(refs)}}
    if previous:
        attrs["PreviousSpec"] = spec(previous)
    return parse_service(attrs)


def removed(secrets, services) -> list[str]:
    return [c.steps[0].op.get("name") for c in plan_secret_cleanup("shop", "prod", secrets, services)]


def test_parse_service_reads_secret_refs_of_spec_and_previous_spec():
    assert svc("a", previous=("b",)).secret_refs == frozenset({"a", "b"})
    assert parse_service({"ID": "x", "Spec": {}}).secret_refs == frozenset()


def test_an_unreferenced_secret_of_ours_is_removed_by_id():
    changes = plan_secret_cleanup("shop", "prod", [secret("web-A-old"), secret("web-A-new")], [svc("web-A-new")])
    [change] = changes
    assert change.action == "delete" and change.target == "app:web:secret:web-A-old"
    op = change.steps[0].op
    assert isinstance(op, EngineCall) and op.op == "secret.remove"
    assert (op.get("id"), op.get("name")) == ("id-web-A-old", "web-A-old")


def test_a_secret_the_previous_spec_uses_is_kept_for_a_rollback():
    assert removed([secret("old"), secret("new")], [svc("new", previous=("old",))]) == []


def test_references_from_any_service_count():
    other = parse_service({"ID": "s2", "Spec": {"Name": "shop-prod-api", "TaskTemplate": {"ContainerSpec": {
        "Secrets": [{"SecretName": "shared"}]}}}})
    assert removed([secret("shared"), secret("gone")], [svc("x"), other]) == ["gone"]


def test_only_ours_by_label():
    foreign = [
        parse_secret({"ID": "1", "Spec": {"Name": "f1", "Labels": {"dockyard.project": "shop",
                                                                   "dockyard.environment": "staging",
                                                                   "dockyard.app": "web"}}}),
        parse_secret({"ID": "2", "Spec": {"Name": "f2", "Labels": {"dockyard.project": "other",
                                                                   "dockyard.environment": "prod",
                                                                   "dockyard.app": "web"}}}),
        parse_secret({"ID": "3", "Spec": {"Name": "f3", "Labels": OURS}}),  # no app label: not an app's secret
        parse_secret({"ID": "4", "Spec": {"Name": "f4"}}),
    ]
    assert removed([*foreign, secret("mine")], []) == ["mine"]


def test_nothing_to_remove_is_no_change():
    assert plan_secret_cleanup("shop", "prod", [secret("a")], [svc("a")]) == []
    assert plan_secret_cleanup("shop", "prod", [], [svc("a")]) == []


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.response = type("R", (), {"status_code": status})()
        self.status_code = status


class RemovingApi(FakeApi):
    def __init__(self, error: Exception | None = None) -> None:
        super().__init__()
        self.error = error

    def remove_secret(self, id):
        self.calls.append(("remove_secret", id))
        if self.error is not None:
            raise self.error


def _remove() -> EngineCall:
    return EngineCall("secret.remove", params(id="sid-9", name="shop-prod-web-A-old"))


def test_remove_secret_calls_the_api_with_the_id():
    api = RemovingApi()
    ctx(api).execute(_remove())
    assert api.calls == [("remove_secret", "sid-9")]


@pytest.mark.parametrize("error", [ApiError(404, "not found"), ApiError(400, "secret is in use by service x")])
def test_gone_or_in_use_again_is_not_a_failure(error):
    api = RemovingApi(error)
    ctx(api).execute(_remove())
    assert api.calls == [("remove_secret", "sid-9")]


def test_another_error_fails_the_step():
    with pytest.raises(StepFailed, match="removing swarm secret shop-prod-web-A-old failed"):
        ctx(RemovingApi(ApiError(500, "boom"))).execute(_remove())
