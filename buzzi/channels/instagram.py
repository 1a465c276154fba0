"""Instagram Messaging (docs/channels.md §4): the Messenger event shape with "object": "instagram", and
`POST /me/messages` with the account's token (works for both the Instagram-Login host and the
Facebook-Login Page route; the base URL picks the host).

The text limit is 1000 *bytes* of UTF-8 (§4.2): text_limit is 1000 characters, and `split` cuts a
part further when its encoding is longer, so accented or emoji text is never rejected."""

from __future__ import annotations

from typing import Any

from buzzi.channels.base import CredentialField, split_text
from buzzi.channels.meta import GRAPH_ID, TOKEN, MessagingAdapter, require_field
from buzzi.models import Webhook

MAX_BYTES = 1000


def split_bytes(text: str, max_bytes: int = MAX_BYTES) -> list[str]:
    """Split at word boundaries until every part encodes to at most `max_bytes` bytes of UTF-8."""
    if len(text.encode()) <= max_bytes:
        return [text]
    limit = len(text)
    while True:
        limit = max(1, limit * 3 // 4)
        parts = split_text(text, limit)
        if all(len(part.encode()) <= max_bytes for part in parts):
            return parts


class InstagramAdapter(MessagingAdapter):
    channel = "instagram"
    display_name = "Instagram"
    credential_fields = (CredentialField("igUserId", "Instagram account ID"),
                         CredentialField("accessToken", "Access token", secret=True))
    text_limit = 1000
    api_base_setting = "instagram_api_base"
    token_field = "accessToken"
    object_name = "instagram"
    account_key = "ig_user_id"
    account_field = "igUserId"
    # The send-message doc sample carries no messaging_type for a standard reply; a HUMAN_AGENT reply
    # names MESSAGE_TAG (meta.MessagingAdapter.message_body).
    names_response_type = False

    def validate_credentials(self, credentials: Any) -> dict[str, Any]:
        return {
            "igUserId": require_field(credentials, "igUserId", GRAPH_ID, "the numeric Instagram account id"),
            "accessToken": require_field(credentials, "accessToken", TOKEN, "an access token"),
        }

    looks_up_profiles = True

    async def sender_profile(self, webhook: Webhook, sender_id: str) -> dict[str, str]:
        # The webhook has only the IGSID: name and username come from the Graph (docs/channels.md §4.1).
        if not GRAPH_ID.match(sender_id):
            return {}
        found = await self.graph_call("instagram profile", "GET",
                                      f"{self.api_base}/{sender_id}?fields=name,username", self.token(webhook))
        profile = {k: str(found[k]).strip()[:200] for k in ("name", "username") if found.get(k)}
        if "name" not in profile and "username" in profile:
            profile["name"] = profile["username"]
        return profile

    def split(self, text: str) -> list[str]:
        # Each part one Send API call, so the delivery path paces and retries every call on its own.
        return [piece for part in super().split(text) for piece in split_bytes(part)]
