"""Durations (`2s`, `1m30s`, `500ms`) and sizes (`256m`, `1g`, `512MiB`), parsed the way docker reads them."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?", re.IGNORECASE)
MAX_DURATION = 365 * 86400.0  # a year: past that a timeout or interval is a typo (docker's limit is ~292 years)
MAX_SIZE = 2**63 - 1  # docker reads sizes as int64


def parse_duration(value: Any) -> float:
    """Seconds from `2s`, `1m`, `1m30s`, `500ms`, or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 2s, 1m or 500ms")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _bounded_duration(value, value)
    if not isinstance(value, str):
        raise ValueError("expected a duration like 2s, 1m or 500ms")
    text = value.strip().lower()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration; expected e.g. 2s, 1m, 1m30s or 500ms")
    return _bounded_duration(total, value)


def _bounded_duration(seconds: float, given: Any) -> float:
    try:
        seconds = float(seconds)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if math.isnan(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"a duration must be between 0s and a year ({int(MAX_DURATION)}s), got {_short(given)}")
    return seconds


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def parse_size(value: Any) -> int:
    """Bytes from `256m`, `1g`, `512k`, `1.5GiB` or a bare number of bytes (docker units, powers of 1024)."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 256m or 1g")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a size must be positive")
        if value > MAX_SIZE:
            raise ValueError(f"a size must be at most {MAX_SIZE} bytes (docker's limit)")
        return value
    if not isinstance(value, str):
        raise ValueError("expected a size like 256m or 1g")
    match = _SIZE_RE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a size; expected e.g. 256m, 1g or 512k")
    amount = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if amount < 1:
        raise ValueError(f"{_short(value)} is too small")
    if not amount < MAX_SIZE:  # also inf, from 400 digits
        raise ValueError(f"a size must be at most {MAX_SIZE} bytes (docker's limit), got {_short(value)}")
    return int(amount)


def parse_port(v: Any) -> Any:
    """A TCP/UDP port number 1-65535 from an int or a digit string (never a bool)."""
    if isinstance(v, bool):
        raise ValueError(f"expected a port number (1-65535), got {str(v).lower()}")
    if not isinstance(v, int | str):
        raise ValueError(f"expected a port number (1-65535), got {_short(v)}")
    if isinstance(v, str):
        digits = v.strip()
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 5):
            raise ValueError(f"expected a port number (1-65535), got {_short(v)}")
        v = int(digits)
    if not 1 <= v <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {v}")
    return v


def parse_cidr(item: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network in CIDR form; host bits set is an error that says which network was meant."""
    if isinstance(item, bool) or not isinstance(item, str):
        raise ValueError(f"expected a CIDR string like 203.0.113.0/24, got {item!r}")
    try:
        return ipaddress.ip_network(item.strip(), strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not a CIDR like 203.0.113.0/24") from None
        single = f"{ipaddress.ip_address(item.strip().split('/')[0])}/{loose.max_prefixlen}"
        raise ValueError(f"{item!r} has host bits set: write the network {loose} or the single address "
                         f"{single}") from None
