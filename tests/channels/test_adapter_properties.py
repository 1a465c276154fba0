"""Property-based tests of the seven channel adapters through the real intake of a running node.

Each example is a request the channel's platform would sign: arbitrary bytes, or one of our
doc-shaped inbound messages (tests/webhooks/kit.py) mutated (types swapped, strings made huge,
unicode or lone surrogates, keys removed, nesting deepened), then signed with the channel's real
scheme (HMAC for Meta, Slack and Standard Webhooks, the secret token for Telegram, a Bot Framework
JWT from the fake's keys for Teams) and posted over HTTP. Whatever arrives:

- the answer is never a 5xx and the node keeps answering (no handler crash, no crash loop);
- nothing is stored that the platform did not send: no message for bytes that are no JSON object
  or for a payload whose message part was removed; a stored message's id comes from the payload
  and its text from the payload's strings; a payload where only the text changed is stored with
  exactly that text (lone surrogates replaced by U+FFFD, docs/channels.md).

Bounded so the whole module stays well under a minute: 60 derandomized examples per adapter, no
example database, no deadline (the first Teams example fetches the signing keys); the environment
variable BUZZI_PROPERTY_EXAMPLES asks for a longer run with a random seed (nightly).
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buzzi.models import Conversation, Message
from tests.webhooks.kit import BODIES, CHANNELS, META, ChannelLab, channel_lab

# A longer, random run for nightly use: BUZZI_PROPERTY_EXAMPLES=2000 (a fresh seed each time).
LONG_RUN = os.environ.get("BUZZI_PROPERTY_EXAMPLES")
PROPERTY_SETTINGS = settings(
    max_examples=int(LONG_RUN or 60), deadline=None, derandomize=not LONG_RUN, database=None, print_blob=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Where each channel's sample keeps the customer's text, and the part whose removal leaves a
# payload with no message in it (docs/channels.md: the shapes of tests/webhooks/kit.py).
TEXT_PATHS: dict[str, tuple[Any, ...]] = {
    "whatsapp": ("entry", 0, "changes", 0, "value", "messages", 0, "text", "body"),
    "messenger": ("entry", 0, "messaging", 0, "message", "text"),
    "instagram": ("entry", 0, "messaging", 0, "message", "text"),
    "telegram": ("message", "text"),
    "slack": ("event", "text"),
    "teams": ("text",),
    "custom": ("data", "text"),
}
MESSAGE_PATHS: dict[str, tuple[Any, ...]] = {
    "whatsapp": ("entry", 0, "changes", 0, "value", "messages"),
    "messenger": ("entry", 0, "messaging", 0, "message"),
    "instagram": ("entry", 0, "messaging", 0, "message"),
    "telegram": ("message",),
    "slack": ("event",),
    "teams": ("type",),
    "custom": ("data",),
}
SLACK_MENTION = "<@U0LAN0Z89> "
DEEP = "\x00deep-{}\x00"  # placeholder a serialized body swaps for a deeply nested array
BIG_INT = "\x00big-int\x00"  # ... and for a 5000-digit number, past Python's int-parsing limit

# ---------------------------------------------------------------------------- strategies

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    st.lists(st.one_of(surrogates, st.characters()), min_size=1, max_size=20).map("".join),
    st.builds(lambda ch, n: ch * n, st.sampled_from(["x", "é", "😀", " ", "\n", "\x00"]),
              st.sampled_from([1000, 5000, 70_000])),
)
plain_text = hostile_text.map(lambda text: re.sub("[<>&]", "", text))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), hostile_text,
    st.just(BIG_INT),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


@dataclass
class Case:
    body: bytes
    text: str | None = None  # only the text was changed, to this
    no_message: bool = False  # the message part was removed


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def lookup(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    lookup(doc, path[:-1])[path[-1]] = value
    return doc


def remove(doc: Any, path: tuple[Any, ...]) -> Any:
    if path:
        del lookup(doc, path[:-1])[path[-1]]
    return doc


def mutate(data: st.DataObject, doc: Any, deep: dict[str, int]) -> Any:
    """One random change somewhere in `doc` (in place where it can)."""
    path = data.draw(st.sampled_from(paths(doc)), label="path")
    how = data.draw(st.sampled_from(["swap", "swap", "swap", "remove", "remove", "text", "text", "wrap", "deep"]),
                    label="how")
    value = lookup(doc, path)
    if how == "remove" and path:
        return remove(doc, path)
    if how == "text" or (how == "remove" and isinstance(value, str)):
        return replace(doc, path, data.draw(hostile_text, label="text"))
    if how == "wrap":
        return replace(doc, path, data.draw(st.sampled_from([[value], {"x": value}, [[[value]]]])))
    if how == "deep":
        marker = DEEP.format(len(deep))
        deep[marker] = data.draw(st.sampled_from([20, 95, 95, 150, 200_000]), label="depth")
        return replace(doc, path, marker)
    return replace(doc, path, data.draw(json_values, label="value"))


def serialize(data: st.DataObject, doc: Any, deep: dict[str, int], channel: str) -> bytes:
    # Meta escapes non-ASCII (docs/channels.md §1.2); the others send UTF-8, and a hostile sender
    # may send a lone surrogate encoded as bytes, which is no UTF-8 at all.
    ascii_only = channel in META or data.draw(st.booleans(), label="ascii")
    text = json.dumps(doc, ensure_ascii=ascii_only)
    for marker, depth in deep.items():
        text = text.replace(json.dumps(marker, ensure_ascii=ascii_only), "[" * depth + "1" + "]" * depth)
    text = text.replace(json.dumps(BIG_INT, ensure_ascii=ascii_only), "9" * 5000)
    return text.encode("utf-8", "surrogatepass")


def sent_text(body: bytes, channel: str) -> str | None:
    """The text as the payload says it (JSON escapes decoded: "\\ud800\\udc00" is one character);
    None when the body cannot be read at all."""
    try:
        text = lookup(json.loads(body), TEXT_PATHS[channel])
    except ValueError:
        return None
    return text.removeprefix(SLACK_MENTION) if channel == "slack" else text


def draw_case(data: st.DataObject, lab: ChannelLab, channel: str) -> Case:
    kind = data.draw(st.sampled_from(["bytes", "text", "no_message", "mutated", "mutated"]), label="kind")
    if kind == "bytes":
        return Case(data.draw(st.binary(max_size=2000), label="bytes"))
    ident = str(lab.next_id())
    body, _ = BODIES[channel](lab, "hello", ident)
    doc = json.loads(body)
    deep: dict[str, int] = {}
    if kind == "text":
        # Slack and Teams markup (<@mention>, <link|label>, &amp;) is read by rules of its own
        # (tests/channels/test_slack.py, test_teams.py): here the text carries none.
        text = data.draw(plain_text if channel in ("slack", "teams") else hostile_text, label="text")
        prefix = SLACK_MENTION if channel == "slack" else ""
        replace(doc, TEXT_PATHS[channel], prefix + text)
        body = serialize(data, doc, deep, channel)
        return Case(body, text=sent_text(body, channel))
    if kind == "no_message":
        remove(doc, MESSAGE_PATHS[channel])
        return Case(serialize(data, doc, deep, channel), no_message=True)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        doc = mutate(data, doc, deep)
    return Case(serialize(data, doc, deep, channel))


# ---------------------------------------------------------------------------- the oracle

def strings_and_scalars(body: bytes) -> tuple[list[str], str] | None:
    """Every string in the body as the gateway can read it, and every scalar's text joined; None
    when the body is no JSON object (then nothing may be stored)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    strings: list[str] = []
    scalars_text: list[str] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack += node.values()
        elif isinstance(node, list):
            stack += node
        elif isinstance(node, str):
            strings.append(node)
            scalars_text.append(node)
        elif node is not None:
            scalars_text += [str(node), json.dumps(node)]
    return strings, valid("\x00".join(scalars_text))


def valid(text: str) -> str:
    """Lone surrogates and NUL replaced, as the intake does on arrival (buzzi/channels/payload.py)."""
    return re.sub("[\x00\ud800-\udfff]", "\ufffd", text)


def plain(text: str) -> str:
    """Text as the adapters clean it: valid Unicode, entities decoded, whitespace runs collapsed."""
    text = valid(text)
    return re.sub(r"\s+", " ", html.unescape(text).replace("\xa0", " ")).strip()


def expected_text(channel: str, text: str) -> str:
    text = valid(text)
    if channel == "teams":  # a Teams text is HTML-ish: &nbsp; is a blank
        text = text.replace("\xa0", " ")
    if channel in ("slack", "teams"):  # both collapse runs of blanks and trim (docs/channels.md)
        return re.sub(r"[ \t]{2,}", " ", text).strip()
    return text


def check_stored(channel: str, case: Case, new: list[Message], chat_ids: list[str]) -> None:
    read = strings_and_scalars(case.body)
    if read is None or case.no_message:
        assert new == [], f"stored {[m.content for m in new]} from a payload with no message"
        return
    strings, scalar_blob = read
    plain_strings = "\x00".join(plain(s) for s in strings)
    for message, chat_id in zip(new, chat_ids, strict=True):
        ids = [*(message.channel_message_id or "").split(":"), chat_id, str(message.metadata["sender"]["id"])]
        for part in ids:
            assert part in ("edit",) or part in scalar_blob, f"id {part!r} is not in the payload"
        words = f"{message.content} {message.metadata['sender'].get('name') or ''}".split()
        for word in words:
            assert plain(word) in plain_strings, f"stored word {word!r} is not in the payload"
    if case.text is not None and new:
        (message,) = new
        assert message.content == expected_text(channel, case.text)


# ---------------------------------------------------------------------------- the tests

@pytest.fixture
async def lab(make_settings) -> AsyncIterator[ChannelLab]:
    # Limits out of the way: every example must reach the adapter, not a 429.
    limits = {"company_per_minute": 1_000_000, "webhook_per_minute": 1_000_000}
    async with channel_lab(make_settings, limits=limits) as running:
        yield running


@pytest.mark.parametrize("channel", CHANNELS)
@PROPERTY_SETTINGS
@given(data=st.data())
async def test_signed_hostile_payloads_never_fail_or_invent_messages(
        lab: ChannelLab, channel: str, data: st.DataObject, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    case = draw_case(data, lab, channel)
    before = {m.id for m in await lab.messages(channel, role="user")}
    status, answer, _ = await lab.post(channel, lab.sign(channel, case.body))
    assert status < 500, (status, answer)
    assert status != 429, "a limit hid the adapter"
    new = [m for m in await lab.messages(channel, role="user") if m.id not in before]
    chats = [await lab.gw.store.get(Conversation, m.conversation_id) for m in new]
    check_stored(channel, case, new, [c.external_chat_id if c else "" for c in chats])
    assert (await lab.gw.request("GET", "/healthz"))[0] == 200
    # The gateway's own failures (the fake platforms' logs are not the gateway's).
    crashes = [r for r in caplog.records if r.name in ("tornado.application", "tornado.general", "asyncio")
               or (r.name.startswith(("buzzi", "handlers")) and r.exc_info)]
    assert not crashes, [r.getMessage() for r in crashes]


# Where each sample names the chat a reply goes to.
CHAT_PATHS: dict[str, tuple[Any, ...]] = {
    "whatsapp": ("entry", 0, "changes", 0, "value", "messages", 0, "from"),
    "messenger": ("entry", 0, "messaging", 0, "sender", "id"),
    "instagram": ("entry", 0, "messaging", 0, "sender", "id"),
    "telegram": ("message", "chat", "id"),
    "slack": ("event", "channel"),
    "teams": ("conversation", "id"),
    "custom": ("data", "chat_id"),
}


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_nul_in_a_chat_id_is_replaced_not_a_500(lab: ChannelLab, channel: str) -> None:
    """Found by the property test above: SQLite compares indexed strings only up to a NUL, so the
    second message of a chat whose id held one could neither find nor create its conversation."""
    chat = "@chat\x00one" if channel == "telegram" else "chat\x00one"
    for _ in range(2):
        body, _ = BODIES[channel](lab, "hello", str(lab.next_id()))
        doc = json.loads(body)
        replace(doc, CHAT_PATHS[channel], chat)
        if channel == "telegram":
            doc["message"]["from"]["id"] = 42  # a sender of its own: the chat is no longer the user's
        status, answer, _ = await lab.post(channel, lab.sign(channel, json.dumps(doc).encode()))
        assert (status, answer) == (200, {"status": "ok"})
    (conversation,) = await lab.gw.store.find(Conversation, webhook_id=lab.hooks[channel].id)
    assert conversation.external_chat_id == "chat\ufffdone".replace("c", "@c", channel == "telegram")
    assert conversation.message_count == 2
