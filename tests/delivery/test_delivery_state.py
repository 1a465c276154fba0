"""The delivery rules on their own: which way a status may move, a reply's status from its parts,
and replies stored before parts were tracked."""

from __future__ import annotations

import pytest

from buzzi.channels.base import SendError
from buzzi.delivery_state import forward, send_error, summarize, unsent


@pytest.mark.parametrize(("current", "new", "allowed"), [
    ("sent", "delivered", True), ("delivered", "read", True), ("sent", "read", True),
    ("read", "delivered", False), ("delivered", "sent", False), ("read", "read", False),
    ("pending", "failed", True), ("sent", "failed", True), ("delivered", "failed", False),
    ("failed", "read", False), ("sent", "played", False),
])
def test_status_moves_only_forward(current: str, new: str, allowed: bool):
    assert forward(current, new) is allowed


def test_a_reply_has_the_lowest_status_of_its_parts():
    delivery = {"status": "sent", "parts": 3, "sentParts": 3, "partIds": [["a"], ["b", "c"], []],
                "receipts": {"a": "read", "b": "read", "c": "delivered"}}
    assert summarize(delivery) == "delivered"  # part 3 returned no id: it counts as sent, not lower
    assert summarize({**delivery, "partIds": [["a"], ["b", "c"], ["d"]], "receipts": {"a": "read"}}) == "sent"
    assert summarize({**delivery, "resend": [2]}) == "pending"
    assert summarize({**delivery, "sentParts": 1}) == "pending"
    assert summarize({**delivery, "receipts": {**delivery["receipts"], "c": "failed"}}) == "failed"


def test_replies_stored_before_parts_were_tracked_still_take_receipts():
    legacy = {"status": "sent", "attempts": 1, "ids": ["x1", "x2"], "parts": 2}
    assert unsent(legacy) == []
    assert summarize({**legacy, "receipts": {"x1": "read", "x2": "read"}}) == "read"
    assert summarize({**legacy, "receipts": {"x1": "read"}}) == "sent"
    assert unsent({"status": "pending", "parts": 2}) == [0, 1]


def test_a_send_error_becomes_a_code_and_a_sentence():
    graph = send_error(SendError("whatsapp send failed: HTTP 400, code 131047: Re-engagement message",
                                 retryable=False, status=400, code=131047))
    assert graph == {"code": 131047, "title": "whatsapp send failed: HTTP 400, code 131047: Re-engagement message",
                     "details": "HTTP 400"}
    network = send_error(SendError("network error: ClientConnectorError: refused", retryable=True))
    assert network["code"] == "send_failed"
    assert network["title"] == "The platform could not be reached"
    assert "ClientConnectorError" in network["details"]
    assert send_error(SendError("telegram: HTTP 502", retryable=True, status=502))["code"] == 502
