"""Releases and rollback, pure parts: release ids from git, the releases read from labels, the rollback target
and the rollback plan for routed, published and plain apps."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from provision.errors import InputError
from provision.facts.apps import parse
from provision.ops import EngineCall, Guarded, Wait, params
from provision.plan.rollback import plan_rollback
from provision.releases import git_release, release_id, releases_of, rollback_target

pytestmark = pytest.mark.unit
P, E = "shop", "prod"


def doc(cid: str, release: str, *, created: int, state: str = "running", domains: str = "",
        port: int | None = None, role: str = "") -> dict[str, Any]:
    labels = {"dockyard.project": P, "dockyard.environment": E, "dockyard.app": "web",
              "dockyard.config-hash": cid * 8, "dockyard.release": release, "dockyard.config": f"image: {cid}\n"}
    if domains:
        labels |= {"dockyard.domains": domains, "dockyard.port": "8000"}
    if role:
        labels["dockyard.role"] = role
    ports = [{"IP": "127.0.0.1", "PrivatePort": 8000, "PublicPort": port, "Type": "tcp"}] if port else []
    return {"Id": cid, "Names": [f"/shop-prod-web-{cid}"], "Image": f"shop/web:{cid}", "ImageID": f"sha256:{cid}",
            "State": state, "Status": "Up 1 minute" if state == "running" else "Exited (0)", "Created": created,
            "Labels": labels, "Ports": ports}


def test_git_release_is_the_short_sha_and_marks_a_dirty_tree(tmp_path: Path) -> None:
    assert git_release(tmp_path) is None  # not a repository
    run = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    run("config", "user.email", "t@example.com")
    run("config", "user.name", "T")
    (tmp_path / "f").write_text("1")
    run("add", "f")
    run("commit", "-q", "-m", "one")
    sha = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert git_release(tmp_path) == sha
    (tmp_path / "f").write_text("2")
    assert git_release(tmp_path) == f"{sha}-dirty"
    assert release_id(None, "ab" * 32) == "ab" * 6 and release_id(sha, "x") == sha


def test_releases_are_read_from_labels_newest_first_and_skip_one_off_containers() -> None:
    facts = parse(P, E, [doc("a1", "aaa", created=1, state="exited"), doc("b2", "bbb", created=2),
                         doc("c3", "ccc", created=3, role="candidate"), doc("d4", "../x", created=4,
                                                                             state="exited")], [], [], [])
    found = releases_of(facts, "web")
    assert [(r.release, r.current) for r in found] == [("-", False), ("bbb", True), ("aaa", False)]


def test_the_rollback_target_is_the_previous_release_or_the_named_one() -> None:
    facts = parse(P, E, [doc("a1", "aaa", created=1, state="exited"), doc("b2", "bbb", created=2),
                         doc("c3", "ccc", created=3, state="exited")], [], [], [])
    found = releases_of(facts, "web")
    assert rollback_target(found, None, source=None, app="web").release == "aaa"  # older than current
    assert rollback_target(found, "ccc", source=None, app="web").release == "ccc"  # forward again
    with pytest.raises(InputError) as err:
        rollback_target(found, "zzz", source=None, app="web")
    assert "no release 'zzz'" in str(err.value) and "bbb (current)" in str(err.value)
    only = releases_of(parse(P, E, [doc("b2", "bbb", created=2)], [], [], []), "web")
    with pytest.raises(InputError, match="no earlier release"):
        rollback_target(only, None, source=None, app="web")


def test_a_routed_rollback_starts_checks_switches_drains_then_stops_the_current() -> None:
    facts = parse(P, E, [doc("a1", "aaa", created=1, state="exited", domains="shop.example.com"),
                         doc("b2", "bbb", created=2, domains="shop.example.com")], [], [], [])
    target, current = facts.containers_of("web")
    (change,) = plan_rollback("web", target, current, wait=30.0, drain=12.0, proxy=True)
    roll: Guarded = change.steps[0].op
    assert roll.ops == (EngineCall("container.start", params(id="a1")),
                        Wait("container.healthy", params(container="a1", health=None, label="web"), 30.0),
                        EngineCall("proxy.route", params(app="web", domains=("shop.example.com",),
                                                         upstream="shop-prod-web-a1:8000")))
    assert roll.on_failure == (EngineCall("container.stop", params(id="a1", timeout=10)),)
    assert [s.op for s in change.steps[1:]] == [
        Wait("proxy.drained", params(upstreams=("shop-prod-web-b2:8000",), label="web"), 12.0),
        EngineCall("container.stop", params(id="b2", timeout=10)),
        EngineCall("proxy.sync", params(app="web"))]
    assert change.action == "rollback" and change.reason == "release bbb → aaa"


def test_a_published_rollback_swaps_the_port_and_undoes_to_the_current() -> None:
    facts = parse(P, E, [doc("a1", "aaa", created=1, state="exited"), doc("b2", "bbb", created=2, port=18080)],
                  [], [], [])
    target, current = facts.containers_of("web")
    (change,) = plan_rollback("web", target, current, wait=5.0, drain=30.0, proxy=False)
    (step,) = change.steps
    assert step.op.ops[0] == EngineCall("container.stop", params(id="b2", timeout=10))
    assert step.op.on_failure == (EngineCall("container.stop", params(id="a1", timeout=10)),
                                  EngineCall("container.start", params(id="b2")))
