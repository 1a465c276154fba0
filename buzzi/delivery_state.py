"""The shape and the rules of a reply's `delivery` (buzzi/models.py Message.delivery), as pure
functions: what its status is, which way a receipt may move it, and how an error is written.
ReplyDelivery (our own sends) and ReceiptBook (the platform's later word) both change delivery
through these, so the two can never disagree on what "forward" means.

Status only moves forward: pending < sent < delivered < read; failed only from pending or sent.
A reply of several parts has the lowest status of its parts, and is failed when any part failed
for good (docs/contract.md §4)."""

from __future__ import annotations

from typing import Any

from buzzi.channels.base import SendError

PENDING, SENT, DELIVERED, READ, FAILED = "pending", "sent", "delivered", "read", "failed"
RANK = {PENDING: 0, SENT: 1, DELIVERED: 2, READ: 3}

TITLE_LIMIT = 300
DETAILS_LIMIT = 1000


def forward(current: str, new: str) -> bool:
    """Whether one platform id may move from `current` to `new`."""
    if current == FAILED or new not in (*RANK, FAILED):
        return False
    if new == FAILED:
        return current in (PENDING, SENT)
    return RANK[new] > RANK.get(current, 0)


def part_ids(delivery: dict[str, Any]) -> list[list[str]]:
    """The platform ids of each part, one list per part (a part may have none: some channels
    return no id). A delivery written before parts were tracked has its ids on the first part."""
    parts = int(delivery.get("parts") or 0)
    if "partIds" in delivery:
        stored = [list(ids) for ids in delivery.get("partIds") or []]
    else:
        stored = [list(delivery.get("ids") or [])]
    return (stored + [[] for _ in range(parts)])[:parts]


def unsent(delivery: dict[str, Any]) -> list[int]:
    """The indexes of the parts still to send: those after sentParts and those a late retryable
    failure gave back (`resend`), in order."""
    parts = int(delivery.get("parts") or 0)
    sent = delivery.get("sentParts")
    if sent is None:  # written before sentParts existed: a "sent" reply had every part accepted
        sent = parts if delivery.get("status") in RANK and delivery.get("status") != PENDING else 0
    return sorted({*(i for i in delivery.get("resend") or [] if i < parts), *range(int(sent), parts)})


def give_back(delivery: dict[str, Any], parts: list[int]) -> dict[str, Any]:
    """Parts that failed late and will be sent again: their old ids no longer count."""
    per_part = part_ids(delivery)
    parts = [index for index in parts if index < len(per_part)]
    dropped = {pid for index in parts for pid in per_part[index]}
    for index in parts:
        per_part[index] = []
    receipts = {k: v for k, v in (delivery.get("receipts") or {}).items() if k not in dropped}
    return {**delivery, "partIds": per_part, "ids": [i for i in delivery.get("ids") or [] if i not in dropped],
            "receipts": receipts, "resend": sorted({*(delivery.get("resend") or []), *parts})}


def scheduled(delivery: dict[str, Any], not_before: float, error: dict[str, Any], *, attempts: int = 0,
              parts: list[int] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(delivery, message fields) of a reply handed to the inbox for a send not before
    `not_before`: the inbox claims a message in state processing with no lease owner once its
    lease_until has passed, and the processor resends the parts not sent (`parts` again too)."""
    delivery = give_back(delivery, parts) if parts else dict(delivery)
    delivery.update(status=PENDING, notBefore=not_before, error=error,
                    attempts=int(delivery.get("attempts") or 0) + attempts,
                    resends=int(delivery.get("resends") or 0) + 1)
    return delivery, {"state": "processing", "lease_owner": None, "lease_until": not_before}


def summarize(delivery: dict[str, Any]) -> str:
    """The reply's status from its parts and their receipts. A failure recorded by our own send
    stays until a new send attempt starts over."""
    if delivery.get("status") == FAILED:
        return FAILED
    receipts = delivery.get("receipts") or {}
    todo = set(unsent(delivery))
    statuses: list[str] = []
    for index, ids in enumerate(part_ids(delivery)):
        if index in todo:
            statuses.append(PENDING)
            continue
        # A part the platform gave no id for can get no receipt: it does not hold the reply back.
        statuses.extend(receipts.get(i, SENT) for i in ids)
    if FAILED in statuses:
        return FAILED
    if not statuses:  # every part went out without ids, or nothing to send; else not started
        return SENT if "parts" in delivery else PENDING
    return min(statuses, key=lambda s: RANK.get(s, 0))


def error_body(code: str | int, title: str, details: Any = None) -> dict[str, Any]:
    """delivery.error as the admin API shows it: a code, a sentence, and details when known."""
    body: dict[str, Any] = {"code": code, "title": str(title)[:TITLE_LIMIT]}
    if details not in (None, ""):
        body["details"] = str(details)[:DETAILS_LIMIT]
    return body


def send_error(exc: SendError) -> dict[str, Any]:
    """A failed send as delivery.error: the platform's code (else the HTTP status), and the
    adapter's message, which already reads as a sentence ("whatsapp send failed: HTTP 400, code
    131047: ..."). A network failure's message names a Python class: it goes to details instead."""
    code: str | int = exc.code if exc.code not in (None, "") else (exc.status or "send_failed")
    text = str(exc)
    if text.startswith("network error"):
        return error_body(code, "The platform could not be reached", text)
    return error_body(code, text, f"HTTP {exc.status}" if exc.status else None)
