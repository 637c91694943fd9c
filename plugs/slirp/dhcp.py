"""The DHCP server of pyvde-slirp (RFC 2131), pure: UDP payloads in, Ethernet frames out.

slirp-compatible (research §1.3, §1.4, §7.3): a pool of `pool_size` addresses from
net.dhcp_start, leases of `lease_time` seconds, replies from router:67 to
255.255.255.255:68 with the Ethernet destination = the client's chaddr (slirpvde; busybox
udhcpc accepts that in every state), a valid IP checksum and no IP options. Unlike slirp,
leases expire, RELEASE frees an address, DECLINE blocks one and INFORM is answered.

An OFFER reserves its address for `offer_time` seconds (unless only offers are left: then
the oldest offer goes to the new client), so that clients discovering at the
same time get different addresses; a client keeps its address across expiry until another
client needs it (never-used addresses are handed out first).
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address

from .net import Network
from .packets import PROTO_UDP, PacketError, build_ipv4, build_udp, ip_frame

SERVER_PORT = 67
CLIENT_PORT = 68
MAGIC = b"\x63\x82\x53\x63"

BOOTREQUEST = 1
BOOTREPLY = 2

DISCOVER = 1
OFFER = 2
REQUEST = 3
DECLINE = 4
ACK = 5
NAK = 6
RELEASE = 7
INFORM = 8

OPT_PAD = 0
OPT_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_MTU = 26
OPT_BROADCAST = 28
OPT_REQUESTED = 50
OPT_LEASE = 51
OPT_TYPE = 53
OPT_SERVER = 54
OPT_MESSAGE = 56
OPT_T1 = 58
OPT_T2 = 59
OPT_END = 255

MIN_MESSAGE = 300       # BOOTP's minimum size (RFC 951; RFC 1542 §2.1)
_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")     # 240 bytes, cookie included
_BROADCAST = IPv4Address("255.255.255.255")
_ZERO = IPv4Address(0)
_OPTION_LENGTHS = {OPT_TYPE: 1, OPT_REQUESTED: 4, OPT_SERVER: 4}


@dataclass(frozen=True)
class DhcpMessage:
    op: int
    xid: int
    secs: int
    flags: int
    ciaddr: IPv4Address
    yiaddr: IPv4Address
    siaddr: IPv4Address
    giaddr: IPv4Address
    chaddr: bytes               # the 16 bytes as sent
    options: dict[int, bytes]   # code -> value (a code given twice: values concatenated)

    @property
    def mac(self) -> bytes:
        return self.chaddr[:6]

    @property
    def type(self) -> int | None:
        v = self.options.get(OPT_TYPE)
        return v[0] if v else None

    def address(self, code: int) -> IPv4Address | None:
        v = self.options.get(code)
        return IPv4Address(v) if v is not None and len(v) == 4 else None


def parse_dhcp(payload: bytes) -> DhcpMessage:
    """A BOOTP message with the DHCP cookie (request or reply); PacketError if malformed.
    Options after END and the sname/file fields (option overload) are not read."""
    if len(payload) < _BOOTP.size:
        raise PacketError("truncated DHCP message")
    (op, htype, hlen, _hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
     _sname, _file, cookie) = _BOOTP.unpack_from(payload)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise PacketError("bad BOOTP op")
    if htype != 1 or hlen != 6:
        raise PacketError("not an Ethernet DHCP message")
    if cookie != MAGIC:
        raise PacketError("no DHCP magic cookie")
    options: dict[int, bytes] = {}
    i, n = _BOOTP.size, len(payload)
    while i < n:
        code = payload[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            break
        if i + 1 >= n or i + 2 + payload[i + 1] > n:
            raise PacketError("bad DHCP options")
        end = i + 2 + payload[i + 1]
        value = bytes(payload[i + 2:end])
        options[code] = options[code] + value if code in options else value
        i = end
    for code, length in _OPTION_LENGTHS.items():
        if code in options and len(options[code]) != length:
            raise PacketError(f"bad DHCP option {code}")
    return DhcpMessage(op, xid, secs, flags, IPv4Address(ciaddr), IPv4Address(yiaddr),
                       IPv4Address(siaddr), IPv4Address(giaddr), bytes(chaddr), options)


@dataclass
class _Lease:
    mac: bytes
    expires: float
    bound: bool         # False: only offered


class DhcpServer:
    def __init__(self, net: Network, lease_time: int = 86400, pool_size: int = 16,
                 offer_time: float = 60.0) -> None:
        if not 1 <= lease_time <= 0xFFFFFFFE:
            raise ValueError(f"lease time {lease_time} is not 1..{0xFFFFFFFE} seconds")
        if pool_size < 1:
            raise ValueError("the DHCP pool needs at least one address")
        self.net = net
        self.lease_time = lease_time
        self.offer_time = offer_time
        start = int(net.dhcp_start)
        self.pool = [ip for ip in (IPv4Address(a) for a in
                                   range(start, min(start + pool_size, 1 << 32)))
                     if net.is_guest_range(ip) and not net.is_ours(ip)]
        self._in_pool = frozenset(self.pool)
        self._leases: dict[IPv4Address, _Lease] = {}
        self._by_mac: dict[bytes, IPv4Address] = {}
        self._blocked: dict[IPv4Address, float] = {}    # declined address -> until
        self.counts: Counter[str] = Counter()           # what was not answered, and why
        self._common = [
            (OPT_MASK, net.network.netmask.packed),
            (OPT_ROUTER, net.host.packed),
            (OPT_DNS, net.dns.packed),
            (OPT_MTU, struct.pack("!H", net.mtu)),
            (OPT_BROADCAST, net.network.broadcast_address.packed),
        ]
        self._times = [
            (OPT_LEASE, struct.pack("!I", lease_time)),
            (OPT_T1, struct.pack("!I", lease_time // 2)),
            (OPT_T2, struct.pack("!I", lease_time * 7 // 8)),
        ]

    # --- the protocol -------------------------------------------------------------------

    def handle(self, client_mac: bytes, payload: bytes, now: float) -> list[bytes]:
        """`payload`: what a guest sent to UDP port 67, from Ethernet source `client_mac`.
        Returns the frames to send (none or one). PacketError if malformed."""
        msg = parse_dhcp(payload)
        if msg.op != BOOTREQUEST:
            raise PacketError("not a BOOTREQUEST")
        mac = msg.mac
        if mac[0] & 1 or mac == b"\x00" * 6:
            raise PacketError("bad DHCP client hardware address")
        if mac != client_mac:
            self.counts["chaddr is not the Ethernet source"] += 1
        kind = msg.type
        if kind == DISCOVER:
            return self._discover(msg, mac, now)
        if kind == REQUEST:
            return self._request(msg, mac, now)
        if kind == RELEASE:
            self._release(msg, mac)
            return []
        if kind == DECLINE:
            self._decline(msg, mac, now)
            return []
        if kind == INFORM:
            return [self._reply(msg, ACK, _ZERO, msg.ciaddr, self._common)]
        self.counts["BOOTP request ignored" if kind is None
                    else f"DHCP message type {kind} ignored"] += 1
        return []

    def _discover(self, msg: DhcpMessage, mac: bytes, now: float) -> list[bytes]:
        ip = self._choose(mac, msg.address(OPT_REQUESTED), now)
        if ip is None:
            self.counts["DHCP pool exhausted"] += 1
            return []
        lease = self._leases.get(ip)
        if lease is None or lease.mac != mac or not lease.bound or lease.expires <= now:
            self._bind(ip, mac, now + self.offer_time, bound=False)
        return [self._reply(msg, OFFER, ip, _ZERO, self._times + self._common)]

    def _request(self, msg: DhcpMessage, mac: bytes, now: float) -> list[bytes]:
        server = msg.address(OPT_SERVER)
        if server is not None and server != self.net.host:
            # SELECTING another server's offer: our reservation is not needed any more
            ip = self._by_mac.get(mac)
            lease = self._leases.get(ip) if ip is not None else None
            if lease is not None and not lease.bound:
                self._unbind(ip)
            self.counts["DHCP request for another server"] += 1
            return []
        ip = msg.address(OPT_REQUESTED)                 # selecting, init-reboot
        if ip is None and msg.ciaddr != _ZERO:
            ip = msg.ciaddr                             # renewing, rebinding
        if ip is None:
            ip = self._by_mac.get(mac)                  # no address named: its own, if any
        if ip is None or not self._available(ip, mac, now):
            return [self._reply(msg, NAK, _ZERO, _ZERO,
                                [(OPT_MESSAGE, b"requested address not available")])]
        self._bind(ip, mac, now + self.lease_time, bound=True)
        return [self._reply(msg, ACK, ip, msg.ciaddr, self._times + self._common)]

    def _release(self, msg: DhcpMessage, mac: bytes) -> None:
        lease = self._leases.get(msg.ciaddr)
        if lease is None or lease.mac != mac:
            self.counts["DHCP release of an address the client does not hold"] += 1
            return
        self._unbind(msg.ciaddr)

    def _decline(self, msg: DhcpMessage, mac: bytes, now: float) -> None:
        ip = msg.address(OPT_REQUESTED)
        if ip is None or ip not in self._in_pool:
            self.counts["DHCP decline without a pool address"] += 1
            return
        self._blocked[ip] = now + self.lease_time
        lease = self._leases.get(ip)
        if lease is not None and lease.mac == mac:
            self._unbind(ip)
        self.counts["DHCP address declined"] += 1

    # --- the leases ---------------------------------------------------------------------

    def _available(self, ip: IPv4Address, mac: bytes, now: float) -> bool:
        if ip not in self._in_pool or self._blocked.get(ip, now) > now:
            return False
        lease = self._leases.get(ip)
        return lease is None or lease.mac == mac or lease.expires <= now

    def _choose(self, mac: bytes, requested: IPv4Address | None,
                now: float) -> IPv4Address | None:
        """The requested address if it can be had, else the client's own, else a
        never-used one, else the one expired longest ago."""
        if requested is not None and self._available(requested, mac, now):
            return requested
        own = self._by_mac.get(mac)
        if own is not None and self._available(own, mac, now):
            return own
        best: IPv4Address | None = None
        offered: IPv4Address | None = None
        for ip in self.pool:
            if self._blocked.get(ip, now) > now:
                continue
            lease = self._leases.get(ip)
            if lease is None:
                return ip
            if lease.expires <= now and (best is None
                                         or lease.expires < self._leases[best].expires):
                best = ip
            if not lease.bound and (offered is None
                                    or lease.expires < self._leases[offered].expires):
                offered = ip
        if best is None and offered is not None:
            # only offers left: the oldest goes to this client, so a flood of DISCOVERs
            # from made-up MACs recycles offers and never locks real clients out
            self.counts["DHCP offer taken back"] += 1
            return offered
        return best

    def _bind(self, ip: IPv4Address, mac: bytes, expires: float, bound: bool) -> None:
        old = self._by_mac.get(mac)
        if old is not None and old != ip:
            self._unbind(old)
        previous = self._leases.get(ip)
        if previous is not None and previous.mac != mac:
            self._unbind(ip)
        self._leases[ip] = _Lease(mac, expires, bound)
        self._by_mac[mac] = ip

    def _unbind(self, ip: IPv4Address) -> None:
        lease = self._leases.pop(ip, None)
        if lease is not None and self._by_mac.get(lease.mac) == ip:
            del self._by_mac[lease.mac]

    def leases(self, now: float) -> list[tuple[bytes, IPv4Address, float]]:
        """(mac, ip, expires) of the leases acknowledged and not expired, by address."""
        return [(lease.mac, ip, lease.expires) for ip, lease in sorted(self._leases.items())
                if lease.bound and lease.expires > now]

    # --- replies ------------------------------------------------------------------------

    def _reply(self, msg: DhcpMessage, kind: int, yiaddr: IPv4Address,
               ciaddr: IPv4Address, options: list[tuple[int, bytes]]) -> bytes:
        net = self.net
        siaddr = _ZERO if kind == NAK else net.host
        body = [_BOOTP.pack(BOOTREPLY, 1, 6, 0, msg.xid, 0, msg.flags, ciaddr.packed,
                            yiaddr.packed, siaddr.packed, msg.giaddr.packed, msg.chaddr,
                            b"", b"", MAGIC),
                bytes((OPT_TYPE, 1, kind, OPT_SERVER, 4)), net.host.packed]
        for code, value in options:
            body.append(bytes((code, len(value))))
            body.append(value)
        body.append(bytes((OPT_END,)))
        data = b"".join(body)
        if len(data) < MIN_MESSAGE:
            data += bytes(MIN_MESSAGE - len(data))
        udp = build_udp(net.host, _BROADCAST, SERVER_PORT, CLIENT_PORT, data)
        return ip_frame(msg.mac, net.router_mac,
                        build_ipv4(net.host, _BROADCAST, PROTO_UDP, udp, tos=0x10))
