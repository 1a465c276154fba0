"""The SSRF guard (buzzi/netguard.py, buzzi/guarded_http.py): which addresses tenant URLs may reach,
checked on the policy alone, on the resolver and socket hooks, and on real aiohttp connections."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from buzzi.config import ConfigError, load_settings
from buzzi.guarded_http import GuardedResolver, connector, guarded_socket_factory
from buzzi.netguard import BlockedAddressError, NetPolicy, address_kind, blocked_cause, networks
from tests.support.local_server import serve_app

STRICT = NetPolicy()


# ---------------------------------------------------------------------------- the policy

@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("fe80::1", "link-local"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("::ffff:10.1.2.3", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "non-public"),  # carrier-grade NAT
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("fec0::1", "site-local"),
])
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind
    with pytest.raises(BlockedAddressError) as exc:
        STRICT.check_address(address)
    assert exc.value.kind == kind
    assert str(exc.value).startswith("blocked: ") and "(security.allow_private_networks)" in str(exc.value)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert STRICT.refusal(ipaddress.ip_address(address)) is None
    STRICT.check_address(address)


def test_the_message_names_host_address_and_setting() -> None:
    with pytest.raises(BlockedAddressError) as exc:
        STRICT.check_address("10.0.0.5", "agents.internal.example")
    assert str(exc.value) == ("blocked: agents.internal.example (10.0.0.5) is a private address "
                              "(security.allow_private_networks)")
    assert isinstance(exc.value, OSError)  # HTTP clients treat it as a connection failure


def test_allow_private_networks_lifts_the_check() -> None:
    policy = NetPolicy(allow_private=True)
    for address in ("127.0.0.1", "::1", "169.254.169.254", "10.0.0.1", "fe80::1"):
        policy.check_address(address)
    policy.check_host("localhost")


def test_allowed_cidrs_let_one_network_through() -> None:
    policy = NetPolicy(allowed_networks=networks(["10.0.5.0/24", "fd00:5::/64"]))
    for address in ("10.0.5.7", "::ffff:10.0.5.7", "fd00:5::7", "8.8.8.8"):
        policy.check_address(address)
    for address in ("10.0.6.1", "127.0.0.1", "169.254.169.254", "fd00:6::1"):
        with pytest.raises(BlockedAddressError):
            policy.check_address(address)
    with pytest.raises(ValueError, match="not a CIDR"):
        networks(["10.0.0.0/33"])


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "api.localhost", "127.0.0.1", "[::1]",
                                  "::ffff:127.0.0.1", "169.254.169.254", "10.1.2.3", "fe80::1%eth0",
                                  "127.1", "2130706433", "0x7f000001", "0.0.0.0"])
def test_save_time_check_refuses_literals_and_localhost(host: str) -> None:
    with pytest.raises(BlockedAddressError):
        STRICT.check_host(host)


@pytest.mark.parametrize("host", ["example.com", "agents.example.com", "8.8.8.8", "[2606:4700:4700::1111]",
                                  "my-localhost.example"])
def test_save_time_check_lets_public_hosts_and_names_through(host: str) -> None:
    STRICT.check_host(host)  # names are judged by what they resolve to, when connecting


def test_check_url_never_echoes_credentials_path_or_query() -> None:
    with pytest.raises(BlockedAddressError) as exc:
        STRICT.check_url("http://user:pa55word@127.0.0.1:8080/hook?token=s3cret")
    assert "pa55word" not in str(exc.value) and "s3cret" not in str(exc.value) and "/hook" not in str(exc.value)
    STRICT.check_url("https://svc.example.com/answer")


def test_blocked_cause_finds_the_refusal_through_wrapping() -> None:
    refusal = BlockedAddressError("127.0.0.1", "127.0.0.1", "loopback")
    try:
        try:
            raise refusal
        except OSError as inner:
            raise aiohttp.ClientConnectionError("cannot connect") from inner
    except aiohttp.ClientError as outer:
        assert blocked_cause(outer) is refusal
    assert blocked_cause(aiohttp.ClientConnectionError("refused")) is None
    assert blocked_cause(None) is None


def test_settings_default_env_and_validation() -> None:
    defaults = load_settings(env={})
    assert defaults.security.allow_private_networks is False
    assert defaults.security.allowed_private_cidrs == []
    assert NetPolicy.from_settings(defaults.security) == STRICT
    env = {"BUZZI_SECURITY_ALLOW_PRIVATE_NETWORKS": "true",
           "BUZZI_SECURITY_ALLOWED_PRIVATE_CIDRS": "10.0.5.0/24, 192.168.7.7"}
    settings = load_settings(env=env)
    assert settings.security.allow_private_networks is True
    assert NetPolicy.from_settings(settings.security).allowed_networks == (
        ipaddress.ip_network("10.0.5.0/24"), ipaddress.ip_network("192.168.7.7/32"))
    with pytest.raises(ConfigError, match=r"security\.allowed_private_cidrs: .intranet. is not a CIDR"):
        load_settings(env={"BUZZI_SECURITY_ALLOWED_PRIVATE_CIDRS": "intranet"})


# ---------------------------------------------------------------------------- the connector hooks

class FixedResolver(AbstractResolver):
    """DNS as a test wants it: `answers` maps a name to the addresses it resolves to."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST} for address in self.answers[host]]

    async def close(self) -> None:
        pass


async def test_a_name_resolving_to_loopback_is_refused_by_the_resolver() -> None:
    resolver = GuardedResolver(STRICT, FixedResolver({"rebind.example": ["127.0.0.1", "::1"]}))
    with pytest.raises(BlockedAddressError) as exc:
        await resolver.resolve("rebind.example", 443)
    assert exc.value.host == "rebind.example" and exc.value.kind == "loopback"


async def test_the_resolver_drops_private_addresses_and_keeps_public_ones() -> None:
    resolver = GuardedResolver(STRICT, FixedResolver({"mixed.example": ["10.0.0.8", "93.184.216.34", "fe80::1"]}))
    assert [r["host"] for r in await resolver.resolve("mixed.example", 443)] == ["93.184.216.34"]


def test_the_socket_factory_checks_the_address_it_connects_to() -> None:
    make_socket = guarded_socket_factory(STRICT)
    with pytest.raises(BlockedAddressError):
        make_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)))
    with pytest.raises(BlockedAddressError):
        make_socket((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:127.0.0.1", 80, 0, 0)))
    sock = make_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)))
    sock.close()


# ---------------------------------------------------------------------------- real connections

@contextlib.asynccontextmanager
async def server(host: str = "127.0.0.1", redirect_to: str | None = None) -> AsyncIterator[tuple[int, list[str]]]:
    """A local HTTP server recording the paths it was asked for; it redirects when told to."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        if redirect_to:
            raise web.HTTPFound(redirect_to)
        return web.Response(text="internal data")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with serve_app(app, host) as port:
        yield port, seen


async def fetch(policy: NetPolicy, url: str) -> str:
    async with aiohttp.ClientSession(connector=connector(policy)) as session, session.get(url) as response:
        return await response.text()


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost"])
async def test_a_guarded_session_never_reaches_loopback(host: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="buzzi.netguard")
    async with server() as (port, seen):
        with pytest.raises(aiohttp.ClientConnectionError) as exc:
            await fetch(STRICT, f"http://{host}:{port}/latest/meta-data?token=s3cret")
        assert seen == []
    refusal = blocked_cause(exc.value)
    assert refusal is not None and refusal.kind == "loopback"
    [record] = [r for r in caplog.records if r.getMessage() == "outbound connection blocked"]
    assert record.fields["address"] in ("127.0.0.1", "::ffff:127.0.0.1")  # type: ignore[attr-defined]
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "s3cret" not in logged and "meta-data" not in logged


async def test_an_unguarded_session_still_reaches_loopback() -> None:
    async with server() as (port, seen):
        assert await fetch(NetPolicy(allow_private=True), f"http://127.0.0.1:{port}/ok") == "internal data"
        assert seen == ["/ok"]


async def test_an_allowed_service_cannot_redirect_into_a_blocked_one() -> None:
    policy = NetPolicy(allowed_networks=networks(["127.0.0.2/32"]))
    async with server() as (inner_port, inner_seen), \
            server("127.0.0.2", redirect_to=f"http://127.0.0.1:{inner_port}/secret") as (port, seen):
        with pytest.raises(aiohttp.ClientConnectionError) as exc:
            await fetch(policy, f"http://127.0.0.2:{port}/start")
        assert seen == ["/start"] and inner_seen == []
    assert blocked_cause(exc.value) is not None
