"""Buzzi realtime gateway: channel webhooks and web chat for AI agents, on Tornado."""

__version__ = "0.1.0"
