"""Facebook Messenger (channels.md §3): Page webhooks in, Send API `POST /me/messages` out with the
Page access token. Parsing and sending are shared with Instagram in meta.MessagingAdapter."""

from __future__ import annotations

from typing import Any

from buzzi.channels.meta import GRAPH_ID, TOKEN, MessagingAdapter, require_field


class MessengerAdapter(MessagingAdapter):
    channel = "messenger"
    text_limit = 2000  # "UTF-8 and under 2000 characters" (channels.md §3.3, Send API reference)
    api_base_setting = "messenger_api_base"
    token_field = "pageAccessToken"
    object_name = "page"
    account_key = "page_id"

    def validate_credentials(self, credentials: Any) -> dict[str, Any]:
        return {
            "pageId": require_field(credentials, "pageId", GRAPH_ID, "the numeric Page id"),
            "pageAccessToken": require_field(credentials, "pageAccessToken", TOKEN, "a Page access token"),
        }

    def message_body(self, recipient: str, text: str) -> dict[str, Any]:
        # messaging_type is required; RESPONSE = an answer inside the 24 h window.
        return {"recipient": {"id": recipient}, "messaging_type": "RESPONSE", "message": {"text": text}}
