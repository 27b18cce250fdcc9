"""ICE configuration of the frontends' WebRTC endpoints.

Two aiortc/aioice defaults are wrong for us and are overridden here:

* without ``iceServers``, aiortc adds Google's public STUN server: :class:`WebRTCConfig` always
  passes its own list (empty by default, so no third party learns of the transfer);
* aioice never gathers loopback host candidates (``aioice.ice.get_host_addresses`` skips
  ``127.0.0.1`` and ``::1``) and offers no option to choose the host addresses.
  :func:`host_addresses` restricts (or extends to loopback) the host candidates of the peer
  connections whose descriptions are set inside it.

The second override works by replacing the module function ``aioice.ice.get_host_addresses``
(aioice 0.13 looks it up as a global of ``aioice.ice`` in ``Connection.gather_candidates``)
by :func:`_get_host_addresses`, once, the first time :func:`host_addresses` is used. The
replacement answers exactly like the original unless a :class:`contextvars.ContextVar` set by
:func:`host_addresses` holds an allow-list; aiortc gathers inside ``setLocalDescription`` (in
tasks created by ``asyncio.gather``, which copy the caller's context), so the allow-list only
applies to the peer connections of the code inside the ``with`` block: other users of aioice
in the process are not affected.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

#: URL schemes accepted for ICE servers
ICE_SCHEMES = ("stun", "stuns", "turn", "turns")

_allowed: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "libervia_webrtc_host_addresses", default=None
)
_original_get_host_addresses: Any = None


def _interface_addresses() -> set[str]:
    """Every address of the local interfaces, loopback included."""
    import ifaddr

    found = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                found.add(ip.ip)
            else:
                found.add(ip.ip[0])
    return found


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """Replacement of ``aioice.ice.get_host_addresses`` (see the module documentation)."""
    allowed = _allowed.get()
    if allowed is None:
        return list(_original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    present = _interface_addresses()
    chosen = []
    for address in allowed:
        version = ipaddress.ip_address(address).version
        if (version == 4 and not use_ipv4) or (version == 6 and not use_ipv6):
            continue
        if address in present:
            chosen.append(address)
    return chosen


def _install() -> None:
    global _original_get_host_addresses
    import aioice.ice

    if aioice.ice.get_host_addresses is not _get_host_addresses:
        _original_get_host_addresses = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Within this block (and the tasks it creates), aioice gathers host candidates only on
    ``addresses`` (those present on a local interface; loopback allowed); ``None`` leaves
    aioice's own choice (every address but loopback)."""
    if addresses is None:
        yield
        return
    _install()
    token = _allowed.set(tuple(addresses))
    try:
        yield
    finally:
        _allowed.reset(token)


def validate_ice_server(url: str) -> str:
    """``url`` if it is a STUN/TURN URL (``stun:host[:port]``, ``turn:host?transport=udp``);
    raises ValueError otherwise."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() not in ICE_SCHEMES or not rest or rest.startswith("/"):
        raise ValueError(
            f"invalid ICE server {url!r}: expected stun:HOST[:PORT] or turn:HOST[:PORT]"
        )
    return url


def validate_address(address: str) -> str:
    """``address`` normalised if it is an IPv4/IPv6 address; raises ValueError otherwise."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise ValueError(f"invalid host address {address!r}: expected an IP address") from None


@dataclass(frozen=True)
class WebRTCConfig:
    """How the peer connections of the endpoints gather their candidates.

    Attributes:
        ice_servers: STUN/TURN server URLs (none by default: never aiortc's public default).
        username: TURN user name (for every TURN server of the list), if any.
        credential: TURN password, if any.
        host_addresses: the local addresses allowed as host candidates (loopback included
            only when listed, e.g. ``["127.0.0.1"]`` in tests); None: aioice's default
            gathering (every interface address but loopback).
    """

    ice_servers: tuple[str, ...] = ()
    username: str | None = None
    credential: str | None = None
    host_addresses: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        servers = (self.ice_servers,) if isinstance(self.ice_servers, str) else self.ice_servers
        object.__setattr__(self, "ice_servers", tuple(validate_ice_server(u) for u in servers))
        if self.host_addresses is not None:
            addresses = self.host_addresses
            if isinstance(addresses, str):
                addresses = (addresses,)
            object.__setattr__(
                self, "host_addresses", tuple(validate_address(a) for a in addresses)
            )

    def rtc_configuration(self) -> Any:
        """The ``aiortc.RTCConfiguration`` (always with an explicit server list)."""
        from aiortc import RTCConfiguration, RTCIceServer

        servers = [
            RTCIceServer(urls=url, username=self.username, credential=self.credential)
            if url.lower().startswith("turn")
            else RTCIceServer(urls=url)
            for url in self.ice_servers
        ]
        return RTCConfiguration(iceServers=servers)

    def gathering(self) -> contextlib.AbstractContextManager[None]:
        """The context in which to set a local description (see :func:`host_addresses`)."""
        return host_addresses(self.host_addresses)
