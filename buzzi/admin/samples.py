"""'Send test event': a correctly signed sample delivery for a webhook's channel, POSTed to the
webhook's own public URL, so an operator can check the URL, the secret and the delivery log end to end.

The channel's adapter builds the sample (ChannelAdapter.sample_event): a receipt or a reaction that is
acknowledged and logged, but no agent runs and no reply is sent to anyone.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from buzzi import clock
from buzzi.admin import scope
from buzzi.admin.render import webhook_url
from buzzi.auth import Principal
from buzzi.channels.base import CannotSimulate, ChannelAdapter, SampleEvent
from buzzi.channels.registry import ChannelRegistry
from buzzi.models import Webhook
from buzzi.store.base import Store

BODY_EXCERPT = 2000  # of the gateway's answer, shown on the page
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class SampleOutcome:
    """What the gateway answered to the sample: `status` is None when it could not be sent (`error`)."""

    status: int | None
    body: str
    error: str = ""
    description: str = ""


class SampleSender:
    def __init__(self, store: Store, channels: ChannelRegistry, public_url: str) -> None:
        self.store = store
        self.channels = channels
        self.public_url = public_url

    def cannot_send(self, webhook: Webhook) -> str:
        """Why no sample can be sent for this webhook's channel; "" when one can."""
        try:
            self._adapter(webhook).sample_event(webhook, clock.now())
        except CannotSimulate as exc:
            return str(exc)
        return ""

    async def send(self, principal: Principal, company_id: str, agent_id: str, webhook_id: str) -> SampleOutcome:
        webhook = await scope.webhook(self.store, principal, company_id, agent_id, webhook_id)
        try:
            sample = self._adapter(webhook).sample_event(webhook, clock.now())
        except CannotSimulate as exc:
            return SampleOutcome(None, "", error=str(exc))
        return await post_sample(webhook_url(self.public_url, webhook), sample)

    def _adapter(self, webhook: Webhook) -> ChannelAdapter:
        try:
            return self.channels.adapter(webhook.channel)
        except KeyError:
            raise CannotSimulate(f"the {webhook.channel} channel is not available on this gateway") from None


async def post_sample(url: str, sample: SampleEvent) -> SampleOutcome:
    """POST the sample and report what the gateway answered (or why it could not be reached)."""
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.post(url, data=sample.body, headers=sample.headers, allow_redirects=False) as resp:
            text = (await resp.content.read(BODY_EXCERPT)).decode("utf-8", "replace")
            return SampleOutcome(resp.status, text, description=sample.description)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return SampleOutcome(None, "", error=f"{exc.__class__.__name__}: could not reach {url}",
                             description=sample.description)
