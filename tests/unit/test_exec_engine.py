"""The Engine executor (DeployContext.execute) with a fake Engine API holding exactly the methods a roll-out
uses, and a fake Remote for the one SSH command of it (`docker create`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from provision.appops import DeployContext
from provision.build import assemble, image_tag
from provision.commands.docker import Health, container_config
from provision.errors import StepFailed
from provision.facts.apps import parse
from provision.ops import EngineCall, params
from provision.plan.apps import DesiredApp, plan_container
from provision.spec import AppSpec

pytestmark = pytest.mark.unit

P, E = "shop", "prod"


class FakeApi:
    """The low-level API calls a roll-out makes; `states` scripts what inspect_container returns."""

    def __init__(self, states: list[dict[str, Any]]) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.states = states

    def rename(self, cid: str, name: str) -> None:
        self.calls.append(("rename", cid, name))

    def remove_container(self, cid: str, force: bool = False) -> None:
        self.calls.append(("remove", cid))

    def stop(self, cid: str, timeout: int = 10) -> None:
        self.calls.append(("stop", cid))

    def start(self, cid: str) -> None:
        self.calls.append(("start", cid))

    def connect_container_to_network(self, cid: str, network: str, aliases: list[str]) -> None:
        self.calls.append(("connect", cid, network))

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return {"State": self.states.pop(0)}

    def logs(self, cid: str, stdout: bool, stderr: bool, tail: int) -> bytes:
        self.calls.append(("logs", cid))
        return b"listening on 8000\nboom: password=hunter2-secret\n"


@dataclass
class FakeClient:
    api: FakeApi


@dataclass
class Result:
    stdout: str


@dataclass
class FakeRemote:
    api: FakeApi
    ran: list[tuple[str, ...]] = field(default_factory=list)

    def docker(self) -> FakeClient:
        return FakeClient(self.api)

    def run(self, argv: Any, *, sudo: bool = False, stdin: bytes | None = None) -> Result:
        self.ran.append(tuple(argv))
        self.api.calls.append(("create",))
        return Result("newid\n")


class Secrets:
    def value(self, name: str) -> str:
        return {"DB_PASSWORD": "hunter2-secret"}[name]


def desired(tmp_path: Path, source: str) -> DesiredApp:
    (tmp_path / "app.py").write_text(source)
    build = assemble(tmp_path, "FROM base\n")
    spec = AppSpec.model_validate({"template": "python-web", "port": 8000, "publish": "127.0.0.1:18080",
                                   "healthcheck": {"http": "/"}, "secrets": ["DB_PASSWORD"]})
    tag = image_tag(P, "web", build.content_hash)
    cfg = container_config(P, E, "web", spec, image=tag, build_hash=build.content_hash,
                           secret_digests={"DB_PASSWORD": "d"}, ssh_user="root", read_only=True)
    return DesiredApp("web", tag, build, cfg, ())


def old_container(d: DesiredApp) -> dict[str, Any]:
    labels = {"dockyard.project": P, "dockyard.environment": E, "dockyard.app": "web",
              "dockyard.config-hash": "f" * 64, "dockyard.build-hash": d.build_hash}
    return {"Id": "old1", "Names": ["/shop-prod-web-ffffffffff"], "Image": d.image, "ImageID": "sha256:i",
            "State": "running", "Status": "Up 2 minutes (healthy)", "Created": 1, "Labels": labels,
            "Ports": [{"IP": "127.0.0.1", "PrivatePort": 8000, "PublicPort": 18080, "Type": "tcp"}]}


def roll_out_step(d: DesiredApp):
    (change,) = plan_container(d, parse(P, E, [old_container(d)], [], [], []))
    [step] = [s for s in change.steps if s.description.startswith("start ")]
    return step


def test_a_published_version_that_never_gets_healthy_never_takes_the_port(tmp_path: Path) -> None:
    d = desired(tmp_path, "v2")
    step = roll_out_step(d)
    new, cand = d.container.name, d.container.candidate_name
    api = FakeApi([{"Status": "exited", "ExitCode": 3}])
    ctx = DeployContext(remote=FakeRemote(api), secrets=Secrets())
    with pytest.raises(StepFailed) as failed:
        ctx.execute(step.op)
    message = str(failed.value)
    assert message.startswith("web: the new container stopped (exit code 3); removed it; the old container "
                              "(shop-prod-web-ffffffffff) kept the port\nlast log lines of " + cand)
    assert "hunter2-secret" not in message and "password=***" in message  # the log tail is redacted
    # leftovers of both names removed, the candidate (no published port) created and started; it dies: its log
    # tail, then the plan's undo. The old container was never stopped: it kept serving on the port.
    assert api.calls == [("stop", new), ("remove", new), ("stop", cand), ("remove", cand), ("create",),
                         ("start", cand), ("logs", cand),
                         ("stop", cand), ("remove", cand), ("stop", new), ("remove", new), ("start", "old1")]
    assert ("stop", "old1") not in api.calls
    create_candidate = ctx.remote.ran[0]
    assert "--publish" not in create_candidate and create_candidate[create_candidate.index("--name") + 1] == cand
    assert list(step.op.on_failure) == [EngineCall("container.remove", params(id=cand)),
                                        EngineCall("container.remove", params(id=new)),
                                        EngineCall("container.start", params(id="old1"))]


def test_a_healthy_published_roll_out_swaps_the_port_and_runs_no_undo(tmp_path: Path) -> None:
    d = desired(tmp_path, "v2")
    step = roll_out_step(d)
    healthy = {"Status": "running", "Health": {"Status": "healthy"}}
    api = FakeApi([healthy, healthy])
    ctx = DeployContext(remote=FakeRemote(api), secrets=Secrets())
    ctx.execute(step.op)
    new, cand = d.container.name, d.container.candidate_name
    # the old one stops only after the candidate proved healthy and the real container exists
    assert api.calls == [("stop", new), ("remove", new), ("stop", cand), ("remove", cand), ("create",),
                         ("start", cand), ("create",), ("stop", "old1"), ("start", new),
                         ("stop", cand), ("remove", cand)]
    final = ctx.remote.ran[1]
    assert final[final.index("--name") + 1] == new and "--publish" in final


def test_wait_healthy_reports_the_last_probe(tmp_path: Path) -> None:
    api = FakeApi([{"Status": "running", "Health": {"Status": "unhealthy", "Log": [{"ExitCode": 1,
                                                                                   "Output": "refused"}]}}])
    from provision.appops import wait_healthy

    with pytest.raises(StepFailed, match=r"unhealthy \(last health check: exit 1, refused\)"):
        wait_healthy(DeployContext(remote=FakeRemote(api)), "c", Health("true", 1, 1, 1, 0, 5.0), "web", 5.0)
