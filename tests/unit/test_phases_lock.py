"""provision.phases.lock: the one place a command holds the host's deploy lock and writes its audit entry (over a
LocalRemote: the real scripts, run by this machine's `sh`), and how `up` and `teardown` use it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provision import hostlock
from provision.changes import Status
from provision.errors import StepFailed
from provision.phases import lock as phase_lock
from provision.phases.lock import Identity, LockHeld, LockRequest, holding_lock, read_audit, read_lock
from provision.phases.up import run_up
from provision.providers.hostinfo import HostInfo
from tests.unit.lockhost import LocalRemote, playbook
from tests.unit.test_phases import PB, RUNNING, Reporter, Script, provisioned, result

pytestmark = pytest.mark.unit

ME = Identity("Ada <ada@example.com>", hostlock.machine_name(), os.getpid(), {"system": "ci", "job_id": "7"})
OTHER = Identity("Bob", "ci-runner-9", 12345, None)


def take(remote: LocalRemote, who: Identity, message: str = "", by_hand: bool = False) -> hostlock.LockRecord:
    rec = phase_lock.new_record(LockRequest("deploy", message=message, by_hand=by_hand), who)
    phase_lock.acquire(playbook(), remote, rec)
    return rec


def test_the_lock_is_held_for_the_block_then_released_with_one_audit_entry(tmp_path: Path) -> None:
    remote, pb = LocalRemote(tmp_path), playbook()
    with holding_lock(pb, remote, LockRequest("deploy"), Reporter(), identity=ME) as held:
        holder = read_lock(pb, remote)
        assert holder is not None and holder.who == ME.who and holder.pid == os.getpid()
        assert holder.command == "deploy" and holder.token == held.record.token
        held.finish(failed=False, changed=2)
    assert read_lock(pb, remote) is None
    [entry] = read_audit(pb, remote, 10)
    assert (entry["command"], entry["result"], entry["exit_code"]) == ("deploy", "changed", 0)
    assert entry["who"] == ME.who and entry["ci"] == {"system": "ci", "job_id": "7"}
    assert entry["apps"] == ["web", "worker"] and entry["releases"] == []


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failure_or_ctrl_c_still_releases_and_is_audited_as_failed(tmp_path: Path, error: BaseException) -> None:
    remote, pb = LocalRemote(tmp_path), playbook()
    with pytest.raises(type(error)), holding_lock(pb, remote, LockRequest("up"), Reporter(), identity=ME):
        raise error
    assert read_lock(pb, remote) is None
    [entry] = read_audit(pb, remote, 10)
    assert (entry["command"], entry["result"], entry["exit_code"]) == ("up", "failed", 1)


def test_a_held_lock_refuses_in_one_line_and_is_left_alone(tmp_path: Path) -> None:
    remote, pb = LocalRemote(tmp_path), playbook()
    theirs = take(remote, OTHER, "hotfix in progress")
    ran = []
    with pytest.raises(LockHeld) as refused, holding_lock(pb, remote, LockRequest("deploy"), Reporter(), identity=ME):
        ran.append(1)
    assert ran == [] and refused.value.exit_code == 1
    line = str(refused.value)
    assert "\n" not in line
    for part in ("Bob", "ci-runner-9", theirs.since, "`deploy`", "hotfix in progress"):
        assert part in line
    assert read_lock(pb, remote) == theirs
    assert read_audit(pb, remote, 10) == []


def test_lock_wait_polls_with_back_off_until_the_lock_is_free(tmp_path: Path) -> None:
    remote, pb = LocalRemote(tmp_path), playbook()
    theirs = take(remote, OTHER)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:  # the other run finishes while we wait
            phase_lock.release(pb, remote, theirs.token)

    reporter = Reporter()
    mine = phase_lock.new_record(LockRequest("deploy"), ME)
    phase_lock.acquire(pb, remote, mine, wait=600, reporter=reporter, sleep=sleep)
    assert sleeps == [1.0, 2.0, 4.0]
    assert read_lock(pb, remote) == mine
    assert [line for line in reporter.lines if "waiting up to 600s" in line and "Bob" in line]


def test_lock_wait_gives_up_when_the_wait_is_over(tmp_path: Path) -> None:
    remote, pb = LocalRemote(tmp_path), playbook()
    take(remote, OTHER)
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with pytest.raises(LockHeld):
        phase_lock.acquire(pb, remote, phase_lock.new_record(LockRequest("deploy"), ME), wait=40, sleep=sleep,
                           clock=lambda: now[0])
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 15.0, 10.0]  # doubling, capped at 15 s, never past the deadline
    assert sum(sleeps) == 40


def test_a_stale_lock_refuses_at_once_with_the_release_command(tmp_path: Path) -> None:
    remote, pb = LocalRemote(tmp_path), playbook()
    gone = Identity("Ada", hostlock.machine_name(), 2**31 - 3, None)  # this machine, no such process
    take(remote, gone)
    with pytest.raises(LockHeld) as refused:
        phase_lock.acquire(pb, remote, phase_lock.new_record(LockRequest("deploy"), ME), wait=600,
                           sleep=lambda s: pytest.fail("a stale lock is not waited for"))
    assert "stale" in str(refused.value) and "`dockyard lock.release -e staging`" in str(refused.value)


def test_a_lock_released_by_hand_and_retaken_stays_with_its_new_holder(tmp_path: Path) -> None:
    remote, pb = LocalRemote(tmp_path), playbook()
    reporter = Reporter()
    with holding_lock(pb, remote, LockRequest("deploy"), reporter, identity=ME) as held:
        assert phase_lock.release(pb, remote) == "released"  # someone runs lock.release
        theirs = take(remote, OTHER)
        held.finish(failed=False)
    assert read_lock(pb, remote) == theirs
    assert any("held by another" in line for line in reporter.lines)


def test_up_holds_the_lock_around_setup_and_deploy_once_ssh_is_up(tmp_path: Path) -> None:
    remote = LocalRemote(tmp_path)
    script = Script(provisioned(RUNNING), setup=[result("daemon.json", Status.CHANGED)],
                    deploy=[result("app web: container", Status.OK)])
    phases = script.phases()
    seen: list[object] = []
    setup = phases.setup

    def setup_while_locked(*args: object, **kw: object) -> object:
        seen.append(read_lock(PB, remote))
        kw["remote"] = script.remote
        return setup(*args, **kw)

    def deploy(*args: object, **kw: object) -> object:
        kw["remote"] = script.remote
        return script.run_deploy(*args, **kw)

    from dataclasses import replace

    phases = replace(phases, setup=setup_while_locked, deploy=deploy,
                     remote=lambda pb, host: (script.calls.append("remote"), remote)[1])
    up = run_up(PB, reporter=Reporter(), phases=phases, lock=LockRequest("up"))
    assert not up.failed and script.calls[:2] == ["provision check=False resize=False", "remote"]
    assert seen and seen[0] is not None and seen[0].command == "up"
    assert read_lock(PB, remote) is None and remote.closed == 1
    [entry] = read_audit(PB, remote, 5)
    assert (entry["command"], entry["result"]) == ("up", "changed")

    checked = run_up(PB, reporter=Reporter(), phases=phases, lock=LockRequest("up"), check=True)
    assert not checked.failed
    assert len(read_audit(PB, remote, 5)) == 1  # --check took no lock and wrote nothing


def test_teardown_of_a_host_that_does_not_answer_goes_on_without_the_lock(tmp_path: Path) -> None:
    class Unreachable(LocalRemote):
        def open(self) -> LocalRemote:
            raise StepFailed("ssh deploy@203.0.113.9:22: timed out after 10s")

    remote = Unreachable(tmp_path)
    reporter = Reporter()
    running = HostInfo(provider="aws", host_id="i-1", state="running", ssh_address="203.0.113.9", ssh_port=22,
                       ssh_user="deploy")
    with phase_lock.teardown_lock(playbook(), LockRequest("teardown"), reporter, find=lambda pb: running,
                                  remote_for=lambda pb, info: remote) as held:
        assert held is None
    assert remote.closed == 1 and any("without the deploy lock" in line for line in reporter.lines)
    with phase_lock.teardown_lock(playbook(), LockRequest("teardown"), reporter, find=lambda pb: None,
                                  remote_for=lambda pb, info: pytest.fail("no host: nothing to dial")) as held:
        assert held is None


def test_teardown_holds_the_lock_and_tries_quietly_to_close_it_on_a_host_that_is_gone(tmp_path: Path) -> None:
    class Vanishing(LocalRemote):
        gone = False

        def run(self, argv: list[str], **kw: object) -> object:
            if self.gone:
                raise StepFailed("ssh deploy@test-host:22: connection lost")
            return super().run(argv, **kw)  # type: ignore[arg-type]

    remote, pb, reporter = Vanishing(tmp_path), playbook(), Reporter()
    running = HostInfo(provider="local", host_id="c1", state="running", ssh_address="127.0.0.1", ssh_port=2222,
                       ssh_user="deploy")
    with phase_lock.teardown_lock(pb, LockRequest("teardown"), reporter, find=lambda pb: running,
                                  remote_for=lambda pb, info: remote) as held:
        assert held is not None and read_lock(pb, remote) is not None
        held.finish(failed=False, changed=3)
        held.host_gone = remote.gone = True
    assert reporter.lines == []  # no warning about a log and a lock that went with the host
    assert remote.closed == 1
