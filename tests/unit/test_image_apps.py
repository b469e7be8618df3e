"""Image apps (`image: redis:7.2`): the spec, the desired container (no render, no build), the pull/ship plan,
the config hash covering the image id, the executor's auth and fallback, ECR credentials (moto), and that a
registry password never shows in an op, an argv, a describe, a Change or --json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from provision.changes import Change
from provision.deploy import desired_apps
from provision.deploy_images import image_task, registry_secrets, with_image_id
from provision.errors import InputError, StepFailed
from provision.facts.apps import parse, parse_container
from provision.imageops import pull_image
from provision.ops import EngineCall, render, to_json
from provision.plan.apps import plan_container
from provision.plan.images import PENDING_ID, PulledImage, image_id_after, plan_pull
from provision.playbook import load_playbook
from provision.registry import RegistryAuth, auth_config, ecr_credentials
from provision.runner import Runner
from provision.secrets import SecretSource

pytestmark = pytest.mark.unit

PASSWORD = "reg1stry-pa55word-xyz"
ID_A = "sha256:" + "a" * 64
ID_B = "sha256:" + "b" * 64
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def load(tmp_path: Path, provider: str = "existing", top: dict[str, Any] | None = None, **app: Any) -> Any:
    doc: dict[str, Any] = {"project": "shop", "environment": "prod", "provider": provider,
                           "apps": {"cache": {"image": "redis:7.2", "port": 6379, **app}}}
    if provider == "existing":
        doc["host"] = {"address": "192.0.2.1"}
    doc.update(top or {})
    path = tmp_path / "prod.yml"
    path.write_text(yaml.safe_dump(doc))
    return load_playbook(path)


def desired(tmp_path: Path, provider: str = "existing", environ: dict[str, str] | None = None, **kw: Any) -> Any:
    pb = load(tmp_path, provider, **kw)
    (d,) = desired_apps(pb, ["cache"], SecretSource(pb, environ=environ or {}), "root")
    return d


# --- spec and desired state ---------------------------------------------------------------------------------


def test_image_app_is_not_rendered_and_runs_as_the_image_wants(tmp_path: Path) -> None:
    d = desired(tmp_path, volumes={"data": "/data"}, env={"MODE": "x"})
    assert d.build is None and d.pulled == PulledImage("redis:7.2", "missing", None, ship=False)
    cfg = d.container
    assert cfg.image == "redis:7.2" and cfg.pulled and not cfg.read_only and cfg.tmpfs == ()
    argv = with_image_id(d, ID_A).container.create_argv()
    assert argv[-1] == "redis:7.2" and "--read-only" not in argv and "--user" not in argv
    assert "dockyard.image=redis:7.2" in argv and f"dockyard.build-hash={ID_A}" in argv
    assert "type=volume,source=shop-prod-cache-data,target=/data" in argv and "MODE=x" in argv
    assert "image id: aaaaaaaaaaaa" in with_image_id(d, ID_A).container.describe()


def test_read_only_when_asked_and_ship_on_local_or_pull_never(tmp_path: Path) -> None:
    assert desired(tmp_path, read_only=True).container.read_only is True
    assert desired(tmp_path, "local").pulled.ship is True
    assert desired(tmp_path, pull="never").pulled.ship is True
    assert desired(tmp_path, pull="always").pulled == PulledImage("redis:7.2", "always", None, ship=False)


def test_registry_password_secret_must_be_set_and_is_located(tmp_path: Path) -> None:
    top = {"registry": {"server": "ghcr.io", "username": "ci", "password_secret": "GHCR_TOKEN"}}
    pb = load(tmp_path, top=top, image="ghcr.io/acme/api:1.4")
    assert registry_secrets(pb, ["cache"]) == {"GHCR_TOKEN": "registry.password_secret"}
    with pytest.raises(InputError) as info:
        desired_apps(pb, ["cache"], SecretSource(pb, environ={}), "root")
    (problem,) = info.value.problems
    assert problem.key_path == "registry.password_secret" and "GHCR_TOKEN" in problem.message
    # a public image from another registry does not need the playbook's registry
    assert registry_secrets(load(tmp_path, top=top), ["cache"]) == {}


def test_ecr_registry_needs_no_credentials(tmp_path: Path) -> None:
    d = desired(tmp_path, image=f"{ECR}/api:7", registry={"server": ECR})
    assert d.pulled.auth == RegistryAuth(ECR, ecr_region="eu-west-1")


# --- the plan -----------------------------------------------------------------------------------------------


def _op(changes: list[Change]) -> EngineCall:
    (change,) = changes
    (step,) = change.steps
    assert isinstance(step.op, EngineCall)
    return step.op


def test_pull_when_absent_nothing_when_present() -> None:
    want = PulledImage("redis:7.2")
    op = _op(plan_pull("cache", want, None, None))
    assert op.op == "image.pull" and op.get("ref") == "redis:7.2" and op.get("fallback") == "ship"
    assert plan_pull("cache", want, ID_A, None) == []  # pull: missing, and a moved tag is not fetched again
    assert _op(plan_pull("cache", PulledImage("redis:7.2", "always"), ID_A, None)).op == "image.pull"


def test_ship_on_local_when_the_host_lacks_it_or_holds_another() -> None:
    want = PulledImage("acme/redis-like:1", ship=True)
    op = _op(plan_pull("cache", want, None, ID_A))
    assert op.op == "image.ship" and op.get("refs") == ("acme/redis-like:1",)
    assert _op(plan_pull("cache", want, ID_B, ID_A)).op == "image.ship"
    assert plan_pull("cache", want, ID_A, ID_A) == []
    assert plan_pull("cache", want, ID_A, None) == []  # nothing here to send; the host's is used


def test_the_id_the_container_runs() -> None:
    want = PulledImage("redis:7.2")
    assert image_id_after(want, [], ID_A, None, check=False) == ID_A
    pull = plan_pull("cache", want, None, None)
    assert image_id_after(want, pull, None, None, check=False) is None  # read from the host after the pull
    assert image_id_after(want, pull, None, None, check=True) == PENDING_ID
    ship = PulledImage("x:1", ship=True)
    assert image_id_after(ship, plan_pull("c", ship, None, ID_B), None, ID_B, check=False) == ID_B


def test_config_hash_covers_the_image_id(tmp_path: Path) -> None:
    d = desired(tmp_path)
    a, b = with_image_id(d, ID_A), with_image_id(d, ID_B)
    assert a.container.config_hash != b.container.config_hash
    assert a.container.config_hash == with_image_id(d, ID_A).container.config_hash
    running = {"Id": "c1", "Names": [f"/{a.container.name}"], "Image": "redis:7.2", "ImageID": ID_A,
               "State": "running", "Status": "Up 1 minute", "Created": 1, "Labels": a.container.labels}
    facts = parse("shop", "prod", [running], [], [], [])
    assert plan_container(a, facts) == []  # same id: nothing to do
    (change,) = plan_container(b, facts)  # the tag moved to another image: replaced
    assert change.action == "replace" and "config hash differs" in change.reason


def test_status_reads_the_reference_label_and_refuses_hostile_ones(tmp_path: Path) -> None:
    cfg = with_image_id(desired(tmp_path), ID_A).container
    doc = {"Id": "c1", "Names": ["/x"], "State": "running", "Status": "Up", "Labels": cfg.labels}
    assert parse_container(doc).image_ref == "redis:7.2"
    doc["Labels"] = {**cfg.labels, "dockyard.image": "redis:7.2\x1b[2J"}
    assert parse_container(doc).image_ref == ""


# --- the executor -------------------------------------------------------------------------------------------


class FakeApi:
    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.calls: list[tuple[str, dict[str, str]]] = []

    def pull(self, ref: str, *, stream: bool, decode: bool, auth_config: dict[str, str]) -> Any:
        self.calls.append((ref, auth_config))
        if self.fail:
            raise RuntimeError(self.fail)
        return iter([{"status": "Pulling"}, {"status": "Digest: sha256:x"}])


class FakeLocal:
    def __init__(self, has: bool) -> None:
        self.images = self
        self.has = has

    def get(self, ref: str) -> Any:
        if not self.has:
            raise LookupError(ref)
        return object()


class Secrets:
    def value(self, name: str) -> str:
        assert name == "REG_PASSWORD"
        return PASSWORD


@dataclass
class FakeCtx:
    api: FakeApi
    local: FakeLocal = field(default_factory=lambda: FakeLocal(False))
    secrets: Any = field(default_factory=Secrets)
    warnings: list[str] = field(default_factory=list)
    reporter: Any = None

    def __post_init__(self) -> None:
        self.reporter = self

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def log(self, line: str) -> None:
        self.warnings.append(line)

    def docker(self) -> Any:
        return self

    def local_docker(self) -> Any:
        return self.local

    def progress(self, message: str, **kw: Any) -> Any:
        import contextlib

        class P:
            def update(self, text: str) -> None:
                pass

        return contextlib.nullcontext(P())


AUTH = RegistryAuth("registry.example.com", "ci", "REG_PASSWORD")


def test_pull_sends_the_password_only_in_auth_config() -> None:
    ctx = FakeCtx(FakeApi())
    pull_image(ctx, ref="registry.example.com/acme/api:1", app="api", auth=AUTH, fallback="ship")
    assert ctx.api.calls == [("registry.example.com/acme/api:1", {
        "username": "ci", "password": PASSWORD, "serveraddress": "registry.example.com"})]


def test_a_public_pull_sends_an_empty_auth_config_never_this_machines() -> None:
    ctx = FakeCtx(FakeApi())
    pull_image(ctx, ref="redis:7.2", app="cache", fallback="ship")
    assert ctx.api.calls == [("redis:7.2", {})]


def test_failed_pull_ships_from_here_and_says_so_with_the_password_redacted() -> None:
    shipped: list[tuple[str, ...]] = []
    ctx = FakeCtx(FakeApi(fail=f"denied for ci:{PASSWORD}"), FakeLocal(True))
    pull_image(ctx, ref="registry.example.com/acme/api:1", app="api", auth=AUTH, fallback="ship",
               ship=lambda c, *, refs, app: shipped.append(refs))
    assert shipped == [("registry.example.com/acme/api:1",)]
    (warning,) = ctx.warnings
    assert "cannot pull" in warning and "shipping it from this machine's engine" in warning
    assert PASSWORD not in warning and "***" in warning


def test_failed_pull_without_a_local_copy_fails_naming_both() -> None:
    ctx = FakeCtx(FakeApi(fail=f"no route to host; {PASSWORD}"), FakeLocal(False))
    with pytest.raises(StepFailed) as info:
        pull_image(ctx, ref="registry.example.com/acme/api:1", app="api", auth=AUTH, fallback="ship",
                   ship=lambda c, **kw: None)
    assert "this machine's engine does not have it" in str(info.value) and PASSWORD not in str(info.value)


def test_ship_app_missing_everywhere_fails_before_any_step(tmp_path: Path) -> None:
    d = desired(tmp_path, "local", image="acme/redis-like:1")
    runner = Runner("host", ctx=None)
    image_task(runner, None, d, {}, {})
    assert runner.failed and "neither the host nor this machine" in runner.recap.results[-1].message


# --- ECR (moto) and the password in what dockyard shows ---------------------------------------------------------


def test_ecr_credentials_from_boto3_under_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    boto3 = pytest.importorskip("boto3")
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("ecr", region_name="eu-west-1")
        user, password, endpoint = ecr_credentials(client, ECR)
        config, hidden = auth_config(RegistryAuth(ECR, ecr_region="eu-west-1"), lambda n: "", lambda r: client)
    assert user == "AWS" and password and endpoint.startswith("https://")
    assert config["username"] == "AWS" and hidden == (config["password"],)
    assert config["serveraddress"] == endpoint and config["password"] == password


def test_registry_password_never_in_ops_describe_or_json(tmp_path: Path) -> None:
    top = {"registry": {"server": "registry.example.com", "username": "ci", "password_secret": "REG_PASSWORD"}}
    d = desired(tmp_path, top=top, environ={"REG_PASSWORD": PASSWORD}, image="registry.example.com/acme/api:1")
    assert d.pulled.auth == AUTH
    changes = plan_pull("cache", d.pulled, None, None)
    ready = with_image_id(d, ID_A)
    shown = [render(s.op) for c in changes for s in c.steps] + [s.description for c in changes for s in c.steps]
    shown += [json.dumps([to_json(s.op) for c in changes for s in c.steps]), json.dumps([c.data for c in changes])]
    shown += [ready.container.describe(), " ".join(ready.container.create_argv()), repr(d), repr(changes)]
    for text in shown:
        assert PASSWORD not in text
    assert "secret REG_PASSWORD" in shown[0] and "as ci at registry.example.com" in shown[1]


def test_good_playbook_of_image_apps_resolves_registries() -> None:
    pb = load_playbook(Path(__file__).parent / "good_playbooks" / "images.yml")
    auths = {n: d.auth for n, d in (
        (n, desired_apps(pb, [n], SecretSource(pb, environ={"GHCR_TOKEN": "t0ken", "POSTGRES_PASSWORD": "pw1"}),
                         "root")[0].pulled) for n in pb.apps)}
    assert auths == {"cache": None, "db": None, "api": RegistryAuth("ghcr.io", "ci-bot", "GHCR_TOKEN"),
                     "worker": RegistryAuth(ECR, ecr_region="eu-west-1"), "mirror": None}
