"""Settings: conf/buzzi.toml defaults, then a --config/BUZZI_CONFIG file, then environment variables.

conf/buzzi.toml is the single source of defaults; the dataclasses below only give each key its
type, so a key missing from either side is a bug the loader reports at start.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import socket
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULTS_FILE = PROJECT_ROOT / "conf" / "buzzi.toml"


class ConfigError(Exception):
    """A setting has a value the gateway cannot run with; the message names the key."""


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    public_url: str
    node_id: str
    data_dir: str
    log_format: str
    log_level: str
    shutdown_grace_seconds: float
    trusted_proxies: list[str]
    max_body_bytes: int
    body_timeout_seconds: float
    idle_timeout_seconds: float
    processes: int


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    url: str
    mongodb_database: str
    timeout_seconds: float


@dataclasses.dataclass(frozen=True)
class BrokerSettings:
    url: str
    event_log_size: int
    event_log_ttl_seconds: int
    max_connections: int
    node_ttl_seconds: float


@dataclasses.dataclass(frozen=True)
class SecuritySettings:
    secret_key: str
    admin_password: str
    admin_email: str
    token_ttl_seconds: int
    login_attempts_per_minute: int
    login_free_attempts: int
    login_max_delay_seconds: float
    allow_private_networks: bool
    allowed_private_cidrs: list[str]


@dataclasses.dataclass(frozen=True)
class ChatSettings:
    session_ttl_seconds: int
    resume_window_seconds: int
    max_content_chars: int
    heartbeat_seconds: float
    retry_ms: int
    stream_buffer_events: int
    max_streams_per_session: int
    max_streams_per_address: int
    handover_keywords: list[str]
    handover_message: str
    create_demo: bool


@dataclasses.dataclass(frozen=True)
class LimitSettings:
    company_per_minute: int
    session_per_minute: int
    ip_per_minute: int
    webhook_per_minute: int
    sessions_per_ip_per_minute: int
    sessions_per_company_per_minute: int


@dataclasses.dataclass(frozen=True)
class WebhookSettings:
    max_body_bytes: int
    replay_window_seconds: int
    event_retention: int
    max_attachments: int


@dataclasses.dataclass(frozen=True)
class InboxSettings:
    lease_seconds: float
    poll_seconds: float
    concurrency: int
    max_attempts: int
    retry_base_seconds: float
    processes: int
    busy_lag_ms: float
    busy_concurrency: int


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    timeout_seconds: float
    http_connect_timeout_seconds: float
    failure_message: str


@dataclasses.dataclass(frozen=True)
class ChannelSettings:
    whatsapp_api_base: str
    messenger_api_base: str
    instagram_api_base: str
    telegram_api_base: str
    slack_api_base: str
    teams_openid_url: str
    teams_token_url: str
    send_timeout_seconds: float
    send_max_attempts: int
    send_backoff_base_seconds: float
    send_backoff_max_seconds: float
    send_inline_wait_seconds: float
    media_max_bytes: int
    unreadable_message: str


@dataclasses.dataclass(frozen=True)
class Settings:
    server: ServerSettings
    store: StoreSettings
    broker: BrokerSettings
    security: SecuritySettings
    chat: ChatSettings
    limits: LimitSettings
    webhooks: WebhookSettings
    inbox: InboxSettings
    agents: AgentSettings
    channels: ChannelSettings

    @property
    def node_id(self) -> str:
        return self.server.node_id or f"{socket.gethostname()}:{self.server.port}"

    @property
    def data_dir(self) -> Path:
        path = Path(self.server.data_dir)
        return path if path.is_absolute() else PROJECT_ROOT / path


# The environment variable names that docs/contract.md §1 makes part of the contract.
SPEC_ENV: dict[str, tuple[str, str]] = {
    "BUZZI_HOST": ("server", "host"),
    "BUZZI_PORT": ("server", "port"),
    "BUZZI_PUBLIC_URL": ("server", "public_url"),
    "BUZZI_NODE_ID": ("server", "node_id"),
    "BUZZI_STORE_URL": ("store", "url"),
    "BUZZI_BROKER_URL": ("broker", "url"),
    "BUZZI_SECRET_KEY": ("security", "secret_key"),
    "BUZZI_ADMIN_PASSWORD": ("security", "admin_password"),
    "BUZZI_WHATSAPP_API_BASE": ("channels", "whatsapp_api_base"),
    "BUZZI_MESSENGER_API_BASE": ("channels", "messenger_api_base"),
    "BUZZI_INSTAGRAM_API_BASE": ("channels", "instagram_api_base"),
    "BUZZI_TELEGRAM_API_BASE": ("channels", "telegram_api_base"),
    "BUZZI_SLACK_API_BASE": ("channels", "slack_api_base"),
    "BUZZI_TEAMS_OPENID_URL": ("channels", "teams_openid_url"),
    "BUZZI_TEAMS_TOKEN_URL": ("channels", "teams_token_url"),
}

def _section_types() -> dict[str, dict[str, Any]]:
    hints = typing.get_type_hints(Settings)
    return {name: typing.get_type_hints(cls) for name, cls in hints.items()}


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build validated settings. `overrides` (section -> key -> value) wins over everything; tests use it."""
    env = os.environ if env is None else env
    types_ = _section_types()
    raw = _read_toml(DEFAULTS_FILE)
    for section, keys in types_.items():
        for key in keys:
            if key not in raw.get(section, {}):
                raise ConfigError(f"{section}.{key}: missing from {DEFAULTS_FILE}")

    config_file = config_file or env.get("BUZZI_CONFIG") or None
    if config_file:
        _merge(raw, _read_toml(Path(config_file)), types_, source=str(config_file))

    for name, (section, key) in SPEC_ENV.items():
        if name in env:
            raw[section][key] = _from_env(env[name], types_[section][key], name)
    for section, keys in types_.items():
        for key, typ in keys.items():
            name = f"BUZZI_{section}_{key}".upper()
            if name in env:
                raw[section][key] = _from_env(env[name], typ, name)

    if overrides:
        _merge(raw, overrides, types_, source="overrides")

    sections = {}
    for section, keys in types_.items():
        values = {key: _coerce(raw[section][key], typ, f"{section}.{key}") for key, typ in keys.items()}
        sections[section] = typing.get_type_hints(Settings)[section](**values)
    settings = Settings(**sections)
    _validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _merge(raw: dict, extra: Mapping[str, Any], types_: dict, source: str) -> None:
    for section, keys in extra.items():
        if section not in types_ or not isinstance(keys, Mapping):
            raise ConfigError(f"{source}: unknown section [{section}]")
        for key, value in keys.items():
            if key not in types_[section]:
                raise ConfigError(f"{source}: unknown key {section}.{key}")
            raw[section][key] = value


def _from_env(value: str, typ: Any, name: str) -> Any:
    if typing.get_origin(typ) is list:
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise ConfigError(f"{name}: expected a JSON list or comma-separated values") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    if typ is bool:
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    return value


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return list(value)
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = typ(value) if not isinstance(value, str) else typ(value.strip())
        except (TypeError, ValueError):
            kind = "a whole number" if typ is int else "a number"
            raise ConfigError(f"{key}: expected {kind}, got {value!r}") from None
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        return number
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(typ, types.UnionType):  # pragma: no cover - no optional settings yet
        return value
    raise ConfigError(f"{key}: unsupported setting type {typ!r}")


# Numbers that may be 0 or have their own range; every other number must be greater than 0, so a
# new numeric setting is checked without being listed here.
MAX_PROCESSES = 64
_NUMBER_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "server.port": (lambda v: 1 <= v <= 65535, "a port between 1 and 65535"),
    "server.shutdown_grace_seconds": (lambda v: v >= 0, "0 or more"),
    "server.processes": (lambda v: 1 <= v <= MAX_PROCESSES, f"1 to {MAX_PROCESSES} web processes"),
    "inbox.processes": (lambda v: 0 <= v <= MAX_PROCESSES, f"0 to {MAX_PROCESSES} answer processes"),
    "inbox.busy_lag_ms": (lambda v: v >= 0, "0 (off) or more"),
}
_POSITIVE: tuple[Callable[[float], bool], str] = (lambda v: v > 0, "a number greater than 0")


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _validate(s: Settings) -> None:
    _validate_server(s)
    _validate_urls(s)
    _validate_numbers(s)
    _validate_processes(s)
    if s.security.secret_key:
        _require(len(s.security.secret_key) >= 16, "security.secret_key", "at least 16 characters", "<redacted>")


def _validate_server(s: Settings) -> None:
    _require(_is_http_url(s.server.public_url), "server.public_url", "an http(s):// URL", s.server.public_url)
    _require(s.server.log_format in ("text", "json"), "server.log_format", "text or json", s.server.log_format)
    _require(
        s.server.log_level in ("debug", "info", "warning", "error"),
        "server.log_level", "debug, info, warning or error", s.server.log_level,
    )
    for key, cidrs in (("server.trusted_proxies", s.server.trusted_proxies),
                       ("security.allowed_private_cidrs", s.security.allowed_private_cidrs)):
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ConfigError(f"{key}: {cidr!r} is not a CIDR") from None


def _validate_urls(s: Settings) -> None:
    scheme = urlparse(s.store.url).scheme
    _require(
        scheme in ("sqlite", "mongodb", "mongodb+srv"),
        "store.url", "sqlite:///path or mongodb://host/db", s.store.url,
    )
    if scheme == "sqlite":
        _require(s.store.url.startswith("sqlite:///"), "store.url", "sqlite:///path", s.store.url)
    _require(
        urlparse(s.broker.url).scheme in ("memory", "redis", "rediss"),
        "broker.url", "memory:// or redis://host:port/db", s.broker.url,
    )
    for f in dataclasses.fields(s.channels):
        if f.name.endswith(("_api_base", "_url")):
            value = getattr(s.channels, f.name)
            _require(_is_http_url(value), f"channels.{f.name}", "an http(s):// URL", value)


def _validate_processes(s: Settings) -> None:
    """Several processes share the work only through the broker (stream events, wake-ups, presence,
    rate limits): the in-process memory broker would split the node into islands that never hear
    each other."""
    total = s.server.processes + s.inbox.processes
    if total > 1 and urlparse(s.broker.url).scheme not in ("redis", "rediss"):
        raise ConfigError(
            f"server.processes={s.server.processes} and inbox.processes={s.inbox.processes} run {total} "
            f"processes, which need a Redis broker (broker.url = redis://host:port/db, BUZZI_BROKER_URL); "
            f"got {s.broker.url!r}"
        )


def _validate_numbers(s: Settings) -> None:
    for section in dataclasses.fields(s):
        values = getattr(s, section.name)
        if not dataclasses.is_dataclass(values):
            continue
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                key = f"{section.name}.{f.name}"
                check, expected = _NUMBER_RULES.get(key, _POSITIVE)
                _require(check(value), key, expected, value)


def _is_http_url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)
