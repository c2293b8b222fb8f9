"""The client's address behind a reverse proxy, believed only from the proxies the operator names.

``X-Forwarded-For`` is a header like any other: anyone can send one.  Trusted from every peer, it let a
client locked out by the login limiter come back under a new address each time, and put a made-up address in
the access log (issue 20).  Only when the direct peer is in ``MAILGATE_TRUSTED_PROXIES`` does
:class:`TrustedProxies` take the client address from ``X-Forwarded-For`` and the scheme from
``X-Forwarded-Proto``; otherwise both stay the socket's.  (uvicorn's own handling of these headers is turned
off where mailgate starts it: it trusts 127.0.0.1 by default.)  ``Forwarded`` (RFC 7239) is not read.
"""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import ProxyNetwork

__all__ = ["TrustedProxies", "forwarded_client"]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: str, proxies: tuple[ProxyNetwork, ...]) -> bool:
    ip = _address(address)
    return ip is not None and any(ip in network for network in proxies)


def forwarded_client(peer: str, forwarded_for: str, proxies: tuple[ProxyNetwork, ...]) -> str:
    """The client address: ``peer`` unless it is a trusted proxy; then the nearest address in
    ``X-Forwarded-For`` (read from the right, where each proxy appends the peer it saw) that is not one.
    Anything the chain holds left of an untrusted hop is the client's own say, and ignored."""
    if not _trusted(peer, proxies):
        return peer
    client = peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if _address(hop) is None:
            break  # not an address: the proxy passed on something it should not have; keep the last good hop
        client = hop
        if not _trusted(hop, proxies):
            break
    return client


class TrustedProxies:
    """ASGI middleware: replaces ``scope["client"]`` (and ``scope["scheme"]``) with what a trusted proxy
    reports, in place, so that middleware outside it that reads the scope after the response starts (the
    access log) sees the same client as the limiter."""

    def __init__(self, app: ASGIApp, *, proxies: tuple[ProxyNetwork, ...]) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and self.proxies and client and _trusted(client[0], self.proxies):
            headers = Headers(scope=scope)
            forwarded_for = ",".join(headers.getlist("x-forwarded-for"))
            if forwarded_for:
                address = forwarded_client(client[0], forwarded_for, self.proxies)
                if address != client[0]:
                    scope["client"] = (address, 0)
            proto = headers.get("x-forwarded-proto", "").rsplit(",", 1)[-1].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
        await self.app(scope, receive, send)
