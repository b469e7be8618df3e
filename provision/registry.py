"""Registry credentials for image apps: which registry a pull needs (`auth_for`, pure) and the Docker API's
`auth_config` for it (`auth_config`, reads the secret or asks ECR).

What a plan carries is `RegistryAuth`: the server, the user name and the NAME of the password's secret (or
"ask ECR in region R"), never a password. The executor resolves it at pull time and hands it to the engine as
the `X-Registry-Auth` header of `POST /images/create` over the SSH-tunnelled Engine API: the password is never
in an argv, a file on the host, a log line, the recap or `--json`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provision.errors import StepFailed
from provision.imageref import registry_of, same_registry
from provision.spec_registry import RegistrySpec, ecr_region

ECR_USER = "AWS"


@dataclass(frozen=True)
class RegistryAuth:
    server: str
    username: str = ""
    password_secret: str = ""  # the secret's NAME; its value is read by the executor
    ecr_region: str = ""  # set: credentials from boto3's ecr.get_authorization_token in this region

    def op_view(self) -> dict[str, str]:
        """What --check -v / --json show of it."""
        if self.ecr_region:
            return {"server": self.server, "credentials": f"ECR token ({self.ecr_region}, from boto3)"}
        return {"server": self.server, "username": self.username, "password": f"secret {self.password_secret}"}


def auth_for(image: str, app_registry: RegistrySpec | None, top_registry: RegistrySpec | None
             ) -> RegistryAuth | None:
    """The credentials an image app's pull uses: its own `registry:` (the spec checked it is the image's), else
    the playbook's when that is the image's registry, else none (a public image)."""
    spec = app_registry
    if spec is None and top_registry is not None and same_registry(top_registry.server, registry_of(image)):
        spec = top_registry
    if spec is None:
        return None
    if spec.password_secret is None:  # an ECR server without user/password (the spec allows only that)
        return RegistryAuth(spec.server, ecr_region=ecr_region(spec.server) or "")
    return RegistryAuth(spec.server, spec.username or "", spec.password_secret)


def secret_names(auth: RegistryAuth | None) -> tuple[str, ...]:
    return (auth.password_secret,) if auth is not None and auth.password_secret else ()


def auth_config(auth: RegistryAuth | None, secret_value: Callable[[str], str],
                ecr_client: Callable[[str], Any] | None = None) -> tuple[dict[str, str], tuple[str, ...]]:
    """(the Docker API's auth_config, the values to redact from any message). No auth: an EMPTY config, so the
    SDK never sends this machine's own ~/.docker/config.json credentials to the host's engine."""
    if auth is None:
        return {}, ()
    if auth.ecr_region:
        user, password, endpoint = ecr_credentials((ecr_client or _ecr_client)(auth.ecr_region), auth.server)
        return {"username": user, "password": password, "serveraddress": endpoint}, (password,)
    password = secret_value(auth.password_secret)
    return {"username": auth.username, "password": password, "serveraddress": auth.server}, (password,)


def ecr_credentials(client: Any, server: str) -> tuple[str, str, str]:
    """(user, password, endpoint) from `ecr.get_authorization_token` (a 12-hour token; asked per deploy)."""
    account = server.split(".", 1)[0]
    # deferred: boto3/botocore load only when an ECR image is pulled
    from provision.providers.aws_session import aws_errors

    with aws_errors(f"ECR credentials for {server}"):
        data = client.get_authorization_token(registryIds=[account])["authorizationData"]
    if not data:
        raise StepFailed(f"ECR gave no authorization data for {server}")
    try:
        user, _, password = base64.b64decode(data[0]["authorizationToken"]).decode().partition(":")
    except (KeyError, ValueError, UnicodeDecodeError):
        raise StepFailed(f"ECR's authorization token for {server} is not user:password in base64") from None
    if not password:
        raise StepFailed(f"ECR's authorization token for {server} has no password part")
    return user or ECR_USER, password, str(data[0].get("proxyEndpoint") or f"https://{server}")


def _ecr_client(region: str) -> Any:
    # deferred: boto3 loads only when an ECR image is pulled
    import boto3

    from provision.providers.aws_session import BOTO_CONFIG, aws_errors

    with aws_errors("AWS session for ECR"):
        return boto3.client("ecr", region_name=region, config=BOTO_CONFIG)
