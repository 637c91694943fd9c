"""ARP for pyvde-slirp: replies for the router and DNS addresses, the neighbour table.

The router answers ARP only for its own addresses (guests answer each other), with the
MAC 52:55:<address asked for> (research §1.2). Frames to guests need each guest's MAC:
old slirpvde kept one MAC for everybody, which breaks with two guests, so the table maps
every guest IP to the MAC it was last seen with (from ARP, DHCP or any IPv4 frame).
"""
from __future__ import annotations

from ipaddress import IPv4Address

from .net import Network
from .packets import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST_MAC,
    ETH_ARP,
    ZERO_MAC,
    Arp,
    build_arp,
    ethernet_frame,
)

_UNSPECIFIED = IPv4Address(0)
_BROADCAST = IPv4Address(0xFFFFFFFF)


class Neighbours:
    """Guest IP -> MAC, at most `limit` entries; learning an address when full evicts the
    one learned (or refreshed) longest ago, counted in `evictions`."""

    def __init__(self, limit: int = 256) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.evictions = 0
        self._table: dict[IPv4Address, tuple[bytes, float]] = {}   # oldest first

    def learn(self, ip: IPv4Address, mac: bytes, now: float) -> None:
        """Multicast/broadcast MACs and the unspecified, broadcast and multicast
        addresses are not neighbours and are ignored."""
        if len(mac) != 6 or mac[0] & 1 or mac == ZERO_MAC:
            return
        if ip == _UNSPECIFIED or ip == _BROADCAST or ip.is_multicast:
            return
        table = self._table
        if table.pop(ip, None) is None and len(table) >= self.limit:
            del table[next(iter(table))]
            self.evictions += 1
        table[ip] = (mac, now)

    def lookup(self, ip: IPv4Address) -> bytes | None:
        entry = self._table.get(ip)
        return entry[0] if entry is not None else None

    def forget(self, ip: IPv4Address) -> None:
        self._table.pop(ip, None)

    def entries(self) -> list[tuple[IPv4Address, bytes, float]]:
        """(ip, mac, when last learned), oldest first, for logging."""
        return [(ip, mac, t) for ip, (mac, t) in self._table.items()]

    def __len__(self) -> int:
        return len(self._table)


def arp_reply(net: Network, arp: Arp) -> bytes | None:
    """The whole frame answering `arp` if it asks for the router or DNS address; None for
    anything else (replies, gratuitous ARP, questions about guests)."""
    if arp.op != ARP_REQUEST or not net.is_ours(arp.tpa):
        return None
    if arp.spa == arp.tpa or arp.sha[0] & 1:
        return None     # gratuitous (announces, asks nothing), or no one to answer to
    mac = net.mac_for(arp.tpa)
    return ethernet_frame(arp.sha, mac, ETH_ARP,
                          build_arp(ARP_REPLY, mac, arp.tpa, arp.sha, arp.spa))


def arp_request(net: Network, target_ip: IPv4Address) -> bytes:
    """Broadcast: who has `target_ip`? Tell the router."""
    mac = net.router_mac
    return ethernet_frame(BROADCAST_MAC, mac, ETH_ARP,
                          build_arp(ARP_REQUEST, mac, net.host, ZERO_MAC, target_ip))
