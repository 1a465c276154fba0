"""Which network addresses the gateway may connect to on a tenant's behalf (the SSRF guard).

Company admins, custom senders and channel payloads hand the gateway URLs that it then calls (the
`http` agent's url, the `openai` agent's baseUrl, a custom webhook's callbackUrl, inbound media
URLs). Unchecked, those would let a tenant reach the gateway's own network: loopback ports, cloud
metadata at 169.254.169.254, internal services. So every address that is not globally routable
is refused unless the operator allows it (`security.allow_private_networks`, or
`security.allowed_private_cidrs` for a few internal services).

The check that counts runs on the address a socket is about to connect to (buzzi/guarded_http.py),
so a public name resolving to a private address, now or after a DNS rebind, fails as well. The
admin API also checks saved URLs (`check_url`) for an early 400; that check does not resolve names.
Operator-configured platform API bases are trusted config and never go through this policy.
No HTTP-framework code here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from buzzi.config import SecuritySettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "security.allow_private_networks"
# NAT64 (RFC 6052): a gateway on such a network connects to the embedded IPv4 address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# getaddrinfo takes legacy IPv4 spellings (127.1, 0x7f.0.0.1, 2130706433) as addresses, not names.
_LEGACY_IPV4 = re.compile(r"[0-9a-fA-FxX.]+")
_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


class BlockedAddressError(OSError):
    """A connection to a non-public address the policy refuses. An OSError, so HTTP clients
    report it like any other connection failure; `blocked_cause` finds it again."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        self.host = host
        self.address = address
        self.kind = kind
        where = host if host == address else f"{host} ({address})"
        article = "an" if kind[0] in "aeiou" else "a"
        super().__init__(f"blocked: {where} is {article} {kind} address ({SETTING})")


def address_kind(ip: IPAddress) -> str | None:
    """None for a globally routable address; else what kind of non-public address `ip` is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_kind(embedded)
        if ip.is_site_local:
            return "site-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:  # e.g. 100.64.0.0/10 carrier-grade NAT
        return "non-public"
    return None


def parse_ip(text: str) -> IPAddress | None:
    """An IP literal as it appears in a URL host or a socket address ([::1], fe80::1%eth0), or None."""
    text = text.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if ":" not in text and _LEGACY_IPV4.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class NetPolicy:
    """The default refuses every non-public address: a gateway that forgets to pass its policy
    stays safe rather than open."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, security: SecuritySettings) -> NetPolicy:
        return cls(security.allow_private_networks,
                   networks(security.allowed_private_cidrs))

    def refusal(self, ip: IPAddress) -> str | None:
        """The kind of address when `ip` may not be called, None when it may."""
        if self.allow_private:
            return None
        kind = address_kind(ip)
        if kind is None:
            return None
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        if any(candidate in net for candidate in candidates for net in self.allowed_networks):
            return None
        return kind

    def check_address(self, address: str, host: str | None = None) -> None:
        """Raise BlockedAddressError unless the IP `address` (that `host` resolved to) may be called."""
        ip = parse_ip(address)
        if ip is None:
            raise BlockedAddressError(host or address, address, "unrecognised")
        kind = self.refusal(ip)
        if kind is not None:
            raise BlockedAddressError(host or address, str(ip), kind)

    def check_host(self, host: str) -> None:
        """The save-time check: IP literals and localhost names. Other names can only be judged by
        the addresses they resolve to when connecting."""
        name = host.strip().lower().rstrip(".")
        ip = parse_ip(name)
        if ip is not None:
            kind = self.refusal(ip)
            if kind is not None:
                raise BlockedAddressError(host, str(ip), kind)
        elif name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
            kind = self.refusal(_LOOPBACK)
            if kind is not None:
                raise BlockedAddressError(host, host, kind)

    def check_url(self, url: str) -> None:
        host = urlsplit(url.strip()).hostname
        if host:
            self.check_host(host)


def networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parsed CIDRs (a bare address is a /32 or /128); ValueError names a bad one."""
    out: list[IPNetwork] = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{cidr!r} is not a CIDR") from None
    return tuple(out)


def blocked_cause(exc: BaseException | None) -> BlockedAddressError | None:
    """The BlockedAddressError behind `exc`, however the HTTP client wrapped it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BlockedAddressError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
