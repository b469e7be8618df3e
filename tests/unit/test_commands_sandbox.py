"""The local sandbox's pure parts: container parameters, labels, the plan, image recipes, ship planning."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from provision.commands import sandbox as sb
from provision.ops import EngineCall
from provision.ops import params as op_params
from provision.playbook import load_playbook
from provision.providers import local
from provision.sandbox import (
    base_names,
    base_ref,
    ca_certs,
    choose_base,
    context_tar,
    recipe_hash,
    referenced_bases,
    sandbox_files,
)
from provision.ship import inspect_argv, load_command, parse_inspect, plan_ship

pytestmark = pytest.mark.unit

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake dockyard-local"
ROOT = Path(__file__).resolve().parents[2]


def params(**kw) -> sb.SandboxParams:
    base = dict(project="demo", environment="local", image="dockyard/sandbox:abc", ssh_port=40022,
                ssh_user="dockyard", authorized_key=KEY, ports={8081: 40081, 8082: 40082})
    base.update(kw)
    return sb.SandboxParams(**base)


def playbook(tmp_path: Path, text: str):
    path = tmp_path / "playbooks" / "local.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return load_playbook(path)


PB = """\
project: demo
environment: local
provider: local
ssh: {user: dockyard}
vars: {base_image: "dockyard/python:bookworm"}
apps:
  web: {template: python-web, port: 8000, publish: 8081}
  site:
    template: static-site
    port: 8080
    publish: "127.0.0.1:8082"
    vars: {base_image: "dockyard/static:bookworm"}
  worker: {template: generic, command: [python3, worker.py], vars: {base_image: "dockyard/base:bookworm"}}
"""


# --- container parameters -----------------------------------------------------------------------------


def test_host_config_matches_the_flags_on_the_api() -> None:
    hc = params().host_config()
    assert hc["CapAdd"] == ["ALL"] and hc["CapDrop"] == ["SYS_RESOURCE"]
    assert hc["SecurityOpt"] == ["seccomp=unconfined", "apparmor=unconfined"]
    assert hc["MaskedPaths"] == [] and hc["ReadonlyPaths"] == []  # systempaths=unconfined
    assert hc["DeviceCgroupRules"] == ["a *:* rwm"] and hc["CgroupnsMode"] == "private"
    assert "Privileged" not in hc
    assert params().create_body()["Image"] == "dockyard/sandbox:abc"
    assert hc["Mounts"] == [{"Type": "volume", "Source": "dockyard-demo-local-docker",
                             "Target": "/var/lib/docker", "ReadOnly": False}]
    assert hc["PortBindings"] == {"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40022"}],
                                  "8081/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40081"}],
                                  "8082/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40082"}]}


def test_labels_record_ownership_and_ports_and_round_trip() -> None:
    p = params()
    labels = p.create_body()["Labels"]
    assert labels[sb.LABEL_PROJECT] == "demo" and labels[sb.LABEL_ENVIRONMENT] == "local"
    assert labels[sb.LABEL_ROLE] == "sandbox-host"
    assert labels[sb.LABEL_PORTS] == "8081:40081,8082:40082"
    found = sb.read_labels("cid", "running", labels)
    assert (found.ssh_port, found.ports, found.ssh_user, found.image) == (
        40022, {8081: 40081, 8082: 40082}, "dockyard", "dockyard/sandbox:abc")
    assert p.volume_body() == {"Name": "dockyard-demo-local-docker",
                               "Labels": {sb.LABEL_PROJECT: "demo", sb.LABEL_ENVIRONMENT: "local",
                                          sb.LABEL_ROLE: "sandbox-host"}}
    assert sb.label_filters("demo", "local") == ["dockyard.project=demo", "dockyard.environment=local",
                                                  "dockyard.role=sandbox-host"]


def test_env_carries_the_user_and_public_key_only(tmp_path: Path) -> None:
    import json

    from provision.sandbox.keys import ensure_key

    # a real key pair, generated the way `local` generates the environment's key
    key_file = tmp_path / ".dockyard" / "local" / "id_ed25519"
    public = ensure_key(key_file, generate=True)
    private = key_file.read_text()
    assert "PRIVATE KEY" in private
    body = [ln for ln in private.splitlines() if ln and not ln.startswith("-----")]
    p = params(authorized_key=public)
    env = p.create_body()["Env"]
    assert env == [f"{sb.ENV_USER}=dockyard", f"{sb.ENV_AUTHORIZED_KEY}={public}"]  # the public half IS there
    shown = json.dumps([p.create_body(), p.volume_body(), p.labels()])
    assert public.split()[1] in shown
    assert "PRIVATE" not in shown and not any(line in shown for line in body)


def test_damaged_port_labels_give_what_can_be_read() -> None:
    assert sb.parse_ports("8081:40081, junk,8082:x,9000:40090") == {8081: 40081, 9000: 40090}
    assert sb.parse_ports(None) == {}
    assert sb.read_labels("c", "exited", {}).ssh_port is None


def test_wanted_ports_dedupes_sorts_and_leaves_ssh_alone() -> None:
    assert sb.wanted_ports([8082, 8081, 8082, 22]) == (8081, 8082)
    assert sb.missing_ports([8081, 8083], {8081: 1}) == (8083,)


# --- the plan ------------------------------------------------------------------------------------------


def ops(changes) -> list[EngineCall]:
    return [step.op for change in changes for step in change.steps]


START = EngineCall("container.start", op_params(id="dockyard-demo-local"))


def test_absent_sandbox_is_created_volume_first_then_started() -> None:
    p = params()
    changes, warnings = local.plan_sandbox(None, p, resize=False)
    assert [c.action for c in changes] == ["create"] and not warnings
    assert ops(changes) == [EngineCall("volume.create", p.op_params()), EngineCall("container.create", p.op_params()),
                            START]


def test_the_local_engine_executor_rebuilds_the_sandbox_from_the_op() -> None:
    p = params(ports={8081: 40081})
    made: list[object] = []
    ctx = local.LocalContext(client=None)
    ctx.create_container = made.append  # the effect it dispatches to, and what it is given
    ctx.execute(EngineCall("container.create", p.op_params()))
    assert made == [p]
    assert local.plan_sandbox(None, p, resize=False) != local.plan_sandbox(None, params(ports={8081: 40082}),
                                                                           resize=False)


def test_running_sandbox_with_every_port_is_ok() -> None:
    p = params()
    found = sb.read_labels("cid", "running", p.labels())
    assert local.plan_sandbox(found, p, resize=False) == ([], [])


def test_stopped_sandbox_is_started_not_recreated() -> None:
    p = params()
    found = sb.read_labels("cid", "exited", p.labels())
    changes, _ = local.plan_sandbox(found, p, resize=False)
    assert [c.action for c in changes] == ["start"]
    assert ops(changes) == [START]


def test_a_new_publish_port_warns_and_only_resize_recreates_keeping_the_volume() -> None:
    old = params(ports={8081: 40081})
    found = sb.read_labels("cid", "running", old.labels())
    new = params(ports={8081: 40081, 8082: 40099})
    changes, warnings = local.plan_sandbox(found, new, resize=False)
    assert changes == [] and "8082" in warnings[0] and "--resize" in warnings[0]
    changes, _ = local.plan_sandbox(found, new, resize=True)
    assert [c.action for c in changes] == ["replace"]
    assert ops(changes) == [EngineCall("container.remove", op_params(id="cid")),  # the volume stays
                            EngineCall("volume.create", new.op_params()),
                            EngineCall("container.create", new.op_params()), START]


def test_a_different_sandbox_image_is_a_warning_not_a_silent_recreate() -> None:
    found = sb.read_labels("cid", "running", params(image="dockyard/sandbox:old").labels())
    changes, warnings = local.plan_sandbox(found, params(), resize=False)
    assert changes == [] and "recreate" in warnings[0]


def test_desired_params_keep_found_ports_and_take_new_ones_from_free(tmp_path: Path) -> None:
    pb = playbook(tmp_path, PB)
    fresh = local.desired_params(pb, None, "img", KEY, [50001, 50002, 50003])
    assert fresh.ports == {8081: 50001, 8082: 50002} and fresh.ssh_port == 50003
    assert fresh.ssh_user == "dockyard" and fresh.name == "dockyard-demo-local"
    found = sb.read_labels("cid", "running", params(ports={8082: 40082}).labels())
    kept = local.desired_params(pb, found, "img", KEY, [50001, 50002, 50003])
    assert kept.ports == {8081: 50001, 8082: 40082} and kept.ssh_port == 40022


def test_key_and_urls_and_teardown(tmp_path: Path) -> None:
    pb = playbook(tmp_path, PB)
    assert local.local_key_file(pb) == tmp_path / "playbooks" / ".dockyard" / "local" / "id_ed25519"
    assert local.may_generate_key(pb)
    assert local.app_urls(pb, {8081: 40081, 8082: 40082}) == {"web": "http://127.0.0.1:40081/",
                                                             "site": "http://127.0.0.1:40082/"}
    given = playbook(tmp_path, PB.replace("ssh: {user: dockyard}", "ssh: {user: dockyard, key_file: k}"))
    assert local.local_key_file(given) == tmp_path / "playbooks" / "k" and not local.may_generate_key(given)
    changes = local.plan_teardown(["c1"], ["dockyard-demo-local-docker"], "dockyard-demo-local")
    assert ops(changes) == [EngineCall("container.remove", op_params(id="c1")),
                            EngineCall("volume.remove", op_params(name="dockyard-demo-local-docker"))]
    assert local.plan_teardown([], [], "x") == []


def test_generated_key_is_private_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / ".dockyard" / "local" / "id_ed25519"
    public = local.ensure_key(path, generate=True)
    assert public.startswith("ssh-ed25519 ") and (path.stat().st_mode & 0o777) == 0o600
    assert local.ensure_key(path, generate=True) == public
    import paramiko

    assert paramiko.Ed25519Key.from_private_key_file(str(path)).get_base64() == public.split()[1]
    with pytest.raises(Exception, match="does not exist"):
        local.ensure_key(tmp_path / "nope", generate=False)


# --- images ------------------------------------------------------------------------------------------


def test_referenced_bases_finds_dockyard_base_images_in_vars(tmp_path: Path) -> None:
    pb = playbook(tmp_path, PB)
    values = [pb.vars, *(a.vars for a in pb.apps.values())]
    assert referenced_bases(values, base_names()) == ("base", "python", "static")
    assert referenced_bases({"x": "python:3.12-slim", "y": ["dockyard/nope:bookworm"]}, base_names()) == ()
    assert base_ref("python") == "dockyard/python:bookworm"


def test_choose_base_prefers_what_is_here_and_honours_the_override() -> None:
    assert choose_base(None, slim_present=True, minbase_present=True) == "registry"
    assert choose_base(None, slim_present=False, minbase_present=True) == "debootstrap"
    assert choose_base(None, slim_present=False, minbase_present=False) == "try-registry"
    assert choose_base("debootstrap", slim_present=True, minbase_present=False) == "debootstrap"


def test_sandbox_recipe_covers_the_ca_certs_and_the_context_has_them(tmp_path: Path) -> None:
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "corp.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "ignored.pem").write_bytes(b"x")
    certs = ca_certs(tmp_path)
    assert list(certs) == ["ca-certs/extra_corp.crt"]
    with_certs, without = sandbox_files(certs), sandbox_files({})
    assert recipe_hash(with_certs) != recipe_hash(without)
    assert recipe_hash(with_certs) == recipe_hash(dict(reversed(list(with_certs.items()))))
    with tarfile.open(fileobj=io.BytesIO(context_tar(without))) as tar:
        names = tar.getnames()
    assert "ca-certs" in names and "Dockerfile" in names and "entrypoint.sh" in names


def test_sandbox_image_has_no_docker_and_no_baked_key() -> None:
    dockerfile = (ROOT / "provision" / "sandbox" / "Dockerfile").read_text()
    install = dockerfile.split("apt-get install", 1)[1].split("&&", 1)[0]
    assert "docker" not in install and "openssh-server" in install and "sudo" in install
    assert "authorized_keys" not in dockerfile and "ssh_host_" in dockerfile  # host keys removed
    assert "ARG BASE=debian:bookworm-slim" in dockerfile
    assert "dpkg-divert" in dockerfile


# --- ship ---------------------------------------------------------------------------------------------


def test_plan_ship_sends_only_what_the_host_lacks_by_id() -> None:
    mine = {"a:1": "sha256:aa", "b:1": "sha256:bb", "c:1": "sha256:cc"}
    theirs = {"a:1": "sha256:aa", "b:1": "sha256:old"}
    assert plan_ship(["a:1", "b:1", "c:1", "c:1"], mine, theirs) == ["b:1", "c:1"]
    assert plan_ship(["a:1"], mine, theirs) == []


def test_inspect_is_one_round_trip_and_parses() -> None:
    argv = inspect_argv(["a:1", "b c"])
    assert argv[:2] == ["sh", "-c"] and argv[-2:] == ["a:1", "b c"]
    assert parse_inspect("a:1 sha256:aa\nnoise\nb:1 notanid\n") == {"a:1": "sha256:aa"}
    assert load_command(sudo=True, user="dockyard") == "sudo -n -- docker load"
    assert load_command(sudo=True, user="root") == "docker load"


def test_from_images_skips_stages_scratch_and_unresolved_args() -> None:
    from provision.ship import from_images

    text = ("ARG V=1\nFROM --platform=linux/amd64 dockyard/python:bookworm AS build\nRUN x \\\n  y\n"
            "from build AS final\nFROM scratch\nFROM busybox:${V}\nFROM dockyard/base:bookworm\n"
            "FROM dockyard/python:bookworm\n")
    assert from_images(text) == ["dockyard/python:bookworm", "dockyard/base:bookworm"]


def test_host_info_reads_the_labels_and_gives_the_urls(tmp_path: Path) -> None:
    pb = playbook(tmp_path, PB)
    key = local.local_key_file(pb)
    absent = local.host_info(pb, None, key)
    assert (absent.provider, absent.state, absent.host_id, absent.ssh_port) == ("local", "absent", "", 0)
    found = sb.read_labels("cid", "running", params().labels())
    info = local.host_info(pb, found, key)
    assert (info.host_id, info.ssh_address, info.ssh_port, info.ssh_user) == ("cid", "127.0.0.1", 40022,
                                                                             "dockyard")
    assert info.published == {8081: 40081, 8082: 40082}
    assert info.data["urls"] == {"web": "http://127.0.0.1:40081/", "site": "http://127.0.0.1:40082/"}
    assert info.data["key_file"] == str(key)
    from provision.remote import SshTarget

    target = SshTarget.from_host(pb, info)  # what setup, deploy and up dial
    assert (target.host, target.port, target.user, target.key_file) == ("127.0.0.1", 40022, "dockyard", key)
    assert target.known_hosts == tmp_path / "playbooks" / ".dockyard" / "local" / "known_hosts"
