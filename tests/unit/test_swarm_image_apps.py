"""`image:` apps as Swarm services: the image id in the config hash (a no-op deploy changes nothing), the spec
pinned to the first host's `repo@digest` when the image came from a registry, hosts holding another image named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provision.commands.service import pinned_image, service_of
from provision.deploy_images import with_image_id
from provision.deploy_swarm import image_pins, warn_other_images
from provision.plan.services import plan_service
from tests.unit.test_image_apps import ID_A, ID_B, desired, load
from tests.unit.test_plan_services import facts_of

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "d" * 64


@pytest.mark.parametrize("ref,digests,pin", [
    ("redis:7.2", [f"redis@{DIGEST}"], f"redis@{DIGEST}"),
    ("redis", [f"redis@{DIGEST}"], f"redis@{DIGEST}"),
    ("docker.io/library/redis:7.2", [f"redis@{DIGEST}"], f"redis@{DIGEST}"),
    ("me/app:1", [f"docker.io/me/app@{DIGEST}"], f"docker.io/me/app@{DIGEST}"),
    ("ghcr.io/acme/api:1.4", [f"other/api@{DIGEST}", f"ghcr.io/acme/api@{DIGEST}"], f"ghcr.io/acme/api@{DIGEST}"),
    ("localhost:5000/api:1", [f"localhost:5000/api@{DIGEST}"], f"localhost:5000/api@{DIGEST}"),
    ("redis:7.2", [f"valkey@{DIGEST}"], ""),  # another repository's digest is no pin
    ("redis:7.2", [], ""),  # built or shipped, never pulled: no digest
    (f"redis@{DIGEST}", [], f"redis@{DIGEST}"),
])
def test_pinned_image(ref, digests, pin):
    assert pinned_image(ref, digests) == pin


def service(tmp_path: Path, image_id: str, pin: str = "", **app: Any):
    d = with_image_id(desired(tmp_path, **app), image_id)
    return service_of(d.container, d_app(tmp_path, **app), image_pin=pin)


def d_app(tmp_path: Path, **app: Any):
    return load(tmp_path, top={"engine": {"mode": "swarm"}}, **app).apps["cache"]


def test_the_spec_runs_the_pin_or_the_reference(tmp_path: Path) -> None:
    pinned = service(tmp_path, ID_A, f"redis@{DIGEST}").api_kwargs({})
    assert pinned["task_template"]["ContainerSpec"]["Image"] == f"redis@{DIGEST}"
    plain = service(tmp_path, ID_A).api_kwargs({})
    assert plain["task_template"]["ContainerSpec"]["Image"] == "redis:7.2"
    assert plain["labels"]["dockyard.image"] == "redis:7.2"


def test_the_hash_covers_the_image_id_so_the_same_image_is_a_no_op(tmp_path: Path) -> None:
    first = service(tmp_path, ID_A, f"redis@{DIGEST}")
    assert plan_service(service(tmp_path, ID_A, f"redis@{DIGEST}"), facts_of(first)) == []
    [change] = plan_service(service(tmp_path, ID_B), facts_of(first))  # the tag moved to another image
    assert change.action == "update"
    assert "image id: bbbbbbbbbbbb" in change.after


class Api:
    def __init__(self, images: dict[str, dict]) -> None:
        self.images = images
        self.asked: list[str] = []

    def inspect_image(self, ref: str) -> dict:
        self.asked.append(ref)
        if ref not in self.images:
            raise type("NotFound", (Exception,), {"response": type("R", (), {"status_code": 404})()})("no")
        return self.images[ref]


class Remote:
    def __init__(self, api: Api) -> None:
        self.api = api

    def docker(self) -> Any:
        return self


def test_image_pins_inspect_the_id_the_first_host_holds(tmp_path: Path) -> None:
    api = Api({ID_A: {"RepoDigests": [f"redis@{DIGEST}"]}})
    d = with_image_id(desired(tmp_path), ID_A)
    assert image_pins(Remote(api), [d]) == {"cache": f"redis@{DIGEST}"}
    assert api.asked == [ID_A]
    # check mode before the first pull: no image there yet, no pin
    assert image_pins(Remote(Api({})), [with_image_id(desired(tmp_path), "pending-pull")]) == {"cache": ""}


class Warnings:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warn(self, message: str) -> None:
        self.lines.append(message)


def test_a_host_with_another_image_under_the_reference_is_named(tmp_path: Path) -> None:
    a, b = with_image_id(desired(tmp_path), ID_A), with_image_id(desired(tmp_path), ID_B)
    said = Warnings()
    warn_other_images(said, ["n1", "n2", "n3"], [{"cache": a}, {"cache": a}, {"cache": b}], {"cache": ""})
    [line] = said.lines
    assert "n3" in line and "bbbbbbbbbbbb" in line and "aaaaaaaaaaaa" in line and "n2" not in line
    quiet = Warnings()
    warn_other_images(quiet, ["n1", "n2"], [{"cache": a}, {"cache": a}], {"cache": ""})
    assert quiet.lines == []
