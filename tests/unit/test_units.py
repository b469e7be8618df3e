"""Durations, sizes, ports and CIDRs as playbooks write them."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from provision.units import parse_cidr, parse_duration, parse_port, parse_size

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "seconds"), [
    ("2s", 2.0), ("1m", 60.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("1.5s", 1.5),
    ("2h15m10s", 8110.0), (" 10S ", 10.0), (3, 3.0), (0.25, 0.25), (0, 0.0),
])
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "5 minutes", "s", "1d", "2s3", "-1s", "1m 30s", True, None, [1]])
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_negative_number_duration() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(-1)


@pytest.mark.parametrize(("text", "size"), [
    ("256m", 256 * 1024**2), ("1g", 1024**3), ("512k", 512 * 1024), ("1.5GiB", int(1.5 * 1024**3)),
    ("256MB", 256 * 1024**2), ("100b", 100), ("4096", 4096), (4096, 4096), ("1T", 1024**4), ("0.5k", 512),
])
def test_sizes(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "message"), [
    ("256 megabytes", "is not a size"), ("-5m", "is not a size"), ("m", "is not a size"),
    ("1p", "is not a size"),
    (0, "must be positive"), (-1, "must be positive"), ("0", "too small"), ("0.1", "too small"),
    (1.5, "expected a size"), (True, "expected a size"), (None, "expected a size"),
])
def test_bad_sizes(text: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(text)


@pytest.mark.parametrize(("value", "port"), [(1, 1), (65535, 65535), ("8080", 8080)])
def test_ports(value: Any, port: int) -> None:
    assert parse_port(value) == port


@pytest.mark.parametrize(("value", "message"), [
    (0, "between 1 and 65535"), (65536, "between 1 and 65535"), ("-1", "expected a port number"),
    ("http", "expected a port number"), (True, "got true"), (80.5, "expected a port number"),
])
def test_bad_ports(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_port(value)


@pytest.mark.parametrize(("text", "net"), [
    ("203.0.113.0/24", "203.0.113.0/24"), ("203.0.113.7", "203.0.113.7/32"), ("0.0.0.0/0", "0.0.0.0/0"),
    ("2001:db8::/32", "2001:db8::/32"), (" 10.0.0.0/8 ", "10.0.0.0/8"),
])
def test_cidrs(text: str, net: str) -> None:
    assert parse_cidr(text) == ipaddress.ip_network(net)


def test_cidr_with_host_bits_names_both_readings() -> None:
    with pytest.raises(ValueError) as info:
        parse_cidr("192.168.1.10/24")
    assert "host bits set" in str(info.value)
    assert "192.168.1.0/24" in str(info.value) and "192.168.1.10/32" in str(info.value)
    with pytest.raises(ValueError, match="2001:db8::/32 or the single address 2001:db8::1/128"):
        parse_cidr("2001:db8::1/32")


@pytest.mark.parametrize("text", ["10.0.0.300/32", "10.0.0.0/33", "nope", "", 1234, None])
def test_bad_cidrs(text: Any) -> None:
    with pytest.raises(ValueError, match="CIDR"):
        parse_cidr(text)
