"""Does a host's kernel have IPVS? Swarm's virtual IPs and routing mesh (ingress-mode published ports) need it;
without it a service must use endpoint mode `dnsrr` and host-mode ports (provision.plan.services decides).

The fact is one short script (no sudo: /proc is world-readable and `modprobe -n` only looks):
- `/proc/net/ip_vs` exists: IPVS is built in or its module is loaded (the file is per network namespace, so a
  sim host — a container — sees it exactly when its kernel does);
- else `ip_vs` is listed in /proc/modules: loaded (a kernel without procfs entries for it);
- else `modprobe -n ip_vs` succeeds: loadable; the engine loads it itself (libnetwork runs `modprobe -va ip_vs`
  before its first IPVS call);
- else absent. A kernel without module support (no /proc/modules, no modprobe: this machine and its sim hosts)
  and without the file is "absent".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IPVS_SCRIPT = r"""export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ -e /proc/net/ip_vs ]; then echo "ipvs=present"
elif grep -qs '^ip_vs ' /proc/modules; then echo "ipvs=loaded"
elif modprobe -n ip_vs >/dev/null 2>&1; then echo "ipvs=loadable"
else echo "ipvs=absent"; fi
"""

AVAILABLE = ("present", "loaded", "loadable")


@dataclass(frozen=True)
class IpvsFact:
    state: str  # present | loaded | loadable | absent | unknown (the script printed nothing we know)

    @property
    def available(self) -> bool:
        return self.state in AVAILABLE


def parse_ipvs(text: str) -> IpvsFact:
    """The script's output → the fact; anything else (a truncated run, a noisy login shell) is "unknown",
    which counts as absent: the routing mesh is only chosen when every host positively has IPVS."""
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "ipvs" and value in (*AVAILABLE, "absent"):
            return IpvsFact(value)
    return IpvsFact("unknown")


def gather_ipvs(remote: Any) -> IpvsFact:
    """The thin effect: one round trip."""
    return parse_ipvs(remote.run_script(IPVS_SCRIPT, check=False, timeout=30).stdout)
