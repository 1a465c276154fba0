"""Building blocks for AgentRunner.validate_settings: each raises SettingsError naming the field."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from buzzi.agents.base import SettingsError
from buzzi.signing import STANDARD_PREFIX

_MISSING = object()


def as_mapping(settings: Any) -> Mapping[str, Any]:
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise SettingsError("settings", "must be an object")
    return settings


def string(settings: Mapping[str, Any], key: str, *, required: bool = True, allow_empty: bool = False,
           max_len: int = 100_000) -> str | None:
    value = settings.get(key, _MISSING)
    field = f"settings.{key}"
    if value is _MISSING or value is None:
        if required:
            raise SettingsError(field, "is required")
        return None
    if not isinstance(value, str):
        raise SettingsError(field, "must be a string")
    if not allow_empty and not value.strip():
        raise SettingsError(field, "must not be empty")
    if len(value) > max_len:
        raise SettingsError(field, f"must be at most {max_len} characters")
    return value


def http_url(settings: Mapping[str, Any], key: str) -> str:
    value = string(settings, key)
    assert value is not None
    parsed = urlparse(value.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError(f"settings.{key}", "must be an http(s) URL")
    return value.strip()


def number(settings: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = settings.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(f"settings.{key}", "must be a number")
    if not low <= value <= high:
        raise SettingsError(f"settings.{key}", f"must be between {low} and {high}")
    return float(value)


def documents(settings: Mapping[str, Any], key: str = "documents", *, required: bool) -> list[dict[str, str]]:
    value = settings.get(key)
    field = f"settings.{key}"
    if value is None:
        if required:
            raise SettingsError(field, "is required")
        return []
    if not isinstance(value, list):
        raise SettingsError(field, "must be a list of {title, content}")
    out: list[dict[str, str]] = []
    for i, doc in enumerate(value):
        if not isinstance(doc, Mapping):
            raise SettingsError(f"{field}[{i}]", "must be an object with title and content")
        for part in ("title", "content"):
            if not isinstance(doc.get(part), str) or not doc[part].strip():
                raise SettingsError(f"{field}[{i}].{part}", "must be a non-empty string")
        out.append({"title": doc["title"], "content": doc["content"]})
    return out


def standard_secret(settings: Mapping[str, Any], key: str = "secret") -> str:
    value = string(settings, key)
    assert value is not None
    field = f"settings.{key}"
    if not value.startswith(STANDARD_PREFIX):
        raise SettingsError(field, f"must be a Standard Webhooks secret ({STANDARD_PREFIX}...)")
    try:
        raw = base64.b64decode(value.removeprefix(STANDARD_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(field, "is not valid base64 after the prefix") from None
    if len(raw) < 16:
        raise SettingsError(field, "is too short (at least 16 bytes of key)")
    return value
