"""The playbook's `proxy:` section and what an app's `domains` may be. See provision.spec for the whole model.

One front proxy (Caddy 2) per host and environment routes requests by hostname to the apps that list
`domains`; see provision.plan.proxy for what dockyard does with it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import field_validator, model_validator

from provision.spec_app import PublishSpec, _parse_publish
from provision.spec_base import Frozen, ScalarStr, SpecError

OFFICIAL_IMAGE = "caddy:2"
DEBIAN_IMAGE = "dockyard/caddy:bookworm"  # built on this machine from Debian's caddy package, then shipped

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")


class ProxySpec(Frozen):
    http: PublishSpec = PublishSpec(host_port=80)
    https: PublishSpec = PublishSpec(host_port=443)
    tls: Literal["auto", "internal", "off"] = "auto"
    email: ScalarStr | None = None  # the ACME account's contact (tls: auto)
    image: ScalarStr | None = None  # default: caddy:2, or dockyard/caddy:bookworm on provider local

    @field_validator("http", "https", mode="before")
    @classmethod
    def _ports(cls, v: Any) -> Any:
        return _parse_publish(v)

    @field_validator("tls", mode="before")
    @classmethod
    def _tls(cls, v: Any) -> Any:
        return "off" if v is False else v  # YAML 1.1 reads an unquoted `off` as false

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not _EMAIL.fullmatch(v):
            raise ValueError(f"{v!r} is not an email address")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not _IMAGE.fullmatch(v):
            raise ValueError(f"{v!r} is not an image reference like caddy:2")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ProxySpec:
        problems = []
        if self.tls == "auto" and not self.email:
            problems.append((("email",), "`tls: auto` gets certificates from Let's Encrypt (ACME), which needs "
                                         "a contact `email`; or use `tls: internal` (the proxy's own CA) or "
                                         "`tls: off`"))
        if self.tls != "off" and self.http.overlaps(self.https):
            problems.append((("https",), f"the https port {self.https} is the http port"))
        if problems:
            raise SpecError(problems)
        return self

    def image_for(self, provider: str) -> str:
        return self.image or (DEBIAN_IMAGE if provider == "local" else OFFICIAL_IMAGE)

    @property
    def bindings(self) -> tuple[PublishSpec, ...]:
        return (self.http,) if self.tls == "off" else (self.http, self.https)
