"""What every handler shares: JSON in and out, errors as JSON, client IP, metrics and the access log.
Handlers stay thin: parse the request, call a buzzi service, render the answer. Services raise
buzzi.errors.ServiceError; `BaseHandler.write_error` is the one place that turns it into a response."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import tornado.web

from buzzi.errors import ServiceError, Unavailable
from buzzi.logs import clip, log_fields
from buzzi.metrics import method_label

if TYPE_CHECKING:
    from buzzi.runtime import Gateway

access_log = logging.getLogger("buzzi.access")
log = logging.getLogger("buzzi.handlers")


def parse_json_object(body: bytes, what: str = "body") -> dict[str, Any]:
    try:
        data = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ServiceError(f"Invalid JSON {what}") from None
    if not isinstance(data, dict):
        raise ServiceError(f"JSON {what} must be an object")
    field = _first_non_utf8_field(data)
    if field is not None:
        raise ServiceError(f"{field}: not valid Unicode text (lone surrogate)")
    return data


def _first_non_utf8_field(data: dict[str, Any]) -> str | None:
    """The path (`a.b[0].c`) of the first key or string that UTF-8 cannot encode, or None.

    JSON lets "\\ud800" (and json.loads lets raw CESU-8 bytes) through as a lone UTF-16 surrogate;
    stored, it breaks every later write of it (SSE, channel sends, the dashboard).
    Linear with a small constant (docs/contract.md "Public endpoints under hostile load"): one
    stack frame per open container, holding its key and an iterator, so no path string is built
    for the elements that pass; the path is rebuilt from the stack only for the bad one. Iterative,
    so a deeply nested body cannot exhaust the stack."""
    stack: list[tuple[str | int, Iterator[tuple[Any, Any]]]] = [("", iter(data.items()))]
    while stack:
        for key, value in stack[-1][1]:
            if isinstance(key, str) and not _utf8_ok(key):
                return _path(stack, key)
            if isinstance(value, str):
                if not _utf8_ok(value):
                    return _path(stack, key)
            elif isinstance(value, dict) and value:
                stack.append((key, iter(value.items())))
                break  # depth first, in document order; the parent's iterator resumes after it
            elif isinstance(value, list) and value:
                stack.append((key, enumerate(value)))
                break
        else:
            stack.pop()
    return None


def _path(stack: list[tuple[str | int, Iterator[tuple[Any, Any]]]], last: str | int) -> str:
    keys = [key for key, _ in stack[1:]] + [last]
    # The root is an object, so the path starts with a key: drop that key's leading dot.
    return "".join(f"[{key}]" if isinstance(key, int) else f".{_printable(key)}" for key in keys)[1:]


# A str from json.loads holds a surrogate code point only when it is unpaired (json joins pairs).
_SURROGATE = re.compile("[\\ud800-\\udfff]")


def _utf8_ok(text: str) -> bool:
    return text.isascii() or _SURROGATE.search(text) is None


def _printable(key: str) -> str:
    # The key itself may be the bad text; escape it so the error message can be written.
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


class BaseHandler(tornado.web.RequestHandler):
    @property
    def gateway(self) -> Gateway:
        return self.application.settings["gateway"]

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")

    def json_body(self) -> dict[str, Any]:
        return parse_json_object(self.request.body)

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(data, separators=(",", ":"), default=str))

    @property
    def client_ip(self) -> str:
        """The remote address; X-Forwarded-For is believed only from configured trusted proxies."""
        remote = self.request.remote_ip or ""
        trusted = self.gateway.trusted_proxies
        if not trusted or not _in_networks(remote, trusted):
            return remote
        forwarded = self.request.headers.get("X-Forwarded-For", "")
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not _in_networks(hop, trusted):
                return hop
        return self.request.headers.get("X-Real-IP", remote)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Expected failures are answers, not crashes: no traceback. An outage is worth a warning.
        # Tornado's own version logs the full URI, which can hold a chat session id.
        if isinstance(value, Unavailable):
            log_fields(log, logging.WARNING, "dependency unavailable", error=str(value),
                       path=loggable_path(self.request.path))
            return
        if isinstance(value, tornado.web.HTTPError | ServiceError):
            return
        log.error("uncaught exception in %s %s", clip(self.request.method or "", METHOD_MAX_CHARS),
                  loggable_path(self.request.path), exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one mapping of errors to answers: a ServiceError gives its status, headers and body;
        anything else `{"error": reason}`. Tornado's send_error has already reset the headers to
        set_default_headers(), so headers every answer needs (CORS, no-store) belong there."""
        error = service_error(kwargs)
        if error is None:
            messages = {404: "Not found", 405: "Method not allowed", 500: "Internal server error"}
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps({"error": messages.get(status_code, self._reason)}))
            return
        for name, value in error.headers.items():
            self.set_header(name, value)
        self.write_json(error.body(), error.status)

    def on_finish(self) -> None:
        route = type(self).__name__
        status = self.get_status()
        elapsed = self.request.request_time()
        metrics = self.gateway.metrics
        metrics.labelled(metrics.http_requests, route, method_label(self.request.method), str(status)).inc()
        metrics.labelled(metrics.http_latency, route).observe(elapsed)


def service_error(write_error_kwargs: dict[str, Any]) -> ServiceError | None:
    """The ServiceError that write_error was called for, if that is what it was called for."""
    exc_info = write_error_kwargs.get("exc_info")
    error = exc_info[1] if exc_info else None
    return error if isinstance(error, ServiceError) else None


_SESSION_IN_PATH = re.compile(r"/api/chat/s_[^/]+")
PATH_MAX_CHARS = 200
METHOD_MAX_CHARS = 16


def loggable_path(path: str) -> str:
    """The path with bearer secrets (chat session ids) masked, clipped and escaped; query strings
    are never logged."""
    return clip(_SESSION_IN_PATH.sub("/api/chat/s_***", path), PATH_MAX_CHARS)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's log_function: one line per request, without secrets (see loggable_path)."""
    request = handler.request
    log_access(request.method or "", request.path, handler.get_status(), request.request_time(),
               type(handler).__name__, request.remote_ip or "")


def log_access(method: str, path: str, status: int, seconds: float, route: str, ip: str) -> None:
    """The access line, also written for requests refused before any handler ran (handlers/limits.py).
    The method and path are the client's choice: both are clipped and escaped."""
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if path in ("/healthz", "/readyz", "/metrics") and status < 400:
        level = logging.DEBUG
    if not access_log.isEnabledFor(level):
        return  # nothing is written: skip escaping and formatting (every request pays this)
    log_fields(access_log, level, f"{clip(method, METHOD_MAX_CHARS)} {loggable_path(path)} {status}",
               ms=round(seconds * 1000, 1), route=route, ip=ip)


def _in_networks(ip: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in networks)
