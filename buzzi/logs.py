"""Logging setup: text or JSON lines, one per request, with secrets kept out by construction
(handlers log route names, ids and outcomes; never headers or bodies). Every string field is
clipped and escaped (`clip`): a client-chosen value (a method name, a path) cannot make a line
unbounded or forge a second line."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            payload.update(extra)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict) and extra:
            text += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        return text


def configure(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Tornado's own access log is replaced by ours (handlers/base.py).
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


FIELD_MAX_CHARS = 1000


def clip(text: str, limit: int = FIELD_MAX_CHARS) -> str:
    """At most `limit` characters of `text` (then "...(+N)"), with control characters, lone
    surrogates and other unprintable characters escaped as \\xNN / \\uNNNN."""
    extra = len(text) - limit
    if extra > 0:
        text = text[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return f"{text}...(+{extra})" if extra > 0 else text


def log_fields(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    bounded = {k: clip(v) if isinstance(v, str) else v for k, v in fields.items()}
    logger.log(level, msg, extra={"fields": bounded})
