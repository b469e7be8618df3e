"""The instance's SSH host keys from its EC2 console, remembered before dockyard's first SSH connection.

cloud-init prints them between `-----BEGIN SSH HOST KEY KEYS-----` and `-----END SSH HOST KEY KEYS-----`; the
console is read through the authenticated EC2 API, so unlike trust on first use nobody on the path between
here and the instance can substitute a key. Parsing is provision.hostkeys.parse_console_host_keys (pure).
"""

from __future__ import annotations

import time
from typing import Any

from provision.errors import StepFailed
from provision.facts.aws import console_output
from provision.hostkeys import (
    HostKeyTrust,
    known_hosts_name,
    parse_console_host_keys,
    read_known_hosts,
    record_host_keys,
)
from provision.providers.aws_session import WAIT_DELAY, aws_errors
from provision.providers.hostinfo import HostInfo

CONSOLE_WAIT = 180.0  # seconds strict mode waits for cloud-init to print the host keys to the console


def record_console_host_keys(ec2: Any, pb: Any, info: HostInfo, reporter: Any, *, delay: float = WAIT_DELAY,
                             wait: float | None = None) -> int:
    """Before the first SSH connection: remember the host keys cloud-init printed to the instance's console
    (read through the authenticated EC2 API, unlike trust on first use) under the name dockyard dials.

    One read, unless strict mode would otherwise refuse the host (no pin, nothing known for it): then the
    console is polled for up to `wait` seconds (cloud-init prints the keys late in the first boot)."""
    wait = CONSOLE_WAIT if wait is None else wait
    name = known_hosts_name(info.ssh_address, info.ssh_port)
    trust = HostKeyTrust.from_playbook(pb)
    known = trust.pinned or any(read_known_hosts(p, name) for p in (pb.known_hosts_file, *trust.read_only))
    polls = max(1, int(wait / max(delay, 0.01))) if trust.strict and not known else 1
    keys: list[tuple[str, str]] = []
    for attempt in range(polls):
        with aws_errors(f"reading the console output of {info.host_id}"):
            keys = parse_console_host_keys(console_output(ec2, info.host_id))
        if keys or attempt == polls - 1:
            break
        reporter.log(f"no SSH host keys in the console of {info.host_id} yet; retrying in {delay:g}s")
        time.sleep(delay)
    if not keys:
        reporter.log(f"the console of {info.host_id} shows no SSH host keys (yet): the first connection "
                     + ("needs ssh.host_key or ssh.known_hosts (strict host keys)" if trust.strict and not known
                        else "checks the key against the known_hosts files"))
        return 0
    try:
        added = record_host_keys(pb.known_hosts_file, name, keys)
    except OSError as exc:
        raise StepFailed(f"cannot write known_hosts file {pb.known_hosts_file}: {exc.strerror or exc}") from None
    if added:
        reporter.log(f"recorded {added} SSH host key(s) of {info.host_id} from its console in "
                     f"{pb.known_hosts_file}")
    return added
