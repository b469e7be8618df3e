"""The engine plan from recorded facts (no SSH): what setup would do on fresh and configured hosts."""

from __future__ import annotations

import base64
import json

import pytest

from provision.changes import Status, Step
from provision.commands import engine as cmd
from provision.errors import InputError, StepFailed
from provision.facts.engine import DAEMON_JSON, facts_script, parse_engine_facts
from provision.ops import Argv, Reconnect, Upload, Wait
from provision.plan.engine import (
    RESTART,
    EngineDesired,
    check_daemon_json,
    plan_engine,
    plan_restart,
)
from provision.render_daemon import render_daemon_json
from provision.runner import Runner
from provision.spec import EngineSpec

pytestmark = pytest.mark.unit

DEFAULT_JSON = render_daemon_json(EngineSpec())

# Recorded from a fresh sim host (Debian 12 container, no systemd, no docker) as user `deploy`.
DEBIAN_FRESH = """
@@os-release
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
ID=debian
@@arch
x86_64
@@dpkg-arch
amd64
@@uid
0
@@hard-nofile
20000
@@package-manager
apt-get
@@docker
@@dockerd
@@dockerd-version
@@packages
@@systemd
@@unit
@@init-script
@@init-enabled
@@daemon-json
@@docker-group
@@users
deploy yes
@@engine
@@apt-repo
@@dnf-repo
@@end
"""


def configured(daemon_json: str = DEFAULT_JSON, members: str = "deploy", cmdline: str = "") -> str:
    """The same host after `setup` (recorded, with daemon.json and group members as parameters)."""
    b64 = base64.b64encode(daemon_json.encode()).decode()
    return DEBIAN_FRESH.split("@@docker\n")[0] + f"""@@docker
/usr/bin/docker
@@dockerd
/usr/sbin/dockerd
@@dockerd-version
Docker version 20.10.24+dfsg1, build 5d6db84
@@packages
docker-ce un
docker.io ii  20.10.24+dfsg1-1+deb12u1+b6
@@systemd
@@unit
@@init-script
present
0
@@init-enabled
S01docker
@@daemon-json
{b64}
@@docker-group
docker:x:102:{members}
@@users
deploy yes
@@engine
pid=457
start=46571
cmdline=/usr/sbin/dockerd -p /var/run/docker.pid {cmdline}
server=20.10.24+dfsg1
@@apt-repo
@@dnf-repo
@@end
"""


AL2023_FRESH = """
@@os-release
NAME="Amazon Linux"
VERSION="2023"
ID="amzn"
ID_LIKE="fedora"
VERSION_ID="2023"
PRETTY_NAME="Amazon Linux 2023.6.20241212"
@@arch
aarch64
@@dpkg-arch
@@uid
0
@@hard-nofile
524288
@@package-manager
dnf
@@docker
@@dockerd
@@systemd
yes
@@unit
enabled=
active=inactive
@@init-script
@@users
ec2-user yes
@@engine
@@end
"""

UBUNTU_FRESH = (DEBIAN_FRESH.replace('ID=debian', 'ID=ubuntu\nID_LIKE=debian')
                .replace("VERSION_CODENAME=bookworm", "VERSION_CODENAME=noble")
                .replace("@@systemd\n", "@@systemd\nyes\n").replace("amd64", "arm64")
                .replace("aarch64", "x86_64"))


def desired(daemon_json: str = DEFAULT_JSON, source: str = "distro", user: str = "deploy",
            users: tuple[str, ...] = ()) -> EngineDesired:
    return EngineDesired(source=source, daemon_json=daemon_json, ssh_user=user, users=users)


def by_name(tasks):
    return {t.name: t for t in tasks}


def argvs(task):
    return [s.argv for c in task.changes for s in c.steps if s.argv is not None]


def descriptions(task):
    return [s.description for c in task.changes for s in c.steps]


def test_fresh_debian_host_gets_everything_in_order():
    facts = parse_engine_facts(DEBIAN_FRESH)
    assert not facts.installed and facts.os.package_manager == "apt" and facts.service_manager is None
    tasks = plan_engine(desired(), facts)
    assert [t.name for t in tasks] == ["daemon.json", "docker engine", "init script", "docker service",
                                      "docker group"]
    t = by_name(tasks)
    [dj] = t["daemon.json"].changes
    assert dj.before is None and dj.after == DEFAULT_JSON
    assert dj.notify == ()  # a fresh engine reads it when it first starts: no restart
    assert argvs(t["docker engine"]) == [cmd.apt_update(), cmd.apt_install(("docker.io",))]
    assert argvs(t["init script"]) == [cmd.init_relax_ulimits()]
    assert argvs(t["docker service"]) == [cmd.init_enable(), cmd.init_start()]
    assert descriptions(t["docker service"])[-1].startswith("wait until the engine answers")
    [group] = t["docker group"].changes
    assert group.steps == (  # the last one, without sudo, proves the group works for the SSH user in this run
        Step("groupadd -f docker", Argv(cmd.groupadd_docker(), sudo=True)),
        Step("add deploy to the docker group", Argv(cmd.add_to_group("deploy"), sudo=True)),
        Step("reconnect so the new group applies to this session", Reconnect()),
        Step("docker ps as deploy, without sudo", Argv(cmd.docker_ps(), sudo=False)))
    assert all(s.op.sudo for c in t["docker engine"].changes for s in c.steps)
    assert t["docker service"].changes[0].steps[-1].op == Wait("engine.answers", timeout=60.0)
    assert dj.steps[-1].op == Upload(DAEMON_JSON, DEFAULT_JSON.encode(), mode=0o644, owner="root:root", sudo=True)


def test_plans_differing_only_in_an_op_parameter_compare_unequal():
    facts = parse_engine_facts(DEBIAN_FRESH)
    assert plan_engine(desired(), facts) == plan_engine(desired(), facts)
    one = plan_engine(desired(), facts)[0].changes
    other = plan_engine(desired(render_daemon_json(EngineSpec(daemon={"debug": True}))), facts)[0].changes
    assert [c.steps[0] for c in one] == [c.steps[0] for c in other]  # the mkdir is the same
    assert one[0].steps[1].description == other[0].steps[1].description
    assert one[0].steps[1] != other[0].steps[1]  # only the uploaded content differs
    assert plan_restart(facts, wait=5) != plan_restart(facts, wait=6)


def test_configured_host_is_all_ok():
    facts = parse_engine_facts(configured())
    assert facts.installed and facts.running and facts.answers and facts.engine_start == "46571"
    assert facts.in_docker_group("deploy") and facts.service_manager == "init"
    tasks = plan_engine(desired(), facts)
    assert [t.changes for t in tasks] == [[]] * 5 and not any(t.error for t in tasks)
    assert by_name(tasks)["docker engine"].data["present"] is True


def test_daemon_json_change_notifies_restart_only():
    facts = parse_engine_facts(configured())
    new = render_daemon_json(EngineSpec(daemon={"log-opts": {"max-size": "20m"}}))
    tasks = plan_engine(desired(new), facts)
    changed = [t.name for t in tasks if t.changes]
    assert changed == ["daemon.json"]
    [c] = by_name(tasks)["daemon.json"].changes
    assert c.notify == (RESTART,) and c.before == DEFAULT_JSON and c.after == new
    [restart] = plan_restart(facts)
    assert restart.steps[0].argv == cmd.init_restart()


def test_same_json_formatted_differently_is_ok():
    compact = json.dumps(json.loads(DEFAULT_JSON))
    facts = parse_engine_facts(configured(daemon_json=compact))
    assert by_name(plan_engine(desired(), facts))["daemon.json"].changes == []


def test_existing_engine_is_accepted_even_when_docker_ce_is_asked():
    facts = parse_engine_facts(configured())
    task = by_name(plan_engine(desired(source="docker-ce"), facts))["docker engine"]
    assert task.changes == [] and task.data["version"].startswith("Docker version 20.10")


def test_group_members_missing_and_unknown_user():
    facts = parse_engine_facts(configured(members="").replace("deploy yes", "ci no\ndeploy yes"))
    task = by_name(plan_engine(desired(users=("ci", "root")), facts))["docker group"]
    [c] = task.changes
    assert c.data["added"] == ["deploy", "ci"]  # root never needs it
    assert "ci: no such user" in c.reason
    assert cmd.groupadd_docker() not in argvs(task)  # the group exists


def test_root_ssh_user_needs_no_group_or_reconnect():
    facts = parse_engine_facts(configured(members=""))
    task = by_name(plan_engine(desired(user="root"), facts))["docker group"]
    assert task.changes == []


def test_tcp_listener_is_refused():
    facts = parse_engine_facts(configured(cmdline="-H tcp://0.0.0.0:2375"))
    task = by_name(plan_engine(desired(), facts))["docker service"]
    assert task.error and "tcp://0.0.0.0:2375" in task.error


def test_al2023_distro_uses_dnf_and_systemd():
    facts = parse_engine_facts(AL2023_FRESH)
    assert facts.os.package_manager == "dnf" and facts.systemd
    t = by_name(plan_engine(desired(user="ec2-user"), facts))
    assert argvs(t["docker engine"]) == [("dnf", "-y", "-q", "install", "docker")]
    assert t["init script"].changes == []
    assert argvs(t["docker service"]) == [cmd.systemd_enable_start()]
    assert plan_restart(facts)[0].steps[0].argv == ("systemctl", "restart", "docker.service")


def test_al2023_docker_ce_writes_the_repo_then_installs():
    facts = parse_engine_facts(AL2023_FRESH)
    task = by_name(plan_engine(desired(source="docker-ce", user="ec2-user"), facts))["docker engine"]
    descs = descriptions(task)
    assert descs[0] == "write /etc/yum.repos.d/docker-ce.repo"
    assert argvs(task) == [cmd.dnf_install(cmd.DOCKER_CE_PACKAGES)]


def test_ubuntu_docker_ce_adds_key_and_source():
    facts = parse_engine_facts(UBUNTU_FRESH)
    assert facts.os.is_ubuntu and facts.systemd
    task = by_name(plan_engine(desired(source="docker-ce"), facts))["docker engine"]
    cmds = argvs(task)
    assert cmds[0] == cmd.apt_install(("ca-certificates", "curl"))
    assert any(a[0] == "curl" and a[-1] == "https://download.docker.com/linux/ubuntu/gpg" for a in cmds)
    assert "write /etc/apt/sources.list.d/docker.list" in descriptions(task)
    assert cmds[-1] == cmd.apt_install(cmd.DOCKER_CE_PACKAGES)


def test_unsupported_os_fails_planning():
    text = DEBIAN_FRESH.replace("apt-get\n", "").replace("ID=debian", "ID=alpine")
    with pytest.raises(StepFailed, match="no apt-get or dnf"):
        plan_engine(desired(), parse_engine_facts(text))


def test_truncated_facts_are_an_error():
    with pytest.raises(StepFailed, match="did not finish"):
        parse_engine_facts(DEBIAN_FRESH.replace("@@end", ""))


def test_facts_script_quotes_users_and_refuses_odd_names():
    script = facts_script(["deploy", "ci"])
    assert "for u in ci deploy; do" in script
    with pytest.raises(ValueError):
        facts_script(["x; rm -rf /"])


def test_check_mode_run_of_a_fresh_host_changes_nothing():
    """The runner's pure planning with recorded facts: check mode reports, no step runs."""

    class NoRemote:
        def run(self, *a, **k):
            raise AssertionError("check mode ran a command")

        def put_file(self, *a, **k):
            raise AssertionError("check mode uploaded a file")

    facts = parse_engine_facts(DEBIAN_FRESH)
    runner = Runner("h", NoRemote(), check=True)
    runner.add_handler(RESTART, lambda: plan_restart(facts))
    for task in plan_engine(desired(), facts):
        runner.run_task(task.name, task.changes)
    assert runner.flush_handlers() == []  # nothing was running: no restart
    assert runner.recap.count(Status.CHANGED) == 5 and not runner.failed


@pytest.mark.parametrize("daemon, key, words", [
    ({"log-opts": {"max-file": 3}}, "engine.daemon.log-opts.max-file", "must be a string"),
    ({"live-restore": "yes"}, "engine.daemon.live-restore", "true or false"),
    ({"max-concurrent-downloads": True}, "engine.daemon.max-concurrent-downloads", "whole number"),
    ({"log-opt": {"max-size": "1m"}}, "engine.daemon.log-opt", "not a daemon.json option"),
    ({"dns": "8.8.8.8"}, "engine.daemon.dns", "a list"),
])
def test_broken_daemon_values_are_input_errors(daemon, key, words):
    text = render_daemon_json(EngineSpec(daemon=daemon))
    with pytest.raises(InputError) as err:
        check_daemon_json(text)
    [problem] = err.value.problems
    assert problem.key_path == key and words in problem.message


def test_good_daemon_json_passes():
    text = render_daemon_json(EngineSpec(daemon={"dns": ["1.1.1.1"], "default-ulimits": {},
                                                 "log-opts": {"max-size": "5m"}, "debug": False}))
    assert check_daemon_json(text)["dns"] == ["1.1.1.1"]


def test_an_init_script_already_in_place_is_left_alone():
    """The local sandbox image ships a wrapper at /etc/init.d/docker before docker is installed."""
    facts = parse_engine_facts(DEBIAN_FRESH.replace("@@init-script\n", "@@init-script\npresent\n0\n"))
    assert facts.init_script and not facts.installed
    assert by_name(plan_engine(desired(), facts))["init script"].changes == []
    fatal = parse_engine_facts(configured().replace("@@init-script\npresent\n0", "@@init-script\npresent\n3"))
    assert argvs(by_name(plan_engine(desired(), fatal))["init script"]) == [cmd.init_relax_ulimits()]
