"""`setup` end to end against fresh sim hosts over SSH (the real apt install of docker.io inside the host).

One sim host is shared by the tests of this module, in file order (pytest keeps it): check mode on the
fresh host, a broken daemon value, the real install, the no-op re-run, a daemon.json change. Each test
checks its own preconditions, so a failure says where the chain broke.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke import Collection, Program

from provision.changes import Status
from provision.cli.setup import setup
from provision.remote import Remote
from provision.render_daemon import render_daemon_json
from provision.spec import EngineSpec
from tests.simhost import SimHost, start_simhost, stop_simhost

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHost]:
    h = start_simhost(f"dyt-{secrets.token_hex(4)}-setup", tmp_path_factory.mktemp("simhost"))
    try:
        yield h
    finally:
        stop_simhost(h)


def write_playbook(h: SimHost, directory: Path, daemon: str = "{}") -> Path:
    path = directory / "playbooks" / "sim.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""\
project: demo
environment: sim
provider: existing
host:
  address: 127.0.0.1
ssh:
  user: deploy
  port: {h.port}
  key_file: {h.key_file}
  known_hosts: {directory / 'known_hosts'}
engine:
  daemon: {daemon}
""")
    return path


def run_setup(capsys: pytest.CaptureFixture[str], playbook: Path, *flags: str) -> tuple[int, dict, str]:
    """The whole `setup` command (invoke Program, as `dockyard setup`), with --json."""
    capsys.readouterr()
    program = Program(namespace=Collection(setup), name="dockyard", binary="dockyard")
    code = 0
    try:
        program.run(["dockyard", "setup", "-p", str(playbook), "--json", *flags], exit=True)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def tasks(doc: dict) -> dict[str, dict]:
    [h] = doc["hosts"]
    return {t["task"]: t for t in h["tasks"]}


def engine_start(h: SimHost) -> str:
    code, out = h.exec("pid=$(pidof dockerd) && cut -d' ' -f22 /proc/$pid/stat")
    assert code == 0, out
    return out.strip()


def test_check_on_a_fresh_host_changes_nothing(host, tmp_path, capsys):
    code, doc, _ = run_setup(capsys, write_playbook(host, tmp_path), "--check")
    assert code == 0, doc
    t = tasks(doc)
    assert {n for n, r in t.items() if r["status"] == "changed"} == {
        "daemon.json", "docker engine", "init script", "docker service", "docker group"}
    steps = t["docker engine"]["changes"][0]["steps"]
    [install] = [s for s in steps if s["description"] == "apt-get install docker.io"]
    assert install["op"]["type"] == "argv" and install["op"]["sudo"] is True  # exactly what would run
    assert install["op"]["argv"][-1] == "docker.io" and "install" in install["op"]["argv"]
    rc, out = host.exec("command -v dockerd docker; ls /etc/docker; getent group docker")
    assert rc != 0 and out.strip().endswith("No such file or directory"), out


def test_a_broken_daemon_value_is_rejected_before_anything_is_touched(host, tmp_path, capsys):
    playbook = write_playbook(host, tmp_path, daemon="{log-opts: {max-size: 10m, max-file: 3}}")
    code, doc, err = run_setup(capsys, playbook)
    assert code == 2
    assert doc["errors"][0]["key_path"] == "engine.daemon.log-opts.max-file"
    assert "must be a string" in err
    assert not (tmp_path / "known_hosts").exists()  # never even connected
    rc, out = host.exec("ls /etc/docker")
    assert rc != 0, out


def test_setup_installs_starts_and_groups(host, tmp_path, capsys):
    playbook = write_playbook(host, tmp_path, daemon="{log-level: warn}")
    code, doc, err = run_setup(capsys, playbook)
    assert code == 0, err
    t = tasks(doc)
    for name in ("daemon.json", "docker engine", "init script", "docker service", "docker group"):
        assert t[name]["status"] == "changed", (name, t[name])
    ps = {"description": "docker ps as deploy, without sudo",
          "op": {"type": "argv", "argv": ["docker", "ps", "-q"], "sudo": False}}
    assert ps in t["docker group"]["changes"][0]["steps"]
    assert "handler: restart docker" not in t  # a fresh engine read daemon.json when it first started

    wanted = json.loads(render_daemon_json(EngineSpec(daemon={"log-level": "warn"})))
    rc, out = host.exec("cat /etc/docker/daemon.json")
    assert rc == 0 and json.loads(out) == wanted
    assert wanted["log-level"] == "warn" and wanted["live-restore"] is True and "log-opts" in wanted
    # a new SSH session as the non-root user: docker works without sudo, no TCP listener anywhere
    with Remote(host.target()) as r:
        assert r.run(["id", "-nG"]).stdout.split().count("docker") == 1
        info = json.loads(r.run(["docker", "info", "--format", "{{json .}}"]).stdout)
        assert info["LiveRestoreEnabled"] is True and info["LoggingDriver"] == "json-file"
        r.run(["docker", "ps"])
    rc, out = host.exec("ss -ltnp | grep dockerd || echo none")
    assert out.strip() == "none"


def test_second_run_changes_nothing_and_keeps_the_engine(host, tmp_path, capsys):
    started = engine_start(host)
    code, doc, err = run_setup(capsys, write_playbook(host, tmp_path, daemon="{log-level: warn}"))
    assert code == 0, err
    assert doc["changed"] == 0 and doc["failed"] == 0
    assert {r["status"] for r in tasks(doc).values()} == {"ok"}
    assert engine_start(host) == started


def test_daemon_json_change_restarts_once(host, tmp_path, capsys):
    started = engine_start(host)
    playbook = write_playbook(host, tmp_path, daemon="{log-level: warn, log-opts: {max-size: 20m}}")
    code, doc, err = run_setup(capsys, playbook, "--diff")
    assert code == 0, err
    t = tasks(doc)
    assert [n for n, r in t.items() if r["status"] == "changed"] == ["daemon.json", "handler: restart docker"]
    assert '+    "max-size": "20m"' in err and '-    "max-size": "10m"' in err  # --diff went to stderr
    assert engine_start(host) != started
    _, out = host.exec("cat /etc/docker/daemon.json")
    assert json.loads(out)["log-opts"] == {"max-file": "3", "max-size": "20m"}
    code, doc, err = run_setup(capsys, playbook)
    assert code == 0 and doc["changed"] == 0, err


def test_setup_host_shares_an_open_connection_for_up(host, tmp_path):
    """`up` passes one open Remote to setup and then to deploy: setup must leave it open and usable."""
    from provision.phases.setup import setup_host
    from provision.playbook import load_playbook
    from provision.report import Reporter

    pb = load_playbook(write_playbook(host, tmp_path, daemon="{log-level: warn, log-opts: {max-size: 20m}}"))
    with Remote(host.target()) as remote:
        recap = setup_host(pb, remote=remote, reporter=Reporter(json_mode=True))
        assert not recap.failed and recap.count(Status.CHANGED) == 0
        assert remote.connections_opened == 1
        assert remote.docker().containers.list() == []  # the Docker API rides the same connection
        assert remote.run(["docker", "ps", "-q"]).stdout == ""
