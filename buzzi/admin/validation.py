"""Field checks for admin request bodies and queries. Every failure is an Invalid naming the field
in the contract's camelCase (e.g. "subscription.status", "ipAllowlist[2]")."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from buzzi import clock
from buzzi.errors import Invalid

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")
MIN_PASSWORD, MAX_PASSWORD = 8, 1024


def body_object(data: Any, field: str = "body") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Invalid(field, "must be an object")
    return data


def only(data: dict[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
    """Reject unknown keys: a typo must not be silently ignored."""
    allowed = set(allowed)
    for key in data:
        if key not in allowed:
            raise Invalid(f"{prefix}{key}", f"unknown field (expected one of {', '.join(sorted(allowed))})")


def require(data: dict[str, Any], key: str, prefix: str = "") -> Any:
    if data.get(key) is None:
        raise Invalid(f"{prefix}{key}", "is required")
    return data[key]


def string(value: Any, field: str, *, max_len: int = 200, min_len: int = 1) -> str:
    if not isinstance(value, str):
        raise Invalid(field, "must be a string")
    value = value.strip()
    if len(value) < min_len:
        raise Invalid(field, "must not be empty" if min_len == 1 else f"must be at least {min_len} characters")
    if len(value) > max_len:
        raise Invalid(field, f"must be at most {max_len} characters")
    return value


def choice(value: Any, field: str, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if not isinstance(value, str) or value not in options:
        raise Invalid(field, f"must be one of {', '.join(options)}")
    return value


def email(value: Any, field: str = "email") -> str:
    text = string(value, field, max_len=254).lower()
    if not EMAIL_RE.match(text):
        raise Invalid(field, "must be an e-mail address")
    return text


def password(value: Any, field: str = "password") -> str:
    # Not stripped: spaces are legitimate password characters.
    if not isinstance(value, str):
        raise Invalid(field, "must be a string")
    if not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise Invalid(field, f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(field, "must be true or false")
    return value


def optional_time(value: Any, field: str) -> float | None:
    """An ISO-8601 time, or null."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(field, "must be an ISO-8601 time or null")
    try:
        return clock.parse_iso(value)
    except ValueError:
        raise Invalid(field, "must be an ISO-8601 time or null") from None


def string_list(value: Any, field: str, *, max_items: int = 100) -> list[str]:
    if not isinstance(value, list):
        raise Invalid(field, "must be a list of strings")
    if len(value) > max_items:
        raise Invalid(field, f"must have at most {max_items} entries")
    return [string(item, f"{field}[{i}]", max_len=500) for i, item in enumerate(value)]


def cidrs(value: Any, field: str = "ipAllowlist") -> list[str]:
    """IPv4/IPv6 networks (a bare address is a /32 or /128), normalised."""
    out: list[str] = []
    for i, item in enumerate(string_list(value, field, max_items=500)):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise Invalid(f"{field}[{i}]", f"{item!r} is not an IPv4/IPv6 CIDR") from None
    return out


def origins(value: Any, field: str = "allowedOrigins") -> list[str]:
    """Browser origins ("https://shop.example", "http://localhost:3000") or "*"."""
    out: list[str] = []
    for i, item in enumerate(string_list(value, field)):
        if item == "*":
            out.append(item)
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
                or parts.query or parts.fragment:
            raise Invalid(f"{field}[{i}]", "must be an origin like https://example.com or *")
        out.append(f"{parts.scheme}://{parts.netloc}".lower())
    return out


def limit(value: str | None, *, default: int = 50, maximum: int = 500, field: str = "limit") -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise Invalid(field, f"must be an integer from 1 to {maximum}") from None
    if not 1 <= number <= maximum:
        raise Invalid(field, f"must be an integer from 1 to {maximum}")
    return number
