"""The client's address, which a caller cannot choose by sending a header.

`X-Forwarded-For` is only believed when the TCP peer is a proxy we trust
(`ORDERGATE_TRUSTED_PROXIES`). Then the header is walked right to left — each trusted proxy
appended the address it received from — and the first hop that is not a trusted proxy is the
client. Everything left of that hop was written by the client itself and is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[Network]
) -> bool:
    return any(address in network for network in proxies)


def resolve_client_ip(
    peer: str | None, forwarded_for: Sequence[str], proxies: Sequence[Network]
) -> str:
    peer_address = _parse(peer or "")
    if peer_address is None:
        return peer or "unknown"
    if not proxies or not _trusted(peer_address, proxies):
        return str(peer_address)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    client = peer_address
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # A malformed hop: stop at the last address a trusted proxy vouched for.
            break
        client = address
        if not _trusted(address, proxies):
            break
    return str(client)
