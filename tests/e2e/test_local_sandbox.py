"""`provider: local` end to end on the real engine: provision a sandbox "VM", reach it over SSH as a sudo
user, ship an image into its own engine, re-provision (ok, same container), teardown (nothing left).

The project name is the test's unique prefix, so a developer's `demo` sandbox is never touched. CI's
debootstrap minbase (`dockyard-ci/bookworm-minbase:1`) is named by DOCKYARD_MINBASE so the sandbox image is
built FROM it instead of running debootstrap a second time (no registry is reachable here).
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
from pathlib import Path

import pytest
from rich.console import Console

from provision.changes import Status
from provision.commands.sandbox import label_filters
from provision.playbook import load_playbook
from provision.providers import local
from provision.remote import Remote, SshTarget
from provision.report import Reporter
from provision.ship import local_ids, plan_ship, remote_ids, send

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

CA_DIR = Path("/usr/local/share/ca-certificates")


def _playbook(tmp_path: Path, project: str):
    path = tmp_path / "playbooks" / "sbx.yml"
    path.parent.mkdir(parents=True)
    path.write_text(f"""\
project: {project}
environment: sbx
provider: local
ssh: {{user: dockyard}}
apps:
  site: {{template: static-site, port: 8080, publish: 8082}}
""")
    return load_playbook(path)


def _reporter() -> tuple[Reporter, io.StringIO]:
    buf = io.StringIO()
    return Reporter(console=Console(file=buf, width=200, color_system=None)), buf


def _status(reporter: Reporter, task: str) -> Status:
    return [r for r in reporter.results if r.task == task][-1].status


def _tiny_image(docker_client, ref: str) -> str:
    """A one-file image made locally (no registry, no base image): enough to prove the transport."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = f"shipped by dockyard {ref}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    repo, _, tag = ref.rpartition(":")
    docker_client.api.import_image(src=buf.getvalue(), repository=repo, tag=tag)
    return docker_client.images.get(ref).id


def _owned(docker_client, pb) -> tuple[list, list]:
    filters = {"label": label_filters(pb.project, pb.environment)}
    return (docker_client.containers.list(all=True, filters=filters),
            docker_client.volumes.list(filters=filters))


def test_local_sandbox_provision_ssh_ship_reprovision_teardown(tmp_path: Path, unique: str, docker_client,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_MINBASE", "dockyard-ci/bookworm-minbase:1")
    monkeypatch.setenv("DOCKYARD_SANDBOX_BASE", "debootstrap")  # no registry here: never try to pull
    pb = _playbook(tmp_path, unique)
    tiny, other = f"{unique}/tiny:1", f"{unique}/tiny:2"
    try:
        # --check on nothing: reports the creation, creates nothing (not even the key)
        reporter, _ = _reporter()
        planned = local.ensure_host(pb, check=True, reporter=reporter, client=docker_client)
        assert _status(reporter, "local sandbox") is Status.CHANGED
        assert (planned.state, planned.host_id) == ("absent", "")
        assert _owned(docker_client, pb) == ([], []) and local.find_host(pb, client=docker_client) is None
        assert not (tmp_path / "playbooks" / ".dockyard" / "sbx" / "id_ed25519").exists()

        # provision: a running container found by its labels, SSH answering on a 127.0.0.1 port
        reporter, _ = _reporter()
        info = local.ensure_host(pb, reporter=reporter, client=docker_client)
        assert _status(reporter, "local sandbox") is Status.CHANGED
        assert (info.provider, info.state, info.ssh_address, info.ssh_user) == ("local", "running",
                                                                                "127.0.0.1", "dockyard")
        container = docker_client.containers.get(info.host_id)
        assert container.labels["dockyard.project"] == unique
        assert container.labels["dockyard.role"] == "sandbox-host"
        assert container.attrs["HostConfig"]["Privileged"] is False
        assert set(info.published) == {8082} and info.published[8082] != 8082
        bindings = container.attrs["HostConfig"]["PortBindings"]
        assert bindings["22/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(info.ssh_port)}]
        assert bindings["8082/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(info.published[8082])}]
        assert info.data["urls"] == {"site": f"http://127.0.0.1:{info.published[8082]}/"}
        key_file = tmp_path / "playbooks" / ".dockyard" / "sbx" / "id_ed25519"
        assert Path(info.data["key_file"]) == key_file and (key_file.stat().st_mode & 0o777) == 0o600
        assert local.find_host(pb, client=docker_client) == info

        target = SshTarget.from_host(pb, info)
        with Remote(target) as remote:
            # the non-root user, with passwordless sudo; no engine preinstalled (setup installs it)
            assert remote.run(["id", "-u"]).stdout.strip() != "0"
            assert remote.run(["id", "-u"], sudo=True).stdout.strip() == "0"
            assert not remote.run(["sh", "-c", "command -v docker dockerd"], check=False).ok
            # the host's extra CA certificates are trusted inside: one bounded HTTPS request to PyPI
            inside = remote.run(["ls", "/usr/local/share/ca-certificates"]).stdout.split()
            assert sorted(inside) == sorted(p.name for p in CA_DIR.glob("*.crt"))
            code = remote.run(["curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}",
                               "https://pypi.org/simple/pip/"], timeout=60).stdout.strip()
            assert code == "200"
            assert remote.connections_opened == 1
        # the host key was pinned (not trusted on first use): the known_hosts line is the sandbox's key
        host_key = container.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).output.decode().split()[1]
        assert host_key in pb.known_hosts_file.read_text()

        # re-provision: ok, the same container; a stopped sandbox is started again with the same ports
        reporter, _ = _reporter()
        again = local.ensure_host(pb, reporter=reporter, client=docker_client)
        assert _status(reporter, "local sandbox") is Status.OK
        assert again.host_id == info.host_id and again.published == info.published
        container.stop(timeout=5)
        reporter, _ = _reporter()
        restarted = local.ensure_host(pb, reporter=reporter, client=docker_client)
        assert _status(reporter, "local sandbox") is Status.CHANGED
        assert (restarted.host_id, restarted.ssh_port, restarted.published) == (
            info.host_id, info.ssh_port, info.published)

        # the engine inside (setup's job in `up`; installed by hand here), then ship an image into it
        with Remote(SshTarget.from_host(pb, restarted)) as remote:
            remote.run(["sh", "-c", "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "
                        "apt-get install -y -q --no-install-recommends docker.io >/dev/null"],
                       sudo=True, timeout=900)
            # Debian's init script runs `ulimit -n 1048576`: the sandbox's wrapper makes it non-fatal
            remote.run(["service", "docker", "start"], sudo=True, timeout=120)
            for _ in range(60):
                if remote.run(["docker", "info"], sudo=True, check=False).ok:
                    break
                time.sleep(1)
            local_id = _tiny_image(docker_client, tiny)
            def missing(refs: list[str]) -> list[str]:  # what deploy's plan would ship
                return plan_ship(refs, local_ids(docker_client, refs), remote_ids(remote, refs, sudo=True))

            assert missing([tiny]) == [tiny]
            first = send(docker_client, remote, [tiny], sudo=True)
            assert [(s.ref, s.image_id) for s in first] == [(tiny, local_id)]
            assert first[0].size > 0
            inner = remote.run(["docker", "image", "inspect", "--format", "{{.Id}}", tiny], sudo=True)
            assert inner.stdout.strip() == local_id
            assert missing([tiny]) == []  # shipped once: the plan sends nothing again
            # several images in one stream; only the missing one is planned
            other_id = _tiny_image(docker_client, other)
            assert missing([tiny, other]) == [other]
            both = send(docker_client, remote, [tiny, other], sudo=True)  # one save stream of both refs
            assert [(s.ref, s.image_id) for s in both] == [(tiny, local_id), (other, other_id)]
            ids = remote.run(["docker", "image", "inspect", "--format", "{{.Id}}", tiny, other], sudo=True)
            assert ids.stdout.split() == [local_id, other_id]

        # like a VM reboot: the sandbox restarts with its enabled engine running and its images kept
        container.restart(timeout=10)
        rebooted = local.ensure_host(pb, reporter=_reporter()[0], client=docker_client)
        assert rebooted.host_id == info.host_id
        with Remote(SshTarget.from_host(pb, rebooted)) as remote:
            for _ in range(60):
                if remote.run(["docker", "info"], sudo=True, check=False).ok:
                    break
                time.sleep(1)
            ids = remote.run(["docker", "image", "inspect", "--format", "{{.Id}}", tiny, other], sudo=True)
            assert ids.stdout.split() == [local_id, other_id]

        # teardown: container and volume gone, nothing else with the labels; a second teardown is a no-op
        reporter, _ = _reporter()
        changes = local.destroy_host(pb, reporter=reporter, client=docker_client)
        assert [c.action for c in changes] == ["delete", "delete"]
        assert _owned(docker_client, pb) == ([], [])
        assert local.find_host(pb, client=docker_client) is None
        assert f"127.0.0.1]:{info.ssh_port} " not in pb.known_hosts_file.read_text()
        assert local.destroy_host(pb, reporter=_reporter()[0], client=docker_client) == []
    finally:
        local.destroy_host(pb, reporter=_reporter()[0], client=docker_client)
        import docker

        for ref in (tiny, other):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(ref, force=True)


def _get(url: str) -> tuple[int, str]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:  # 127.0.0.1 only
        return resp.status, resp.read().decode("utf-8", "replace")


def test_the_shipped_example_runs_on_a_local_sandbox(tmp_path: Path, unique: str, docker_client,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """playbooks/local.yml (under a unique project name): provision → setup → deploy (which ships the build
    bases first), the apps answer on the printed 127.0.0.1 URLs, a second deploy changes and ships nothing,
    teardown leaves nothing."""
    from provision.phases.deploy import deploy_host
    from provision.phases.setup import setup_host

    monkeypatch.setenv("DOCKYARD_MINBASE", "dockyard-ci/bookworm-minbase:1")
    monkeypatch.setenv("DOCKYARD_SANDBOX_BASE", "debootstrap")
    root = Path(__file__).resolve().parents[2]
    text = (root / "playbooks" / "local.yml").read_text()
    assert "\nproject: demo\n" in text
    path = tmp_path / "playbooks" / "local.yml"
    path.parent.mkdir()
    path.write_text(text.replace("\nproject: demo\n", f"\nproject: {unique}\n")
                    .replace("context: ../apps/", f"context: {root}/apps/"))
    pb = load_playbook(path)
    assert (pb.project, pb.environment, sorted(pb.apps)) == (unique, "local", ["site", "web", "worker"])
    try:
        reporter, _ = _reporter()
        info = local.ensure_host(pb, reporter=reporter, client=docker_client)
        recap = setup_host(pb, reporter=reporter, host=info)
        assert not recap.failed, [r.message for r in recap.results if r.message]
        with Remote(SshTarget.from_host(pb, info)) as remote:
            result = deploy_host(pb, reporter=reporter, host=info, remote=remote)
            assert not result.failed, [r.message for r in result.recap.results if r.message]
            [shipping] = [r for r in result.recap.results if r.task == "ship build base images"]
            assert shipping.status is Status.CHANGED
            assert {ref for c in shipping.changes for ref in c.data["images"]} == {
                "dockyard/python:bookworm", "dockyard/static:bookworm", "dockyard/base:bookworm"}
            urls = info.data["urls"]
            assert set(urls) == {"web", "site"}
            status, body = _get(urls["web"])
            assert status == 200 and "Hello from web" in body
            assert _get(urls["web"] + "healthz")[1].strip().startswith("{")
            status, body = _get(urls["site"])
            assert status == 200 and "a static site" in body
            # the no-op re-run: nothing shipped, nothing changed
            again = deploy_host(pb, reporter=reporter, host=info, remote=remote)
            assert again.recap.count(Status.CHANGED) == 0 and not again.failed
            [shipping] = [r for r in again.recap.results if r.task == "ship build base images"]
            assert shipping.status is Status.OK and not shipping.changes
        local.destroy_host(pb, reporter=reporter, client=docker_client)
        assert _owned(docker_client, pb) == ([], [])
    finally:
        local.destroy_host(pb, reporter=_reporter()[0], client=docker_client)
