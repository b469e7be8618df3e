"""Pure builders of an app's container: argv, labels, names, health probe, config hash."""

from __future__ import annotations

import pytest

from provision.commands.docker import (
    LABEL_CONFIG_HASH,
    container_config,
    env_file_content,
    env_file_path,
    http_probe,
    network_name,
    volume_name,
)
from provision.spec import AppSpec

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-value-XYZ"


def web(**over) -> AppSpec:
    base = dict(
        template="python-web",
        port=8000,
        publish="127.0.0.1:18080",
        env={"MODE": "prod", "N": 3},
        secrets=["DB_PASSWORD"],
        volumes={"data": "/data"},
        memory="256m",
        cpus=0.5,
        healthcheck={"http": "/healthz", "interval": "1s", "retries": 5},
        reach=["api"],
    )
    base.update(over)
    return AppSpec.model_validate(base)


def config(app: AppSpec | None = None, digest: str = "d1", user: str = "root", read_only: bool = True, **kw):
    app = app or web()
    return container_config(
        "shop",
        "prod",
        "web",
        app,
        image="shop/web:abc",
        build_hash="b" * 64,
        secret_digests={"DB_PASSWORD": digest},
        ssh_user=user,
        read_only=read_only,
        **kw,
    )


def test_names() -> None:
    assert network_name("shop", "prod", "web") == "shop-prod-web"
    assert volume_name("shop", "prod", "web", "data") == "shop-prod-web-data"
    assert env_file_path("root", "shop", "prod", "web") == "/var/lib/dockyard/shop-prod/web.env"
    assert env_file_path("admin", "shop", "prod", "web") == ".dockyard/shop-prod/web.env"


def test_create_argv() -> None:
    cfg = config()
    argv = cfg.create_argv()
    assert argv[:4] == ("docker", "create", "--name", cfg.name)
    assert cfg.name == f"shop-prod-web-{cfg.config_hash[:10]}"

    def values(flag: str) -> list[str]:
        return [argv[i + 1] for i, a in enumerate(argv) if a == flag]

    assert f"{LABEL_CONFIG_HASH}={cfg.config_hash}" in values("--label")
    owners = {"dockyard.project=shop", "dockyard.environment=prod", "dockyard.app=web"}
    assert owners <= set(values("--label"))
    assert values("--network") == ["shop-prod-web"] and values("--network-alias") == ["web"]
    assert values("--env") == ["MODE=prod", "N=3"]
    assert values("--env-file") == ["/var/lib/dockyard/shop-prod/web.env"]
    assert values("--publish") == ["127.0.0.1:18080:8000"]
    assert values("--mount") == ["type=volume,source=shop-prod-web-data,target=/data"]
    assert values("--memory") == [str(256 * 1024**2)] and values("--cpus") == ["0.5"]
    assert values("--restart") == ["unless-stopped"]
    assert values("--security-opt") == ["no-new-privileges"]
    assert "--init" in argv  # signals reach the app (busybox httpd or sh as PID 1 would ignore SIGTERM)
    assert "--read-only" in argv and values("--tmpfs") == ["/tmp:rw,nosuid,nodev"]
    assert values("--health-interval") == ["1s"] and values("--health-retries") == ["5"]
    assert "/healthz" in values("--health-cmd")[0]
    assert argv[-1] == "shop/web:abc"  # no command: the image's CMD
    assert cfg.extra_networks == ("shop-prod-api",)


def test_publish_all_interfaces_and_ipv6() -> None:
    assert "18080:8000" in config(web(publish=18080)).create_argv()
    assert "[::1]:18080:8000" in config(web(publish="[::1]:18080")).create_argv()


def test_command_and_no_read_only() -> None:
    argv = config(web(command="python -m worker --fast"), read_only=False).create_argv()
    assert argv[argv.index("shop/web:abc") + 1 :] == ("python", "-m", "worker", "--fast")
    assert "--read-only" not in argv and "--tmpfs" not in argv


def test_secret_value_never_in_argv_labels_or_describe(tmp_path) -> None:
    from provision.playbook import load_playbook
    from provision.report import unified_diff
    from provision.secrets import SecretSource

    # the secret goes in the way deploy feeds it: read from the playbook's .env, digested for the config
    (tmp_path / ".env").write_text(f"DB_PASSWORD={SECRET}\n")
    (tmp_path / "prod.yml").write_text("project: shop\nprovider: existing\nhost: {address: 192.0.2.1}\n")
    source = SecretSource(load_playbook(tmp_path / "prod.yml"), environ={})
    assert source.value("DB_PASSWORD") == SECRET
    digest = source.digest("DB_PASSWORD")
    cfg = config(digest=digest)
    env_file = env_file_content({"DB_PASSWORD": source.value("DB_PASSWORD")}).decode()
    assert env_file == f"DB_PASSWORD={SECRET}\n"  # where the value must be: the 0600 env file
    assert dict(cfg.secret_digests) == {"DB_PASSWORD": digest}  # ... and its digest in the config hash input
    before = config(digest="d0").describe()
    text = "\n".join([*cfg.create_argv(), *cfg.labels.values(), cfg.describe(), repr(cfg), cfg.name,
                      unified_diff("app:web:container", before, cfg.describe())])
    assert SECRET not in text and digest not in text
    assert "secret DB_PASSWORD" in cfg.describe()
    assert config(digest="d0").config_hash != cfg.config_hash  # the value counts, through its digest


def test_env_values_with_newlines_cannot_fake_diff_lines() -> None:
    from provision.report import unified_diff

    cfg = config(web(env={"MODE": "prod\nsecret DB_PASSWORD (from env file)\nrestart: no", "N": "3"}))
    text = cfg.describe()
    assert 'env MODE="prod\\nsecret DB_PASSWORD (from env file)\\nrestart: no"' in text
    assert len([line for line in text.splitlines() if line.startswith("restart:")]) == 1
    assert "env N=3" in text  # an ordinary value is shown as it is
    diff = unified_diff("app:web:container", config().describe(), text)
    added = [line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert len(added) == 2 and added[0].startswith("+env MODE=") and added[1].startswith("+config hash:")
    assert "create" in " ".join(cfg.create_argv())  # the argv keeps the real value (one element, no shell)
    assert "MODE=prod\nsecret DB_PASSWORD (from env file)\nrestart: no" in cfg.create_argv()


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"digest": "d2"}, True),  # a secret's value changed
        ({"app": web(env={"MODE": "dev", "N": 3})}, True),
        ({"app": web(memory="512m")}, True),
        ({"app": web(publish="127.0.0.1:18081")}, True),
        ({"app": web(reach=[])}, True),
        ({"app": web(volumes={"data": "/srv"})}, True),
        ({"app": web(healthcheck={"http": "/", "interval": "1s", "retries": 5})}, True),
        ({"read_only": False}, True),
        ({"user": "admin"}, True),  # the env file moves
        ({}, False),
        ({"app": web(env={"N": "3", "MODE": "prod"})}, False),  # order and YAML ints do not matter
    ],
)
def test_config_hash_covers_what_needs_a_new_container(change: dict, differs: bool) -> None:
    assert (config(**change).config_hash != config().config_hash) is differs


def test_no_health_and_no_secrets() -> None:
    app = AppSpec.model_validate({"template": "worker"})
    cfg = container_config(
        "shop",
        "prod",
        "jobs",
        app,
        image="shop/jobs:1",
        build_hash="x",
        secret_digests={},
        ssh_user="root",
        read_only=False,
    )
    argv = cfg.create_argv()
    assert "--health-cmd" not in argv and "--env-file" not in argv and "--publish" not in argv
    assert cfg.health is None and cfg.env_file is None


def test_http_probe_covers_the_usual_clients() -> None:
    probe = http_probe(8000, "/health z", 3)
    for client in ("python3", "node", "curl", "wget", "perl", "bash"):
        assert f"command -v {client}" in probe
    assert "unset http_proxy" in probe and "'/health z'" in probe


def test_env_file_content() -> None:
    assert env_file_content({"B": "2", "A": "x=y z"}) == b"A=x=y z\nB=2\n"
    with pytest.raises(ValueError, match="newline"):
        env_file_content({"A": "two\nlines"})
