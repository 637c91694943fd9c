"""ICMP echo, pure: local replies for the router and DNS addresses, and echo flows.

Echo requests to the router or DNS address are answered here (as libslirp's icmp_reflect
does; replies have TTL 255). Echo requests to anywhere else go out through the host's
unprivileged ping sockets, socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP), one per (guest
address, echo id, destination) flow, idle timeout 60 s (passt). Such a socket only needs
the ICMP header and payload; the kernel replaces the echo id by the socket's "port" and
computes the checksum, and replies come back with that id: reply() builds the echo reply
the guest must see, with its own id and a new checksum.

Ping sockets need the gid in net.ipv4.ping_group_range; the shell reports that (EACCES)
and counts the requests it cannot forward.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Protocol

from .flowtable import Flows

ECHO_REPLY, ECHO_REQUEST = 0, 8
IPPROTO_ICMP = 1
LOCAL_TTL = 255          # what libslirp's local replies carry
FORWARD_TTL = 64         # replies from ping sockets (the kernel does not tell the TTL)


class NetLike(Protocol):
    host: IPv4Address
    dns: IPv4Address


def internet_checksum(data: bytes) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_packet(src: IPv4Address, dst: IPv4Address, proto: int, payload: bytes,
                ttl: int = 64, ident: int = 0) -> bytes:
    """An IPv4 packet without options, DF set, with its header checksum."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000,
                         ttl, proto, 0, src.packed, dst.packed)
    checksum = internet_checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + payload


def echo_message(icmp_type: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP echo request or reply with its checksum."""
    msg = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + payload
    return msg[:2] + struct.pack("!H", internet_checksum(msg)) + msg[4:]


def local_echo_reply(net: NetLike, ip_src: IPv4Address, ip_dst: IPv4Address,
                     icmp: bytes) -> bytes | None:
    """The reply to an echo request `icmp` (the ICMP message: header and data) from
    ip_src to ip_dst, as a whole IPv4 packet, if ip_dst is the router or DNS address;
    None when there is nothing to answer (another destination, not a valid echo
    request, a broadcast or multicast source)."""
    if ip_dst != net.host and ip_dst != net.dns:
        return None
    icmp = bytes(icmp)
    if len(icmp) < 8 or icmp[0] != ECHO_REQUEST or internet_checksum(icmp) != 0:
        return None
    if ip_src.is_multicast or ip_src.is_unspecified or ip_src == IPv4Address(0xFFFFFFFF):
        return None
    ident, seq = struct.unpack_from("!HH", icmp, 4)
    reply = echo_message(ECHO_REPLY, ident, seq, icmp[8:])
    return ipv4_packet(ip_dst, ip_src, IPPROTO_ICMP, reply, ttl=LOCAL_TTL)


def parse_echo(icmp: bytes, icmp_type: int = ECHO_REQUEST) -> tuple[int, int, bytes] | None:
    """(id, seq, data) of an ICMP echo message of the given type, or None."""
    icmp = bytes(icmp)
    if len(icmp) < 8 or icmp[0] != icmp_type:
        return None
    ident, seq = struct.unpack_from("!HH", icmp, 4)
    return ident, seq, icmp[8:]


@dataclass(eq=False)        # hashed by identity
class PingFlow:
    guest_ip: IPv4Address
    ident: int               # the guest's echo id
    dst_ip: IPv4Address
    last_used: float
    handle: Any = field(default=None, repr=False)   # the shell's (its ping socket)


class PingFlows(Flows):
    """Echo flows keyed by (guest_ip, ident, dst_ip).

    outbound() returns (flow, new): for a new flow the shell opens a ping socket; either
    way it sends the request through it (sendto(echo_message(8, any id, seq, data),
    (dst, 0))). A reply read from the socket -> reply_from_host(flow, data), or
    reply(flow, seq, payload) for the ICMP reply, or reply_packet() for the IPv4 packet.

    At most `max_flows`; when full, the least recently used flow is evicted (counted
    `icmp_evicted`). As in udp.py, every flow that leaves is reported exactly once:
    evicted ones by evicted() (which empties the list) or else by the next expire(now).
    """

    def __init__(self, max_flows: int = 256, timeout: float = 60.0):
        self.timeout = timeout
        super().__init__(max_flows, (timeout,))
        self.counters = dict.fromkeys(("icmp_flows", "icmp_expired", "icmp_evicted"), 0)


    def outbound(self, guest_ip: IPv4Address, ident: int, dst_ip: IPv4Address,
                 now: float) -> tuple[PingFlow, bool]:
        key = (guest_ip, ident, dst_ip)
        flow = self._table.get(key)
        if flow is not None:
            self._table.touch(flow, now)
            return flow, False
        if self._table.full():
            oldest = self._table.least_recently_used()
            self._table.remove(oldest)
            self._evicted.append(oldest)
            self.counters["icmp_evicted"] += 1
        flow = PingFlow(guest_ip, ident, dst_ip, now)
        self._table.add(key, flow, 0)
        self.counters["icmp_flows"] += 1
        return flow, True

    def touch(self, flow: PingFlow, now: float) -> None:
        self._table.touch(flow, now)

    def reply(self, flow: PingFlow, seq: int, payload: bytes) -> bytes:
        """The echo reply (ICMP message) for the guest: its own id, a new checksum."""
        return echo_message(ECHO_REPLY, flow.ident, seq, bytes(payload))

    def reply_packet(self, flow: PingFlow, seq: int, payload: bytes,
                     ttl: int = FORWARD_TTL) -> bytes:
        """The reply as an IPv4 packet from the pinged address to the guest."""
        return ipv4_packet(flow.dst_ip, flow.guest_ip, IPPROTO_ICMP,
                           self.reply(flow, seq, payload), ttl=ttl)

    def reply_from_host(self, flow: PingFlow, data: bytes,
                        ttl: int = FORWARD_TTL) -> bytes | None:
        """What a ping socket read (ICMP header and data, the socket's id) as the IPv4
        packet for the guest; None if it is not an echo reply."""
        parsed = parse_echo(data, ECHO_REPLY)
        if parsed is None:
            return None
        return self.reply_packet(flow, parsed[1], parsed[2], ttl)

    def expire(self, now: float) -> list[PingFlow]:
        gone = self.evicted()
        expired = self._table.expire(now)
        self.counters["icmp_expired"] += len(expired)
        return gone + expired

    def remove(self, flow: PingFlow) -> bool:
        return self._table.remove(flow)
