"""The client's address behind proxies: the address the trusted proxy saw, never one the client wrote.

A proxy appends the address of whoever connected to it to ``X-Forwarded-For``; everything to the
left of that entry was written by the client (or by proxies we know nothing of) and proves
nothing. uvicorn's own proxy handling takes the *leftmost* entry when every peer is trusted
(``*``, the only choice on a Space, whose proxy's address is not known): one header then gives a
client a fresh rate-limit budget per request. Here the peer must be a trusted proxy
(``FORWARDED_ALLOW_IPS``), and the client is the entry ``PROXY_HOPS`` places from the right (the
one the outermost of our proxies appended), or, walking from the right, the first entry that is
not itself a listed proxy, whichever comes first. Werkzeug's ``ProxyFix(x_for=N)`` and
Hypercorn's ``trusted_hops`` count the same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (the settings import this module: nothing heavy at import)
    from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyAddressError(ValueError):
    """``FORWARDED_ALLOW_IPS`` names something that is not an address or a network."""


def parse_trusted(text: str) -> tuple[bool, tuple[Network, ...]]:
    """``*`` (every peer is a proxy) or comma-separated addresses and networks (``10.0.0.0/8``)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if "*" in items:
        return True, ()
    networks: list[Network] = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ProxyAddressError(f"{item!r} is not an IP address or network") from exc
    return False, tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class TrustedProxies:
    """ASGI middleware: sets ``scope["client"]`` (and ``scheme``) from a trusted proxy's headers."""

    def __init__(self, app: ASGIApp, *, trusted: str, hops: int) -> None:
        if hops < 1:
            raise ValueError("hops must be at least 1")
        self.app = app
        self.hops = hops
        self.any_peer, self.networks = parse_trusted(trusted)

    def _listed(self, host: str) -> bool:
        address = _address(host)
        return address is not None and any(address in network for network in self.networks)

    def is_proxy(self, peer: str) -> bool:
        return self.any_peer or self._listed(peer)

    def client_of(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client's address for a request from ``peer`` with these ``X-Forwarded-For`` entries."""
        if not self.is_proxy(peer):
            return peer
        entries = [entry.strip() for entry in forwarded_for if entry.strip()]
        for depth, entry in enumerate(reversed(entries), start=1):
            if _address(entry) is None:
                return peer  # a proxy of ours never writes this: the chain is not what we were told
            if depth == self.hops or (self.networks and not self._listed(entry)):
                return entry  # (with ``*`` no entry is known to be a proxy: only the count decides)
        return peer  # fewer entries than hops: we cannot tell who the client is (the proxy is)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            peer = scope["client"][0]
            if self.is_proxy(peer):
                forwarded: list[str] = []
                proto = None
                for name, value in scope["headers"]:
                    if name == b"x-forwarded-for":
                        forwarded += value.decode("latin-1").split(",")
                    elif name == b"x-forwarded-proto":
                        proto = value.decode("latin-1").split(",")[-1].strip().lower()
                scope = dict(scope, client=(self.client_of(peer, forwarded), 0))
                if proto in ("http", "https"):
                    ws = scope["type"] == "websocket"
                    scope["scheme"] = {"http": "ws", "https": "wss"}[proto] if ws else proto
        await self.app(scope, receive, send)
