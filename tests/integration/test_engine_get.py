"""Remote.engine_get (the deploy facts' fast path: no Docker SDK) against a real sshd and this machine's engine."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from provision.commands.docker import LABEL_APP, LABEL_PROJECT, owner_labels
from provision.errors import StepFailed
from provision.facts.apps import gather, gather_remote, list_paths
from provision.remote import Remote, SshTarget

pytestmark = pytest.mark.integration


def target(sshd) -> SshTarget:
    return SshTarget(host=sshd.host, port=sshd.port, user=sshd.user, key_file=sshd.key_file,
                     known_hosts=sshd.known_hosts)


def sessions(sshd) -> int:
    return sshd.log.read_text(errors="replace").count("Starting session: command")


def test_list_paths_ask_what_the_sdk_asks():
    paths = list_paths("proj", "staging")
    assert [urlsplit(p).path for p in paths] == ["/containers/json", "/images/json", "/networks", "/volumes"]
    queries = [parse_qs(urlsplit(p).query) for p in paths]
    assert queries[0]["all"] == ["1"]
    assert json.loads(queries[0]["filters"][0]) == {"label": [f"{LABEL_PROJECT}=proj"]}
    assert json.loads(queries[1]["filters"][0]) == {"label": [f"{LABEL_PROJECT}=proj"]}
    env_labels = sorted(f"{k}={v}" for k, v in owner_labels("proj", "staging").items())
    for q in queries[2:]:
        assert sorted(json.loads(q["filters"][0])["label"]) == env_labels


def test_gather_remote_equals_the_sdk_facts_over_one_session(sshd, docker_client, unique):
    labels = {**owner_labels(unique, "test"), LABEL_APP: "web"}
    net = docker_client.networks.create(f"{unique}-web", labels=labels)
    vol = docker_client.volumes.create(f"{unique}-data", labels={**labels, "dockyard.volume": "data"})
    container = docker_client.containers.create("dockyard-ci/bookworm-minbase:1", ["true"], name=unique,
                                                labels=labels)
    try:
        with Remote(target(sshd)) as r:
            before = sessions(sshd)
            fast = gather_remote(r, unique, "test")
            deadline = time.monotonic() + 5  # sshd flushes its log lines a moment later (bounded)
            while sessions(sshd) < before + 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sessions(sshd) == before + 1  # the four reads shared one channel
            assert r._api_version  # remembered from the engine's Api-Version header
            client = r.docker()
            assert client.api.api_version == r._api_version == client.version()["ApiVersion"]
            slow = gather(client, unique, "test")
        assert fast == slow
        assert [c.id for c in fast.containers] == [container.id]
        assert [n.id for n in fast.networks] == [net.id]
        assert [v.name for v in fast.volumes] == [vol.name]
        assert fast.apps_seen == {"web"}
    finally:
        container.remove(force=True)
        net.remove()
        vol.remove()


def test_engine_errors_are_one_step_failure(sshd):
    with Remote(target(sshd)) as r:
        with pytest.raises(StepFailed) as err:
            r.engine_get(["/version", "/containers/dyt-no-such-container-0/json"])
        msg = str(err.value)
        assert "answered 404 to GET /containers/dyt-no-such-container-0/json" in msg
        assert "No such container" in msg
        assert r.run(["true"]).ok  # the connection survives the failed read
