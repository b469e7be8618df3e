"""provision.sshconn.parse_jump: the one parser of `ssh.jump` (the bastion)."""

from __future__ import annotations

import pytest

from provision.sshconn import parse_jump

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("jump", "parsed"), [
    ("bastion.example.com", (None, "bastion.example.com", 22)),
    ("admin@bastion.example.com:2222", ("admin", "bastion.example.com", 2222)),
    ("192.0.2.1:22", (None, "192.0.2.1", 22)),
    ("ops@[2001:db8::1]:2200", ("ops", "2001:db8::1", 2200)),
    ("[2001:db8::1]", (None, "2001:db8::1", 22)),
    ("2001:db8::1", (None, "2001:db8::1", 22)),
])
def test_parse_jump(jump: str, parsed: tuple[str | None, str, int]) -> None:
    assert parse_jump(jump) == parsed
