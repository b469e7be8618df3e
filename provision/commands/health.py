"""Pure builders for an app's health check: the HTTP probe (a POSIX sh command run inside the container by the
engine) and the `Health` settings a container is created with.

The http probe is run by `/bin/sh` with whatever client the image has: python3, node, curl, wget, busybox's
wget, then perl (Debian's perl-base is essential), then bash's /dev/tcp. That covers the built-in templates
and most images; an image without `/bin/sh` (e.g. distroless) needs `healthcheck.cmd`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from provision.spec import AppSpec, HealthcheckSpec

_PY = (
    "import sys,urllib.request as u,urllib.error as e\n"
    "class N(u.HTTPRedirectHandler):\n redirect_request=lambda *a:None\n"
    "r=u.Request(sys.argv[1])\nif sys.argv[3]: r.add_header('Host',sys.argv[3])\n"
    "try:\n c=u.build_opener(u.ProxyHandler({}),N).open(r,timeout=float(sys.argv[2])).status\n"
    "except e.HTTPError as x:\n c=x.code\n"
    "except Exception as x:\n print(x)\n sys.exit(1)\n"
    "print(c)\nsys.exit(0 if 200<=c<int(sys.argv[4]) else 1)"
)
_NODE = (
    "const a=process.argv,h=a[3]?{Host:a[3]}:{};"
    "const r=require('http').get(a[1],{headers:h},s=>process.exit(s.statusCode>=200&&s.statusCode<+a[4]?0:1));"
    "r.setTimeout(parseFloat(a[2])*1000,()=>process.exit(1));r.on('error',()=>process.exit(1))"
)
_PERL = (
    'use IO::Socket::INET;my $s=IO::Socket::INET->new(PeerAddr=>"127.0.0.1",PeerPort=>$ARGV[0],'
    'Timeout=>$ARGV[2]) or exit 1;my $h=$ARGV[3]||"localhost";'
    'print $s "GET $ARGV[1] HTTP/1.0\\r\\nHost: $h\\r\\n\\r\\n";'
    "my $l=<$s>;exit((defined $l && $l=~m{^HTTP/\\S+ (\\d\\d\\d)} && $1>=200 && $1<$ARGV[4])?0:1)"
)


def http_probe(port: int, path: str, timeout: float, *, host: str = "", ok_below: int = 400) -> str:
    """A POSIX sh command that succeeds when GET http://127.0.0.1:PORT/PATH (with `Host: host` when given)
    answers with a status in 200..ok_below-1 (redirects are not followed: a 3xx counts as an answer).

    (Debian's busybox 1.35 wget segfaults with -T: the engine's health timeout bounds it instead; when `wget`
    itself is that busybox, the -T attempt crashes and the probe asks once more without it. wget and busybox
    wget fail on any 4xx, so with them only 2xx/3xx pass.)"""
    url = f"http://127.0.0.1:{port}{path}"
    t = f"{max(timeout, 1.0):g}"
    q = shlex.quote
    header = f" --header {q('Host: ' + host)}" if host else ""
    curl_header = f" -H {q('Host: ' + host)}" if host else ""
    bash_host = host or "localhost"
    return (
        "unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY; "
        f"if command -v python3 >/dev/null 2>&1; then python3 -c {q(_PY)} {q(url)} {t} {q(host)} {ok_below}; "
        f"elif command -v node >/dev/null 2>&1; then node -e {q(_NODE)} {q(url)} {t} {q(host)} {ok_below}; "
        f"elif command -v curl >/dev/null 2>&1; then c=$(curl -sS -o /dev/null -w '%{{http_code}}' -m {t}"
        f"{curl_header} {q(url)}) && [ \"$c\" -ge 200 ] && [ \"$c\" -lt {ok_below} ]; "
        # a `wget` that is Debian's busybox 1.35 segfaults (139) on -T before sending anything: ask again without
        f"elif command -v wget >/dev/null 2>&1; then wget -q -O /dev/null -T {t}{header} {q(url)} "
        f"|| {{ [ $? -eq 139 ] && wget -q -O /dev/null{header} {q(url)}; }}; "
        f"elif command -v busybox >/dev/null 2>&1; then busybox wget -q -O /dev/null{header} {q(url)}; "
        f"elif command -v perl >/dev/null 2>&1; then perl -e {q(_PERL)} {port} {q(path)} {t} {q(host)} {ok_below}; "
        f"elif command -v bash >/dev/null 2>&1; then bash -c "
        + q(
            f'exec 3<>/dev/tcp/127.0.0.1/{port} && printf "GET %s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n" "$0" "$1" >&3 && '
            'c=$(head -n1 <&3 | cut -d" " -f2) && [ "$c" -ge 200 ] && [ "$c" -lt "$2" ]'
        )
        + f" {q(path)} {q(bash_host)} {ok_below}; "
        "else exit 1; fi"
    )


@dataclass(frozen=True)
class Health:
    test: str  # a shell command (CMD-SHELL)
    interval: float
    timeout: float
    retries: int
    start_period: float
    wait: float  # how long deploy waits for "healthy" (not part of the container)


ROUTED_DEFAULT_CHECK = HealthcheckSpec(http="/", interval=1.0, timeout=3.0, retries=3)


def health_for(app: AppSpec) -> Health | None:
    """The container's HEALTHCHECK. A routed app (`domains`) is probed with its first domain as the Host header
    (Django's ALLOWED_HOSTS); without a `healthcheck` it must answer `GET /` with a status below 500."""
    hc: HealthcheckSpec | None = app.healthcheck
    ok_below = 400
    if hc is None and app.domains:
        hc, ok_below = ROUTED_DEFAULT_CHECK, 500
    if hc is None:
        return None
    if hc.http is not None:
        assert app.port is not None  # the spec guarantees it
        host = app.domains[0] if app.domains else ""
        test = http_probe(app.port, hc.http, hc.timeout, host=host, ok_below=ok_below)
    else:
        assert hc.cmd is not None
        test = shlex.join(hc.cmd)
    return Health(
        test=test,
        interval=hc.interval,
        timeout=hc.timeout,
        retries=hc.retries,
        start_period=hc.start_period,
        wait=hc.wait,
    )


