"""Hardening parity: every setting a standalone container gets from `docker create` (ContainerConfig.create_argv)
reaches the Swarm service spec built from the same ContainerConfig."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provision.commands.service import ServiceConfig
from tests.unit.test_service_spec import kwargs, svc, web

pytestmark = pytest.mark.unit


def both(cfg: ServiceConfig) -> tuple[tuple[str, ...], dict]:
    """The container's argv and the service's task template, from one config."""
    return cfg.container.create_argv(), kwargs(cfg)["task_template"]


def flag_values(argv: tuple[str, ...], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_init_on_both():
    argv, tt = both(svc())
    assert "--init" in argv and tt["ContainerSpec"]["Init"] is True


@pytest.mark.parametrize("read_only", [True, False])
def test_read_only_root_on_both(read_only):
    cfg = svc()
    cfg = replace(cfg, container=replace(cfg.container, read_only=read_only))
    argv, tt = both(cfg)
    assert ("--read-only" in argv) is read_only
    assert tt["ContainerSpec"]["ReadOnly"] is read_only


def test_every_tmpfs_is_a_tmpfs_mount():
    cfg = svc()
    cfg = replace(cfg, container=replace(cfg.container, tmpfs=("/tmp", "/var/cache/app")))
    argv, tt = both(cfg)
    assert [v.split(":")[0] for v in flag_values(argv, "--tmpfs")] == ["/tmp", "/var/cache/app"]
    assert [m["Target"] for m in tt["ContainerSpec"]["Mounts"] if m["Type"] == "tmpfs"] == ["/tmp", "/var/cache/app"]


@pytest.mark.parametrize("opts,expected", [(("no-new-privileges",), True), ((), False)])
def test_no_new_privileges_follows_the_containers_security_opt(opts, expected):
    cfg = svc()
    cfg = replace(cfg, container=replace(cfg.container, security_opt=opts))
    argv, tt = both(cfg)
    assert ("no-new-privileges" in flag_values(argv, "--security-opt")) is expected
    assert tt["ContainerSpec"]["Privileges"] == {"NoNewPrivileges": expected}


def test_the_default_container_gets_no_new_privileges_and_so_does_the_service():
    argv, tt = both(svc())
    assert flag_values(argv, "--security-opt") == ["no-new-privileges"]
    assert tt["ContainerSpec"]["Privileges"]["NoNewPrivileges"] is True


def test_limits_on_both():
    argv, tt = both(svc(web(memory="128m", cpus=1.5)))
    assert flag_values(argv, "--memory") == [str(128 * 1024 * 1024)]
    assert flag_values(argv, "--cpus") == ["1.5"]
    assert tt["Resources"]["Limits"] == {"MemoryBytes": 128 * 1024 * 1024, "NanoCPUs": 1_500_000_000}


@pytest.mark.parametrize("restart,condition", [("always", "any"), ("unless-stopped", "any"),
                                               ("on-failure", "on-failure"), ("no", "none")])
def test_restart_policy(restart, condition):
    argv, tt = both(svc(web(restart=restart)))
    assert flag_values(argv, "--restart") == [restart]
    assert tt["RestartPolicy"]["Condition"] == condition


def test_health_check_same_probe_and_timing():
    argv, tt = both(svc(web(healthcheck={"http": "/up", "interval": "2s", "retries": 4, "start_period": "3s"})))
    hc = tt["ContainerSpec"]["Healthcheck"]
    assert hc["Test"] == ["CMD-SHELL", flag_values(argv, "--health-cmd")[0]]
    assert (hc["Interval"], hc["Retries"], hc["StartPeriod"]) == (2_000_000_000, 4, 3_000_000_000)
    assert flag_values(argv, "--health-interval") == ["2s"] and flag_values(argv, "--health-retries") == ["4"]


def test_env_labels_and_volumes_on_both():
    argv, tt = both(svc())
    cs = tt["ContainerSpec"]
    # the container's secrets come from its env file; the service's as files, named by NAME_FILE variables
    assert flag_values(argv, "--env") == [e for e in cs["Env"] if "_FILE=" not in e]
    assert [e.split("=")[0] for e in cs["Env"] if "_FILE=" in e] == ["DB_PASSWORD_FILE"]
    for key in ("dockyard.project", "dockyard.environment", "dockyard.app", "dockyard.config-hash"):
        assert key in cs["Labels"]
    assert [m.split(",")[1].removeprefix("source=") for m in flag_values(argv, "--mount")] == \
        [m["Source"] for m in cs["Mounts"] if m["Type"] == "volume"]


def test_no_log_driver_in_the_spec_so_the_daemon_default_applies_as_for_containers():
    argv, tt = both(svc())
    assert "--log-driver" not in argv and "LogDriver" not in tt
