"""Facebook Messenger (docs/channels.md §3): Page webhooks in, Send API `POST /me/messages` out with the
Page access token. Parsing and sending are shared with Instagram in meta.MessagingAdapter."""

from __future__ import annotations

from typing import Any

from buzzi.channels.base import CredentialField
from buzzi.channels.meta import GRAPH_ID, TOKEN, MessagingAdapter, require_field
from buzzi.models import Webhook


class MessengerAdapter(MessagingAdapter):
    channel = "messenger"
    display_name = "Messenger"
    credential_fields = (CredentialField("pageId", "Page ID"),
                         CredentialField("pageAccessToken", "Page access token", secret=True))
    text_limit = 2000  # "UTF-8 and under 2000 characters" (docs/channels.md §3.3, Send API reference)
    api_base_setting = "messenger_api_base"
    token_field = "pageAccessToken"
    object_name = "page"
    account_key = "page_id"
    account_field = "pageId"

    def validate_credentials(self, credentials: Any) -> dict[str, Any]:
        return {
            "pageId": require_field(credentials, "pageId", GRAPH_ID, "the numeric Page id"),
            "pageAccessToken": require_field(credentials, "pageAccessToken", TOKEN, "a Page access token"),
        }

    looks_up_profiles = True

    async def sender_profile(self, webhook: Webhook, sender_id: str) -> dict[str, str]:
        # The Page webhook has no name: the User Profile API has it (docs/channels.md §3.2).
        if not GRAPH_ID.match(sender_id):
            return {}
        found = await self.graph_call("messenger profile", "GET",
                                      f"{self.api_base}/{sender_id}?fields=first_name,last_name",
                                      self.token(webhook))
        name = " ".join(str(found[k]).strip() for k in ("first_name", "last_name") if found.get(k))
        return {"name": name[:200]} if name else {}
