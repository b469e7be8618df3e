"""`proxy-ca`: the host work of reading the front proxy's local CA (tls: internal), to trust it in a browser,
curl (`--cacert`) or a test."""

from __future__ import annotations

from provision.commands.proxy import proxy_name
from provision.errors import InputError
from provision.phases.host import remote_for
from provision.proxyops import root_certificate
from provision.spec import Playbook


def proxy_ca(pb: Playbook) -> str:
    if pb.proxy is None:
        raise InputError.single("the playbook has no `proxy:` section", pb.source, "proxy")
    if pb.proxy.tls != "internal":
        raise InputError.single(f"proxy.tls is {pb.proxy.tls!r}: only `tls: internal` has a local CA to trust "
                                "(auto uses Let's Encrypt, which browsers already trust)", pb.source, "proxy.tls")
    with remote_for(pb) as remote:
        return root_certificate(remote, proxy_name(pb.project, pb.environment))
