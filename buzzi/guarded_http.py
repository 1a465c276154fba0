"""aiohttp connectors for sessions that carry tenant-supplied URLs, enforcing buzzi/netguard.py.

Two hooks, because aiohttp never calls its resolver for an IP-literal host:
- the resolver drops the non-public addresses a name resolves to (a name with only such addresses
  fails with BlockedAddressError), so a public name pointing at 127.0.0.1 fails, and so does a
  rebind, since every new connection resolves again once the short DNS cache expires;
- the socket factory checks the exact address each socket is about to connect to, which covers
  IP literals, redirects and anything the resolver hook might miss.
A refusal is an OSError, so callers see the connection error they already handle.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from buzzi.logs import log_fields
from buzzi.netguard import BlockedAddressError, NetPolicy

log = logging.getLogger("buzzi.netguard")


def _refused(exc: BlockedAddressError) -> BlockedAddressError:
    # Only the host and the address are logged: URLs can carry tokens in their path or query.
    log_fields(log, logging.WARNING, "outbound connection blocked", host=exc.host, address=exc.address,
               kind=exc.kind)
    return exc


class GuardedResolver(AbstractResolver):
    def __init__(self, policy: NetPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        # ThreadedResolver (getaddrinfo) holds nothing to release, so connectors that do not own
        # this resolver leak nothing when they close without closing it.
        self._inner = inner if inner is not None else ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept: list[ResolveResult] = []
        refused: BlockedAddressError | None = None
        for result in results:
            try:
                self.policy.check_address(result["host"], host)
            except BlockedAddressError as exc:
                refused = refused or exc
            else:
                kept.append(result)
        if not kept and refused is not None:
            raise _refused(refused)
        return kept

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(policy: NetPolicy) -> SocketFactoryType:
    def make_socket(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        try:
            policy.check_address(str(sockaddr[0]))
        except BlockedAddressError as exc:
            raise _refused(exc) from None
        return socket.socket(family=family, type=type_, proto=proto)

    return make_socket


def connector(policy: NetPolicy, **kwargs: Any) -> aiohttp.TCPConnector:
    """A TCPConnector (same keyword arguments) that only connects where `policy` allows."""
    if policy.allow_private:
        return aiohttp.TCPConnector(**kwargs)
    return aiohttp.TCPConnector(resolver=GuardedResolver(policy),
                                socket_factory=guarded_socket_factory(policy), **kwargs)
