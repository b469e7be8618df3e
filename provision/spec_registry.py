"""The playbook's `registry:` (top level, or per image app): where a private image is pulled from and with
which credentials. The password is never in the playbook: `password_secret` names a secret (environment or
`.env` beside the playbook, as app secrets). An Amazon ECR server needs neither: its credentials come from
boto3 (`ecr.get_authorization_token`).
"""

from __future__ import annotations

import re

from pydantic import field_validator, model_validator

from provision.imageref import DOMAIN_RE
from provision.spec_base import ENV_NAME_RE, Frozen, SpecError

ECR_RE = re.compile(r"(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]+)"
                    r"\.amazonaws\.com(?:\.cn)?")


def ecr_region(server: str) -> str | None:
    """The AWS region of an Amazon ECR registry host (`<account>.dkr.ecr.<region>.amazonaws.com`), else None."""
    m = ECR_RE.fullmatch(server)
    return m.group("region") if m else None


class RegistrySpec(Frozen):
    server: str  # host[:port] as in the image reference, e.g. ghcr.io, registry.example.com:5000
    username: str | None = None
    password_secret: str | None = None  # the NAME of a secret holding the password or token

    @field_validator("server")
    @classmethod
    def _server(cls, v: str) -> str:
        host = v.removeprefix("https://").removesuffix("/")
        if len(host) > 255 or not re.fullmatch(DOMAIN_RE, host, re.ASCII):
            raise ValueError("`server` is the registry's host[:port] as image references name it, "
                             "e.g. ghcr.io or 123456789012.dkr.ecr.eu-west-1.amazonaws.com")
        return host

    @field_validator("username")
    @classmethod
    def _username(cls, v: str | None) -> str | None:
        if v is not None and (not v or len(v) > 255 or any(c.isspace() or not c.isprintable() for c in v)):
            raise ValueError("`username` must be 1-255 printable characters without spaces")
        return v

    @field_validator("password_secret")
    @classmethod
    def _secret_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(ENV_NAME_RE, v):
            raise ValueError("`password_secret` is the NAME of a secret (an environment variable name such as "
                             "REGISTRY_TOKEN), never the password itself")
        return v

    @model_validator(mode="after")
    def _credentials(self) -> RegistrySpec:
        if self.is_ecr and self.username is None and self.password_secret is None:
            return self  # boto3's credentials
        if self.username is None:
            raise SpecError.at(("username",), "a registry needs `username` (and `password_secret`); only an "
                                              "Amazon ECR server may leave both out")
        if self.password_secret is None:
            raise SpecError.at(("password_secret",), "a registry needs `password_secret`: the name of the "
                                                     "secret holding its password or token")
        return self

    @property
    def is_ecr(self) -> bool:
        return ecr_region(self.server) is not None

