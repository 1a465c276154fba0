"""Redaction of the request excerpts the delivery log keeps and the dashboard shows.

Headers by an allow-list: only a fixed set of harmless headers keeps its value, every other value
is masked, so a credential header nobody thought of (X-Api-Key, Proxy-Authorization, X-Auth-Token,
a vendor's own) never reaches the log. Bodies are redacted after parsing: JSON and form bodies are
decoded (so "p\\u0061ssword" or "p%61ssword" is seen as "password"), every value under a key that
names a credential is masked at any depth, and the result is serialized again. A body that does not
parse (truncated, another format, too large to parse on the request path) gets the same key rule as
a text pattern plus a mask over obvious token shapes (bearer values, JWTs, Slack/OpenAI/GitHub/Meta
and Telegram bot tokens).
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

MASK = "[redacted]"
BODY_EXCERPT = 4096
# Bodies up to this size are parsed for redaction; a larger one (at most webhooks.max_body_bytes)
# is cut to its excerpt first, which keeps the delivery log's cost per request small and bounded.
PARSE_LIMIT = 256 * 1024
HEADER_NAME_MAX = 100
HEADER_VALUE_MAX = 300
HEADERS_MAX = 60

# Headers shown as sent: framing, client and proxy facts, and the non-secret halves of the
# platforms' signature schemes (timestamps and ids help to debug a replay refusal).
SHOWN_HEADERS = frozenset({
    "accept", "accept-encoding", "accept-language", "connection", "content-encoding", "content-length",
    "content-type", "host", "user-agent", "via", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-real-ip", "x-request-id", "traceparent", "tracestate", "webhook-id", "webhook-timestamp",
    "x-slack-request-timestamp", "x-slack-retry-num", "x-slack-retry-reason", "x-ms-conversation-id",
})

# Keys are split into words so "secretary" or "tokens" stay readable; adjacent words are also
# joined ("api" "key" -> "apikey", "private" "key" -> "privatekey").
_KEY_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_SECRET_WORDS = frozenset({"token", "secret", "password", "passwd", "pwd", "apikey", "credential", "credentials",
                           "passphrase", "privatekey", "authorization", "signature", "cookie"})
# Every secret word contains one of these; with no escapes either, a body has nothing to mask.
# (Substring tests on the lower-cased text: several times faster than one case-insensitive regex.)
_SECRET_STEMS = ("token", "secret", "pass", "pwd", "key", "credential", "authori", "signature", "cookie")
_ESCAPES = ("\\u", "%")

# Fallback for text that does not parse: "key": "value" pairs of JSON, and key=value pairs.
_JSON_STRING_FIELD = re.compile(r'("((?:[^"\\]|\\.)*)"\s*:\s*)"(?:[^"\\]|\\.)*"')
_FORM_FIELD = re.compile(r"(^|[&;\s?])([^=&;\s]{1,100})=([^&;\s]*)")
# Obvious credential shapes wherever they appear, parsed or not.
_TOKEN_SHAPES = re.compile(
    r"(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}|(?i:\bbasic\s+)[A-Za-z0-9+/]{16,}={0,2}"
    r"|\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"  # a JWT
    r"|\bxox[abposr]-[A-Za-z0-9-]{8,}"  # Slack
    r"|\bsk-[A-Za-z0-9_-]{16,}"  # OpenAI and alike
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
    r"|\bEAA[A-Za-z0-9]{30,}"  # Meta access tokens
    r"|\b\d{6,12}:[A-Za-z0-9_-]{30,}"  # Telegram bot tokens
)
# Every match of _TOKEN_SHAPES holds one of these (lower-cased), or a digit followed by a colon and
# 30 token characters (Telegram): when none is there, the costly pattern need not run.
_TOKEN_STEMS = ("bearer", "basic", "eyj", "xox", "sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "eaa")
# The same test as r"\d:[A-Za-z0-9_-]{30}", led by the literal ":" so that re skips to each colon
# instead of trying the pattern at every position (about 7x faster on a webhook body).
_TELEGRAM_STEM = re.compile(r":(?<=\d:)[A-Za-z0-9_-]{30}")
# The token patterns' (?i:...) parts also match these letters (re's Unicode case-insensitive rules),
# which lower() does not turn into the ASCII letter.
_FOLDS_TO_ASCII = str.maketrans({"\u017f": "s", "\u0130": "i", "\u0131": "i", "\u212a": "k"})
_SURROGATE = re.compile("[\ud800-\udfff]")


# Every key of every logged body goes through this; real payloads use a few hundred names.
@functools.lru_cache(maxsize=4096)
def names_a_secret(key: str) -> bool:
    words = [w.lower() for w in _KEY_WORDS.findall(key)]
    joined = {a + b for a, b in itertools.pairwise(words)}
    return not _SECRET_WORDS.isdisjoint(words) or not _SECRET_WORDS.isdisjoint(joined)


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Allow-listed headers as sent (cut to a length), every other header's value masked."""
    shown: dict[str, str] = {}
    for name, value in itertools.islice(headers.items(), HEADERS_MAX):
        key = name[:HEADER_NAME_MAX]
        shown[key] = value[:HEADER_VALUE_MAX] if name.lower() in SHOWN_HEADERS else MASK
    return shown


def redact_body(body: bytes) -> str:
    """A readable excerpt of `body` with every credential masked."""
    quick = clean_excerpt(body)
    if quick is not None:
        return quick  # the common case: nothing in it could be a credential
    excerpt = body[:BODY_EXCERPT].decode("utf-8", errors="replace")
    parsed = _redact_parsed(body, excerpt) if len(body) <= PARSE_LIMIT else None
    return _TOKEN_SHAPES.sub(MASK, _redact_text(excerpt) if parsed is None else parsed)[:BODY_EXCERPT]


def clean_excerpt(body: bytes) -> str | None:
    """redact_body(body) when a few substring scans prove that it masks nothing (no key could name
    a credential, no escape could hide one, no token shape is there), without parsing; else None.
    The scans are supersets of what the masks look for, so None only means "look closer"."""
    excerpt = body[:BODY_EXCERPT].decode("utf-8", errors="replace")
    lowered = excerpt.lower()
    if any(stem in lowered for stem in _SECRET_STEMS) or any(e in excerpt for e in _ESCAPES):
        return None
    folded = lowered if excerpt.isascii() else excerpt.translate(_FOLDS_TO_ASCII).lower()
    if any(stem in folded for stem in _TOKEN_STEMS) or _TELEGRAM_STEM.search(excerpt):
        return _TOKEN_SHAPES.sub(MASK, excerpt)
    return excerpt


def _redact_parsed(body: bytes, excerpt: str) -> str | None:
    """The body parsed, masked and serialized again (`excerpt`, byte for byte, when nothing was
    masked); None when it is neither JSON nor a form."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        if text.lstrip()[:1] in ("{", "["):
            tree, changed = _mask_tree(json.loads(text))
            return _clean(json.dumps(tree, ensure_ascii=False)) if changed else excerpt
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except (ValueError, RecursionError):  # not JSON / not a form; nesting too deep to walk
        return None
    masked = [(k, MASK if names_a_secret(k) else _mask_embedded_json(v)) for k, v in pairs]
    if masked == pairs:
        return excerpt
    return _clean(urlencode(masked))


def _mask_tree(node: Any) -> tuple[Any, bool]:
    """(node with every value under a credential key masked, whether anything was)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        changed = False
        for key, value in node.items():
            if names_a_secret(key) and value is not None and not isinstance(value, bool):
                out[key], changed = MASK, True
            else:
                out[key], inner = _mask_tree(value)
                changed = changed or inner
        return out, changed
    if isinstance(node, list):
        items = [_mask_tree(item) for item in node]
        return [item for item, _ in items], any(inner for _, inner in items)
    return node, False


def _mask_embedded_json(value: str) -> str:
    """A form field that holds JSON (Slack's payload=...): masked inside."""
    if value.lstrip()[:1] not in ("{", "["):
        return value
    try:
        tree, changed = _mask_tree(json.loads(value))
    except (ValueError, RecursionError):
        return value
    return json.dumps(tree, ensure_ascii=False) if changed else value


def _clean(text: str) -> str:
    # json.loads turns "\ud800" into a lone surrogate; it cannot be stored as UTF-8.
    return _SURROGATE.sub("\ufffd", text)


def _redact_text(excerpt: str) -> str:
    return _FORM_FIELD.sub(_mask_form_field, _JSON_STRING_FIELD.sub(_mask_json_field, excerpt))


def _mask_json_field(match: re.Match[str]) -> str:
    try:
        key = json.loads(f'"{match.group(2)}"')  # "p\u0061ssword" is "password"
    except ValueError:
        key = match.group(2)
    return f'{match.group(1)}"{MASK}"' if names_a_secret(key) else match.group(0)


def _mask_form_field(match: re.Match[str]) -> str:
    key = parse_qsl(f"{match.group(2)}=", keep_blank_values=True)
    name = key[0][0] if key else match.group(2)
    return f"{match.group(1)}{match.group(2)}={MASK}" if names_a_secret(name) else match.group(0)
