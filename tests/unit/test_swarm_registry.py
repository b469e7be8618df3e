"""Swarm mode with a top-level `registry:` (provision.plan.push): a built app is built once on the first host,
pushed from there, and its service runs `<server>/<project>/<app>@digest` with the registry's credentials as
the X-Registry-Auth header; the other hosts get neither a build nor a shipped image. The password only ever
reaches the Engine API's auth (never an op, an argv, a description, an error)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from provision import deploy_swarm as swarm_mod
from provision.changes import Status
from provision.commands.service import service_of
from provision.deploy import desired_apps
from provision.deploy_images import registry_secrets
from provision.errors import InputError, StepFailed
from provision.facts.apps import AppFacts, ImageFact
from provision.facts.ipvs import IpvsFact
from provision.imageops import push_image
from provision.ops import EngineCall, thaw
from provision.plan.push import plan_push, push_auth, push_pin, registry_ref
from provision.plan.services import plan_service
from provision.playbook import load_playbook
from provision.registry import RegistryAuth
from provision.secrets import SecretSource
from provision.serviceops import create_service, service_body, update_service

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "apps"
SERVER = "registry.example.com:5000"
PASSWORD = "pa55-W0rd-never-shown"
DIGEST = "sha256:" + "e" * 64
AUTH = RegistryAuth(SERVER, "ci", "REGISTRY_PASSWORD")


def playbook(tmp_path: Path, *, mode: str = "swarm", registry: dict[str, Any] | None = None, **top: Any) -> Any:
    shutil.copytree(FIXTURES / "flask", tmp_path / "flask", dirs_exist_ok=True)
    doc: dict[str, Any] = {
        "project": "shop", "environment": "prod", "provider": "existing",
        "host": {"addresses": ["192.0.2.1", "192.0.2.2"]} if mode == "swarm" else {"address": "192.0.2.1"},
        "engine": {"mode": mode},
        "apps": {"web": {"template": "python-web", "context": "flask", "port": 8000,
                         "vars": {"base_image": "py:1"}}},
        **top,
    }
    if registry is not None:
        doc["registry"] = registry
    path = tmp_path / "prod.yml"
    path.write_text(yaml.safe_dump(doc))
    return load_playbook(path)


def with_registry(tmp_path: Path, **kw: Any) -> Any:
    return playbook(tmp_path, registry={"server": SERVER, "username": "ci", "password_secret": "REGISTRY_PASSWORD"},
                    **kw)


def built(pb: Any) -> Any:
    (d,) = desired_apps(pb, ["web"], SecretSource(pb, environ={"REGISTRY_PASSWORD": PASSWORD}), "root")
    return d


# --- who pushes, and where ---------------------------------------------------------------------------------

def test_swarm_with_a_top_level_registry_pushes_there(tmp_path: Path) -> None:
    assert push_auth(with_registry(tmp_path)) == AUTH


def test_no_registry_or_standalone_mode_pushes_nothing(tmp_path: Path) -> None:
    assert push_auth(playbook(tmp_path / "a")) is None
    assert push_auth(with_registry(tmp_path / "b", mode="standalone")) is None


def test_an_ecr_registry_pushes_with_boto3_credentials(tmp_path: Path) -> None:
    server = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    auth = push_auth(playbook(tmp_path, registry={"server": server}))
    assert auth == RegistryAuth(server, ecr_region="eu-west-1")


def test_the_registry_reference_is_the_local_tag_under_the_server(tmp_path: Path) -> None:
    d = built(with_registry(tmp_path))
    assert registry_ref(SERVER, d.image) == f"{SERVER}/shop/web:{d.build_hash[:12]}"
    # the same input gives the same reference: nothing per run in it
    assert registry_ref(SERVER, built(with_registry(tmp_path)).image) == registry_ref(SERVER, d.image)


def test_the_push_password_is_a_secret_deploy_needs(tmp_path: Path) -> None:
    pb = with_registry(tmp_path)
    assert registry_secrets(pb, ["web"]) == {"REGISTRY_PASSWORD": "registry.password_secret"}
    assert registry_secrets(with_registry(tmp_path / "s", mode="standalone"), ["web"]) == {}
    with pytest.raises(InputError) as err:
        desired_apps(pb, ["web"], SecretSource(pb, environ={}), "root")
    assert "REGISTRY_PASSWORD" in str(err.value) and "registry.password_secret" in str(err.value)


# --- the push plan -----------------------------------------------------------------------------------------

def test_an_image_never_pushed_is_pushed_from_the_first_host(tmp_path: Path) -> None:
    d = built(with_registry(tmp_path))
    ref = registry_ref(SERVER, d.image)
    for digests in (None, [], [f"elsewhere.io/shop/web@{DIGEST}"]):
        [change] = plan_push(d, AUTH, digests)
        [step] = change.steps
        assert isinstance(step.op, EngineCall) and step.op.op == "image.push"
        assert (step.op.get("source"), step.op.get("ref"), step.op.get("auth")) == (d.image, ref, AUTH)
        assert PASSWORD not in repr(change) and PASSWORD not in step.description


def test_an_image_pushed_before_is_not_pushed_again(tmp_path: Path) -> None:
    d = built(with_registry(tmp_path))
    ref = registry_ref(SERVER, d.image)
    digests = [f"shop/web@sha256:{'1' * 64}", f"{SERVER}/shop/web@{DIGEST}"]
    assert plan_push(d, AUTH, digests) == []
    assert push_pin(ref, digests) == f"{SERVER}/shop/web@{DIGEST}"


def test_the_service_runs_the_pushed_digest_and_its_hash_covers_it(tmp_path: Path) -> None:
    pb = with_registry(tmp_path)
    d = built(pb)
    pin = f"{SERVER}/shop/web@{DIGEST}"
    pinned = service_of(d.container, pb.apps["web"], image_pin=pin)
    assert pinned.api_kwargs({})["task_template"]["ContainerSpec"]["Image"] == pin
    plain = service_of(d.container, pb.apps["web"])
    assert plain.config_hash != pinned.config_hash  # a registry added: the service moves to the pushed image
    assert service_of(d.container, pb.apps["web"], image_pin=pin).config_hash == pinned.config_hash
    other = service_of(d.container, pb.apps["web"], image_pin=f"{SERVER}/shop/web@sha256:{'f' * 64}")
    assert other.config_hash != pinned.config_hash


def test_the_service_call_carries_the_auth_by_name_only(tmp_path: Path) -> None:
    pb = with_registry(tmp_path)
    svc = service_of(built(pb).container, pb.apps["web"], image_pin=f"{SERVER}/shop/web@{DIGEST}")
    [change] = plan_service(svc, None, auth=AUTH)
    create = change.steps[0].op
    assert isinstance(create, EngineCall) and create.get("auth") == AUTH
    assert PASSWORD not in repr(change)
    [plain] = plan_service(svc, None)
    assert dict(plain.steps[0].op.params).get("auth") is None  # no registry: the call as before


# --- deploy over two hosts (check mode: the plan each host gets) -------------------------------------------

class NotFound(Exception):
    response = type("R", (), {"status_code": 404})()


class Api:
    def __init__(self, images: dict[str, dict[str, Any]]) -> None:
        self.images = images

    def inspect_image(self, ref: str) -> dict[str, Any]:
        if ref not in self.images:
            raise NotFound(ref)
        return self.images[ref]


class Remote:
    def __init__(self, label: str, images: dict[str, dict[str, Any]] | None = None,
                 facts: AppFacts | None = None) -> None:
        self.label, self.api, self.facts = label, Api(images or {}), facts

    def docker(self) -> Any:
        return self


def deploy(monkeypatch: pytest.MonkeyPatch, pb: Any, hosts: list[Remote]) -> Any:
    monkeypatch.setattr(swarm_mod, "gather_remote",
                        lambda remote, project, env: remote.facts or AppFacts(project, env))
    monkeypatch.setattr(swarm_mod, "gather_ipvs", lambda remote: IpvsFact("absent"))
    monkeypatch.setattr(swarm_mod, "service_facts", lambda *a, **k: ({}, set(), []))
    return swarm_mod.deploy_swarm(pb, [(h.label, h) for h in hosts], [built(pb)],
                                  secrets=SecretSource(pb, environ={"REGISTRY_PASSWORD": PASSWORD}), check=True)


def tasks(recap: Any) -> dict[str, Any]:
    return {r.task: r for r in recap.results}


def test_deploy_builds_and_pushes_on_the_first_host_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pb = with_registry(tmp_path)
    result = deploy(monkeypatch, pb, [Remote("h1"), Remote("h2")])
    first, second = (tasks(r) for r in result.recaps)
    assert first["app web: image"].status == Status.CHANGED
    assert first["app web: push"].status == Status.CHANGED
    assert not any(name.startswith("app web: image") or "push" in name for name in second)
    service = first["app web: service"].changes[-1].steps[0].op
    assert service.op == "service.create" and service.get("auth") == AUTH
    assert PASSWORD not in repr(result)


def test_without_a_registry_every_host_builds_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pb = playbook(tmp_path)
    result = deploy(monkeypatch, pb, [Remote("h1"), Remote("h2")])
    for recap in result.recaps:
        assert tasks(recap)["app web: image"].status == Status.CHANGED
        assert "app web: push" not in tasks(recap)
    service = tasks(result.recaps[0])["app web: service"].changes[-1].steps[0].op
    assert dict(service.params).get("auth") is None


def test_an_image_built_and_pushed_before_is_left_alone_and_pinned(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pb = with_registry(tmp_path)
    d = built(pb)
    ref = registry_ref(SERVER, d.image)
    facts = AppFacts("shop", "prod", images=(ImageFact("sha256:" + "a" * 64, (d.image, ref), "web", d.build_hash,
                                                       0, 0),))
    first = Remote("h1", {ref: {"RepoDigests": [f"{SERVER}/shop/web@{DIGEST}"]}}, facts)
    result = deploy(monkeypatch, pb, [first, Remote("h2")])
    done = tasks(result.recaps[0])
    assert done["app web: image"].status == Status.OK and done["app web: push"].status == Status.OK
    create = done["app web: service"].changes[-1].steps[0].op
    spec = thaw(create.get("spec"))
    assert spec["task_template"]["ContainerSpec"]["Image"] == f"{SERVER}/shop/web@{DIGEST}"


# --- the executors: the password only in the Engine API's auth ---------------------------------------------

class Ctx:
    def __init__(self, api: Any, pb: Any) -> None:
        self.api, self.secrets, self.logged = api, SecretSource(pb, environ={"REGISTRY_PASSWORD": PASSWORD}), []

    def docker(self) -> Any:
        return self

    def progress(self, what: str, **kw: Any) -> Any:
        class P:
            def __enter__(self) -> Any:
                return self

            def __exit__(self, *a: Any) -> None:
                return None

            def update(self, text: str) -> None:
                return None
        return P()

    def log(self, text: str) -> None:
        self.logged.append(text)


class PushApi:
    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self.chunks, self.calls = chunks, []

    def tag(self, *args: Any) -> None:
        self.calls.append(("tag", args))

    def push(self, repository: str, **kw: Any) -> Any:
        self.calls.append(("push", repository, kw))
        return iter(self.chunks)


def test_push_tags_and_pushes_with_the_credentials_in_auth_config(tmp_path: Path) -> None:
    api = PushApi([{"status": "Pushed"}, {"status": f"1: digest: {DIGEST}"}])
    push_image(Ctx(api, with_registry(tmp_path)), app="web", source="shop/web:abc", ref=f"{SERVER}/shop/web:abc",
               auth=AUTH)
    assert api.calls[0] == ("tag", ("shop/web:abc", f"{SERVER}/shop/web", "abc"))
    _, repository, kw = api.calls[1]
    assert repository == f"{SERVER}/shop/web" and kw["tag"] == "abc"
    assert kw["auth_config"] == {"username": "ci", "password": PASSWORD, "serveraddress": SERVER}


def test_a_failed_push_never_shows_the_password(tmp_path: Path) -> None:
    api = PushApi([{"error": f"denied: bad credentials {PASSWORD}"}])
    with pytest.raises(StepFailed) as err:
        push_image(Ctx(api, with_registry(tmp_path)), app="web", source="s:1", ref=f"{SERVER}/shop/web:1", auth=AUTH)
    assert "denied" in str(err.value) and PASSWORD not in str(err.value)


def test_no_auth_sends_an_empty_auth_config_never_this_machines_credentials(tmp_path: Path) -> None:
    api = PushApi([])
    push_image(Ctx(api, playbook(tmp_path)), app="web", source="s:1", ref=f"{SERVER}/shop/web:1")
    assert api.calls[1][2]["auth_config"] == {}


class Response:
    def __init__(self, status: int, body: dict[str, Any] | None = None, text: str = "") -> None:
        self.status_code, self._body, self.text = status, body, text
        self.content = json.dumps(body).encode() if body is not None else b""

    def json(self) -> Any:
        return self._body


class ServiceApi:
    base_url, api_version = "http+docker://ssh", "1.41"

    def __init__(self, response: Response) -> None:
        self.response, self.posts = response, []

    def secrets(self, filters: Any) -> list[Any]:
        return []

    def post(self, url: str, **kw: Any) -> Response:
        self.posts.append((url, kw))
        return self.response


def test_service_create_with_auth_sends_the_registry_header(tmp_path: Path) -> None:
    pb = with_registry(tmp_path)
    svc = service_of(built(pb).container, pb.apps["web"], image_pin=f"{SERVER}/shop/web@{DIGEST}")
    api = ServiceApi(Response(201, {"ID": "svc9"}))
    assert create_service(Ctx(api, pb), spec=svc.api_kwargs({}), auth=AUTH) == "svc9"
    [(url, kw)] = api.posts
    assert url == "http+docker://ssh/v1.41/services/create"
    header = json.loads(base64.urlsafe_b64decode(kw["headers"]["X-Registry-Auth"]))
    assert header == {"username": "ci", "password": PASSWORD, "serveraddress": SERVER}
    assert kw["json"] == service_body(svc.api_kwargs({}))
    assert kw["json"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{SERVER}/shop/web@{DIGEST}"
    assert set(kw["json"]) == {"Name", "Labels", "TaskTemplate", "Mode", "UpdateConfig", "RollbackConfig",
                               "EndpointSpec"}


def test_service_update_with_auth_names_the_version_and_hides_the_password(tmp_path: Path) -> None:
    pb = with_registry(tmp_path)
    svc = service_of(built(pb).container, pb.apps["web"])
    api = ServiceApi(Response(500, None, f"rpc error: {PASSWORD} rejected"))
    with pytest.raises(StepFailed) as err:
        update_service(Ctx(api, pb), id="svc1", version=7, spec=svc.api_kwargs({}), auth=AUTH)
    assert "HTTP 500" in str(err.value) and PASSWORD not in str(err.value)
    [(url, kw)] = api.posts
    assert url.endswith("/services/svc1/update") and kw["params"] == {"version": 7}
