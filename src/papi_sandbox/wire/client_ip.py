"""Who the client is: the address every limit, ban, whitelist check and log line is keyed on.

The client is the TCP peer. ``X-Forwarded-For`` counts only when the operator names the proxies
in front of the service (``--forwarded-allow-ips``, default none): then, for a request whose TCP
peer is one of them, the header is read from the right (each proxy appends the address it saw),
trusted proxies are skipped, and the first address that is not a trusted proxy is the client. An
entry that is not a well-formed IPv4/IPv6 address ends the walk and the last trusted hop is the
client, so a client can never name itself with a forged or oversized value. Whatever the header
holds, the identity is a parsed address in its canonical text (at most 39 characters for IPv6),
never a header value (docs/security.md, "Who the client is").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, MutableMapping
from typing import Any

#: The identity of a request whose transport has no peer address (e.g. a Unix socket).
UNKNOWN_CLIENT = "unknown"
#: Most ``X-Forwarded-For`` entries looked at, from the right (one per proxy hop).
MAX_FORWARDED_HOPS = 16
#: Longest entry parsed as an address ("ffff:...:255.255.255.255" is 45 characters).
MAX_ADDRESS_CHARS = 45

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ForwardedAllowIpsError(ValueError):
    """``--forwarded-allow-ips`` holds an entry that is not an address or a CIDR range."""


def parse_trusted_proxies(text: str | None) -> tuple[Network, ...] | None:
    """``--forwarded-allow-ips``: comma-separated IPv4/IPv6 addresses or CIDR ranges, or ``*``
    (every peer is a proxy). Returns the networks, ``None`` for ``*``, ``()`` for none (the
    default). Raises ForwardedAllowIpsError on any other entry."""
    entries = [e.strip() for e in (text or "").split(",") if e.strip()]
    if entries == ["*"]:
        return None
    networks: list[Network] = []
    for entry in entries:
        if entry == "*" or len(entry) > MAX_ADDRESS_CHARS + 4:
            raise ForwardedAllowIpsError(f"'{entry[:64]}' in --forwarded-allow-ips")
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ForwardedAllowIpsError(
                f"'{entry}' in --forwarded-allow-ips is not an IP address or CIDR range"
            ) from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if not text or len(text) > MAX_ADDRESS_CHARS or not text.isascii():
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        # "fe80::1%eth0", "fe80::1%anything": one host, one key; the zone never names a client.
        return ipaddress.IPv6Address(text.partition("%")[0])
    return address


class ClientIdentity:
    """Resolves the client address of a request from its ASGI scope (see the module's text)."""

    def __init__(self, forwarded_allow_ips: str | None = None) -> None:
        trusted = parse_trusted_proxies(forwarded_allow_ips)
        self.trust_all = trusted is None
        self.trusted: tuple[Network, ...] = trusted or ()
        self.enabled = self.trust_all or bool(self.trusted)

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return self.trust_all or any(address in network for network in self.trusted)

    def resolve(self, scope: MutableMapping[str, Any]) -> str:
        """The client's address as canonical text, or UNKNOWN_CLIENT."""
        client = scope.get("client")
        peer_text = str(client[0]) if client else ""
        if not self.enabled:
            # The server's own peer address: already an IP address (never client-controlled).
            return peer_text[:MAX_ADDRESS_CHARS] or UNKNOWN_CLIENT
        peer = _address(peer_text)
        if peer is None:
            return UNKNOWN_CLIENT
        if not self._is_trusted(peer):
            return str(peer)
        return str(self._forwarded_client(peer, scope["headers"]))

    def _forwarded_client(
        self,
        peer: ipaddress.IPv4Address | ipaddress.IPv6Address,
        headers: Iterable[tuple[bytes, bytes]],
    ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        values = [value for name, value in headers if name == b"x-forwarded-for"]
        if not values:
            return peer
        # Several header lines are one list, in order (RFC 9110 5.3); only the last hops matter.
        hops = b",".join(values).split(b",")[-MAX_FORWARDED_HOPS:]
        client = peer
        for raw in reversed(hops):
            address = _address(raw.decode("latin-1"))
            if address is None:
                break  # a malformed hop: nothing left of it can be believed
            client = address
            if not self._is_trusted(address):
                break  # the first hop no trusted proxy stands for: the client
        return client

    def apply(self, scope: MutableMapping[str, Any]) -> None:
        """Replace ``scope["client"]`` by the resolved client (port kept), for every layer."""
        client = scope.get("client")
        scope["client"] = (self.resolve(scope), client[1] if client else 0)
