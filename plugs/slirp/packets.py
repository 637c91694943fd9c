"""Ethernet, ARP, IPv4, UDP, TCP and ICMP for pyvde-slirp: parse and build, checksums.

Pure: bytes in, frozen dataclasses out (and back). A parser raises `PacketError` with a
short reason for anything it cannot use (docs/slirp.md, "Shared conventions"); nothing a
guest sends makes it raise anything else. Builders take trusted values from the cores and
raise ValueError for values that do not fit the header.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from .. import _slirp

ETH_IP = 0x0800
ETH_ARP = 0x0806
ETH_VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100))  # 802.1Q, 802.1ad, old QinQ

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

FIN = 1
SYN = 2
RST = 4
PSH = 8
ACK = 16
URG = 32

ARP_REQUEST = 1
ARP_REPLY = 2

ICMP_ECHO_REPLY = 0
ICMP_UNREACH = 3
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6

ETH_HLEN = 14
IP_HLEN = 20
UDP_HLEN = 8
TCP_HLEN = 20
ICMP_HLEN = 8

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_TCP = struct.Struct("!HHIIBBHHH")
_ICMP = struct.Struct("!BBHHH")
_U16 = struct.Struct("!H")


class PacketError(ValueError):
    """A frame or packet that cannot be used; str() is the short reason."""


def checksum(data: bytes, initial: int = 0) -> int:
    """The internet checksum (RFC 1071) of `data`, plus `initial`: a one's complement sum
    not yet complemented (e.g. of a pseudo-header). 0 when `data` holds a valid checksum.
    Computed in C (cffi_build/slirp_fast.c): ten times faster than Python for a full frame."""
    if initial > 0xFFFFFFFF:        # a long sum: the same one's complement value in 16 bits
        initial = initial % 0xFFFF or 0xFFFF
    return _c_checksum(data if isinstance(data, bytes) else _from_buffer(data), len(data),
                       initial)


_c_checksum = _slirp.lib.slirp_checksum
_from_buffer = _slirp.ffi.from_buffer


_addresses: dict[bytes, IPv4Address] = {}


def _address(packed: bytes) -> IPv4Address:
    """IPv4Address(packed), remembered: a guest talks to few addresses (bounded memo)."""
    a = _addresses.get(packed)
    if a is None:
        if len(_addresses) >= 4096:
            _addresses.clear()
        a = _addresses[packed] = IPv4Address(packed)
    return a


def _pseudo(src: IPv4Address, dst: IPv4Address, proto: int, length: int) -> int:
    s, d = int(src), int(dst)
    return (s >> 16) + (s & 0xFFFF) + (d >> 16) + (d & 0xFFFF) + proto + length


# --- Ethernet ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ethernet:
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes


def parse_ethernet(frame: bytes) -> Ethernet:
    if len(frame) < ETH_HLEN:
        raise PacketError("truncated Ethernet header")
    dst, src, ethertype = _ETH.unpack_from(frame)
    if ethertype in ETH_VLAN_TYPES:
        raise PacketError("VLAN-tagged frame")
    return Ethernet(dst, src, ethertype, bytes(frame[ETH_HLEN:]))


def ethernet_frame(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    """A whole frame, not padded (the switch pads short frames, vde-protocol.md §2)."""
    return _ETH.pack(dst, src, ethertype) + payload


def ip_frame(dst_mac: bytes, src_mac: bytes, ip_bytes: bytes) -> bytes:
    return _ETH.pack(dst_mac, src_mac, ETH_IP) + ip_bytes


# --- ARP --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Arp:
    op: int
    sha: bytes
    spa: IPv4Address
    tha: bytes
    tpa: IPv4Address


def parse_arp(payload: bytes) -> Arp:
    """Ethernet/IPv4 ARP only; bytes after the 28 (Ethernet padding) are ignored."""
    if len(payload) < 28:
        raise PacketError("truncated ARP packet")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(payload)
    if htype != 1 or ptype != ETH_IP or hlen != 6 or plen != 4:
        raise PacketError("not an Ethernet/IPv4 ARP packet")
    return Arp(op, sha, _address(spa), tha, _address(tpa))


def build_arp(op: int, sha: bytes, spa: IPv4Address, tha: bytes, tpa: IPv4Address) -> bytes:
    return _ARP.pack(1, ETH_IP, 6, 4, op, sha, spa.packed, tha, tpa.packed)


# --- IPv4 -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class IPv4:
    src: IPv4Address
    dst: IPv4Address
    proto: int
    ttl: int
    ident: int
    tos: int
    payload: bytes


def parse_ipv4(data: bytes) -> IPv4:
    """Options are skipped; what follows the total length (Ethernet padding) is dropped."""
    n = len(data)
    if n < IP_HLEN:
        raise PacketError("truncated IPv4 header")
    vihl, tos, total, ident, frag, ttl, proto, _, src, dst = _IP.unpack_from(data)
    if vihl >> 4 != 4:
        raise PacketError("not IPv4")
    hl = (vihl & 15) << 2
    if hl < IP_HLEN:
        raise PacketError("bad IPv4 header length")
    if hl > n:
        raise PacketError("truncated IPv4 header")
    if total > n:
        raise PacketError("truncated IPv4 packet")
    if total < hl:
        raise PacketError("bad IPv4 total length")
    if checksum(data[:hl]):
        raise PacketError("bad IPv4 checksum")
    if frag & 0x3FFF:
        raise PacketError("IPv4 fragment")
    return IPv4(_address(src), _address(dst), proto, ttl, ident, tos,
                bytes(data[hl:total]))


def build_ipv4(src: IPv4Address, dst: IPv4Address, proto: int, payload: bytes,
               ttl: int = 64, ident: int = 0, tos: int = 0) -> bytes:
    """A 20-byte header (DF set, no options) and the payload."""
    total = IP_HLEN + len(payload)
    if total > 0xFFFF:
        raise ValueError(f"IPv4 packet of {total} bytes is too long")
    s, d = src.packed, dst.packed
    head = _IP.pack(0x45, tos, total, ident, 0x4000, ttl, proto, 0, s, d)
    c = checksum(head)
    return _IP.pack(0x45, tos, total, ident, 0x4000, ttl, proto, c, s, d) + payload


# --- UDP --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Udp:
    sport: int
    dport: int
    payload: bytes


def parse_udp(ip: IPv4) -> Udp:
    """The UDP length must fit the IP payload (what follows it is dropped); the checksum
    is checked unless it is 0 (not computed by the sender)."""
    if ip.proto != PROTO_UDP:
        raise PacketError("not UDP")
    d = ip.payload
    if len(d) < UDP_HLEN:
        raise PacketError("truncated UDP header")
    sport, dport, length, csum = _UDP.unpack_from(d)
    if length < UDP_HLEN or length > len(d):
        raise PacketError("bad UDP length")
    if length != len(d):
        d = d[:length]
    if csum and checksum(d, _pseudo(ip.src, ip.dst, PROTO_UDP, length)):
        raise PacketError("bad UDP checksum")
    return Udp(sport, dport, d[UDP_HLEN:])


def build_udp(src_ip: IPv4Address, dst_ip: IPv4Address, sport: int, dport: int,
              payload: bytes) -> bytes:
    """Header and payload, checksum over the pseudo-header (0 is sent as 0xffff)."""
    length = UDP_HLEN + len(payload)
    if length > 0xFFFF - IP_HLEN:
        raise ValueError(f"UDP datagram of {length} bytes is too long")
    c = checksum(payload, _pseudo(src_ip, dst_ip, PROTO_UDP, length) + sport + dport + length)
    return _UDP.pack(sport, dport, length, c or 0xFFFF) + payload


# --- TCP --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Tcp:
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    mss: int | None = None
    wscale: int | None = None


def parse_tcp(ip: IPv4) -> Tcp:
    """MSS and window scale options are read (a scale above 14 counts as 14, RFC 7323
    §2.3); other options are skipped; a malformed option list is a PacketError."""
    if ip.proto != PROTO_TCP:
        raise PacketError("not TCP")
    d = ip.payload
    n = len(d)
    if n < TCP_HLEN:
        raise PacketError("truncated TCP header")
    sport, dport, seq, ack, off, flags, window, _, _ = _TCP.unpack_from(d)
    hl = (off >> 4) << 2
    if hl < TCP_HLEN or hl > n:
        raise PacketError("bad TCP data offset")
    if checksum(d, _pseudo(ip.src, ip.dst, PROTO_TCP, n)):
        raise PacketError("bad TCP checksum")
    mss = wscale = None
    i = TCP_HLEN
    while i < hl:
        kind = d[i]
        if kind == 0:       # end of option list
            break
        if kind == 1:       # no-operation
            i += 1
            continue
        if i + 1 >= hl:
            raise PacketError("bad TCP options")
        length = d[i + 1]
        if length < 2 or i + length > hl:
            raise PacketError("bad TCP options")
        if kind == 2:
            if length != 4:
                raise PacketError("bad TCP MSS option")
            mss = (d[i + 2] << 8) | d[i + 3]
        elif kind == 3:
            if length != 3:
                raise PacketError("bad TCP window scale option")
            wscale = min(d[i + 2], 14)
        i += length
    return Tcp(sport, dport, seq, ack, flags, window, d[hl:], mss, wscale)


def build_tcp(src_ip: IPv4Address, dst_ip: IPv4Address, sport: int, dport: int, seq: int,
              ack: int, flags: int, window: int, payload: bytes = b"",
              mss: int | None = None, wscale: int | None = None) -> bytes:
    """Header (options only when given: MSS, then NOP + window scale) and payload."""
    opts = b""
    if mss is not None:
        opts += b"\x02\x04" + _U16.pack(mss)
    if wscale is not None:
        opts += b"\x01\x03\x03" + bytes((wscale,))
    if len(opts) & 3:       # not reached with the two options above; kept for new ones
        opts += b"\x00" * (4 - (len(opts) & 3))
    hl = TCP_HLEN + len(opts)
    length = hl + len(payload)
    if length > 0xFFFF - IP_HLEN:
        raise ValueError(f"TCP segment of {length} bytes is too long")
    head = _TCP.pack(sport, dport, seq, ack, hl << 2, flags, window, 0, 0) + opts
    c = checksum(payload, _pseudo(src_ip, dst_ip, PROTO_TCP, length)
                 + int.from_bytes(head, "big"))
    return head[:16] + _U16.pack(c) + head[18:] + payload


# --- ICMP -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Icmp:
    type: int
    code: int
    ident: int      # for echo; the first half of "rest of header" for other types
    seq: int
    payload: bytes


def parse_icmp(ip: IPv4) -> Icmp:
    if ip.proto != PROTO_ICMP:
        raise PacketError("not ICMP")
    d = ip.payload
    if len(d) < ICMP_HLEN:
        raise PacketError("truncated ICMP header")
    if checksum(d):
        raise PacketError("bad ICMP checksum")
    type_, code, _, ident, seq = _ICMP.unpack_from(d)
    return Icmp(type_, code, ident, seq, d[ICMP_HLEN:])


def build_icmp(type: int, code: int, ident: int, seq: int, payload: bytes) -> bytes:
    c = checksum(payload, (type << 8) + code + ident + seq)
    return _ICMP.pack(type, code, c, ident, seq) + payload
