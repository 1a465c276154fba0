"""What one WhatsApp `messages[]` item says, as text and attachments the agent can read
(docs/channels.md §2.1). Pure functions of the payload; the adapter (whatsapp.py) decides who
sent it and whether it is answered at all.

Doc pages each rule follows (Meta, developers.facebook.com/documentation/business-messaging/whatsapp/):
- order: webhooks/reference/messages/order (`order.catalog_id`, `order.text`,
  `order.product_items[]` of `product_retailer_id`, `quantity`, `item_price`, `currency`);
- Flows: flows/guides/receiveflowresponse (`interactive.type == "nfm_reply"`,
  `nfm_reply.response_json` is a JSON *string* of the submitted fields plus `flow_token`);
- media `sha256`: webhooks/reference/messages/image and the media API (base64 in the webhook
  reference, hex on other pages: both are compared as bytes, docs/channels.md §2.4).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from typing import Any

from buzzi.channels.base import Attachment
from buzzi.channels.payload import as_dict, as_float, as_str, as_text, dicts_in, json_or_none, list_of_dicts

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
# (text, attachments, meta) of one message body.
Content = tuple[str, list[Attachment], dict[str, Any]]

# A multi-product message offers at most 30 products, so a real order has no more items.
MAX_ORDER_ITEMS = 30
# Bounds on what a Flow submission adds to the conversation: the agent reads it, the store keeps it.
MAX_FLOW_FIELDS = 30
MAX_FIELD_CHARS = 300
MAX_DESCRIBED_CHARS = 2000
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def content(kind: str, item: dict[str, Any]) -> Content | None:
    """The message's content, or None when the agent cannot read this kind (an `unsupported`
    message, an unknown type): the adapter then makes it a kind "unsupported" message."""
    body = as_dict(item.get(kind))
    if kind == "text":
        return as_text(body.get("body")) or "", [], {}
    if kind in MEDIA_TYPES:
        return as_text(body.get("caption")) or "", [media(kind, body)], {}
    if kind == "location":
        return location(body)
    if kind == "interactive":
        return interactive(body)
    if kind == "button":
        return as_text(body.get("text")) or "", [], {"payload": as_str(body.get("payload"))}
    if kind == "contacts":
        people = [as_dict(c.get("name")).get("formatted_name") for c in list_of_dicts(item, "contacts", "message")]
        return ", ".join(p for p in people if isinstance(p, str)), [], {}
    if kind == "order":
        return order(body)
    return None


def media(kind: str, body: dict[str, Any]) -> Attachment:
    if kind == "audio" and body.get("voice") is True:
        kind = "voice"
    extra = {"sha256": body["sha256"]} if isinstance(body.get("sha256"), str) else {}
    return Attachment(kind=kind, mime_type=as_str(body.get("mime_type")), name=as_str(body.get("filename")),
                      media_id=as_str(body.get("id")), extra=extra)


def location(body: dict[str, Any]) -> Content:
    lat, lon = as_float(body.get("latitude")), as_float(body.get("longitude"))
    label = ", ".join(str(body[k]) for k in ("name", "address") if isinstance(body.get(k), str) and body[k])
    where = f"({lat}, {lon})" if lat is not None and lon is not None else ""
    extra = {k: body[k] for k in ("latitude", "longitude", "name", "address", "url") if k in body}
    return " ".join(p for p in (label, where) if p), [Attachment(kind="location", extra=extra)], {}


def interactive(body: dict[str, Any]) -> Content | None:
    reply_type = as_str(body.get("type")) or ""
    reply = as_dict(body.get(reply_type))
    if reply_type == "nfm_reply":
        return flow_reply(reply)
    if reply_type not in ("button_reply", "list_reply"):
        return None
    title = as_str(reply.get("title")) or as_str(reply.get("body")) or ""
    return title, [], {"interactive_type": reply_type, "payload": as_str(reply.get("id"))}


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS - 1] + "…"


def flow_reply(reply: dict[str, Any]) -> Content:
    """A completed Flow: the submitted fields as "name: value" lines, bounded. `flow_token` is our
    own correlation value, not something the customer typed: kept in meta, not in the text."""
    fields = as_dict(json_or_none(as_text(reply.get("response_json")) or ""))
    lines = [f"{_clip(key)}: {_clip(value)}" for key, value in list(fields.items())[:MAX_FLOW_FIELDS]
             if key != "flow_token" and value not in (None, "", [], {})]
    text = "\n".join(["Form response:", *lines]) if lines else (as_text(reply.get("body")) or "")
    meta = {"interactive_type": "nfm_reply", "flow_name": as_str(reply.get("name")),
            "flow_token": _clip(fields["flow_token"]) if "flow_token" in fields else None}
    return text[:MAX_DESCRIBED_CHARS], [], {k: v for k, v in meta.items() if v is not None}


def order(body: dict[str, Any]) -> Content:
    """A cart sent from the catalog, described so the agent can confirm or answer questions."""
    items = []
    for product in dicts_in(body.get("product_items"))[:MAX_ORDER_ITEMS]:
        items.append({"product_retailer_id": _clip(as_str(product.get("product_retailer_id")) or "?"),
                      "quantity": as_float(product.get("quantity")), "item_price": as_float(product.get("item_price")),
                      "currency": _clip(as_str(product.get("currency")) or "")})
    catalog = _clip(as_str(body.get("catalog_id")) or "?")
    lines = [f"Order from catalog {catalog}:"]
    for item in items:
        price = "" if item["item_price"] is None else f" @ {_number(item['item_price'])} {item['currency']}".rstrip()
        lines.append(f"- {item['product_retailer_id']} x {_number(item['quantity'])}{price}")
    note = as_text(body.get("text"))
    if note:
        lines.append(f"Note: {_clip(note)}")
    return "\n".join(lines)[:MAX_DESCRIBED_CHARS], [], {"order": {"catalog_id": catalog, "items": items}}


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if value.is_integer() else str(value)


def sha256_matches(data: bytes, expected: str) -> bool:
    """Whether `data` has the announced SHA-256, given as hex or as base64 (standard or URL-safe,
    padded or not); a value that is neither never matches."""
    digest = hashlib.sha256(data).digest()
    value = expected.strip()
    if _HEX_SHA256.match(value):
        return hmac.compare_digest(digest, bytes.fromhex(value))
    try:
        padded = value + "=" * (-len(value) % 4)
        decoded = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(digest, decoded)
