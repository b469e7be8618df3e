"""The playbook model's building blocks: the name rules, `SpecError` (problems at key paths relative to the
validated value), the frozen base model and the annotated scalar types (durations, sizes, ports, names).

See provision.spec for the model itself.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from provision.units import parse_duration, parse_port, parse_size

NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
VOLUME_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
TEMPLATE_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
REGION_RE = r"^[a-z]{2}(-[a-z]+)+-\d+$"
INSTANCE_TYPE_RE = r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$"
NAME_RULE = "1-31 characters: a lowercase letter, then lowercase letters, digits or '-'"
LOGIN_NAME_RE = r"[a-z_][a-z0-9_.-]{0,31}\$?"  # what useradd accepts by default
HOST_NAME_RE = r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"  # a DNS name or IPv4 address
JUMP_RE = rf"(?:(?P<user>{LOGIN_NAME_RE})@)?(?P<host>{HOST_NAME_RE})(?::(?P<port>[0-9]{{1,5}}))?"
# A container path goes into `--mount type=volume,source=…,target=PATH`: `,` `=` quotes or spaces would add
# mount options (e.g. `source=/`), so only plain path characters pass.
CONTAINER_PATH_RE = r"(?:/[A-Za-z0-9_.@+~-]+)+"
MIN_MEMORY = 6 * 1024 * 1024  # docker refuses a memory limit below 6m

IMAGE_ALIASES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12", "al2023")
# The login user each alias's image ships with (what EC2 users expect; `ssh.user` overrides it).
DEFAULT_SSH_USER = {"ubuntu-24.04": "ubuntu", "ubuntu-22.04": "ubuntu", "debian-12": "admin",
                    "al2023": "ec2-user"}
WILDCARD_IPS = ("", "0.0.0.0", "::")  # publish addresses meaning "all interfaces"

PathPart = str | int


class SpecError(ValueError):
    """One or more problems found by a validator, each at a key path relative to the validated value."""

    def __init__(self, problems: list[tuple[tuple[PathPart, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(msg for _, msg in problems))

    @classmethod
    def at(cls, path: tuple[PathPart, ...], message: str) -> SpecError:
        return cls([(path, message)])


# The sandbox host's non-root sudo user (provision/sandbox/Dockerfile), as a cloud image has its login user.
LOCAL_SSH_USER = "dockyard"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _duration(v: Any) -> float:
    return parse_duration(v)


def _size(v: Any) -> int:
    return parse_size(v)


def _scalar_str(v: Any) -> Any:
    """YAML gives ints/floats/bools for env values; docker wants strings (as compose does)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return v


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {str(v).lower()}")
    return v


def _name(v: str) -> str:
    if not re.fullmatch(NAME_RE, v):
        raise ValueError(f"{v!r} is not a valid name ({NAME_RULE})")
    return v


def _positive(v: float) -> float:
    if v <= 0:
        raise ValueError("must be longer than 0s")
    return v


Duration = Annotated[float, BeforeValidator(_duration)]  # seconds
PositiveDuration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
Size = Annotated[int, BeforeValidator(_size)]  # bytes
Port = Annotated[int, BeforeValidator(parse_port)]
Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]
ScalarStr = Annotated[str, BeforeValidator(_scalar_str)]
Name = Annotated[str, AfterValidator(_name)]
