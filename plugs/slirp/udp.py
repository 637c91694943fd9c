"""UDP flows: the NAT table between guest datagrams and host sockets, pure.

A flow is (guest address, guest port, destination address, destination port) as the guest
sees it, with one host socket (the shell's, kept in `flow.handle` if it likes). The core
decides where the host socket sends, when a flow ends, and which address the guest sees
replies from; the shell opens, uses and closes the sockets.

Outbound (guest -> host), outbound(guest_ip, guest_port, dst_ip, dst_port, now):

* dst == the DNS address, port 53 -> the host's first resolver (dns.Resolvers), port 53;
  `dns=True`, idle timeout `dns_timeout` (10 s, libslirp's SO_EXPIREFAST). The shell
  should open the socket on a random source port (no query id clashes between guests).
* dst == the DNS address, any other port -> refused (None), counted `udp_refused_dns_port`.
* dst == the router address -> the host's 127.0.0.1, same port.
* dst a broadcast (255.255.255.255, the virtual network's broadcast or network address),
  multicast, 0/8, loopback or reserved (240/4) address -> refused, counted
  `udp_refused_dst`.
* dst inside the virtual network but neither the router nor the DNS address (another
  guest: the switch carries that, not the router) -> refused, counted `udp_refused_local`.
* port 0 either side -> refused, counted `udp_refused_port`.
* anything else: unchanged. Idle timeout `timeout` (180 s, passt's UDP_CONN_TIMEOUT).
  The shell should bind the socket to the guest's source port when it can (passt does).

For a new flow outbound() returns (flow, True): the shell opens a socket, connect()s it to
(flow.host_ip, flow.host_port) and sends; (flow, False) for a known flow (touched). On a
datagram from the host socket the shell calls touch(flow, now) and sends it to the guest
from inbound_source(flow), i.e. from where the guest sent to.

Limits: at most `max_flows` flows (outbound and inbound together). When the table is full,
a new flow takes the place of the least recently used one, counted `udp_evicted`.

Every flow that leaves the table is reported exactly once, so the shell can close its
socket: an evicted flow by evicted() (which empties the list) or, if the shell has not
called evicted() since, by the next expire(now), together with the timed-out ones.
remove(flow) (e.g. the shell could not open the socket) reports nothing.

Inbound forwards (-U hostport:guestaddr:guestport): forward(host_port, guest_ip,
guest_port) registers one; the shell listens on UDP host_port. A datagram arriving there
from (src, sport) -> inbound(host_port, src, sport, now) -> (flow, new) or None. The flow
is `inbound=True`, its guest end is the forward's target, `host_ip/host_port` is (src,
sport) (where replies go; the shell sends them with the listening socket,
`flow.forward_port` names it, and opens no socket of its own), and its destination
(`dst_ip/dst_port`, what the guest sees the datagram come from, and the address it
replies to) is:
  * the router address, port sport, when src is loopback (127/8), unspecified, or inside
    the virtual network (an address the guest could not reach through the router);
  * (src, sport) otherwise.
The guest's replies to (dst_ip, dst_port) find the flow through outbound() (returned with
new=False) and go back to (src, sport). If the guest side key is already taken by another
flow with a different host end (an outbound flow to router:sport, or two loopback
sources with the same port), the datagram is refused, counted `udp_inbound_conflict`.
Inbound flows idle out after `timeout`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol

from .flowtable import Flows

LOOPBACK = IPv4Address("127.0.0.1")
_LOOPBACK_NET = IPv4Network("127.0.0.0/8")
_THIS_NET = IPv4Network("0.0.0.0/8")
DNS_PORT = 53
_NORMAL, _DNS = 0, 1


class NetLike(Protocol):
    """What the cores need of net.Network."""
    host: IPv4Address        # the router
    dns: IPv4Address         # the DNS address
    network: IPv4Network     # the virtual network


class ResolverLike(Protocol):
    def current(self, now: float) -> IPv4Address | None: ...


@dataclass(eq=False)        # hashed by identity: a flow can be a dict key in the shell
class UdpFlow:
    guest_ip: IPv4Address
    guest_port: int
    dst_ip: IPv4Address      # what the guest sends to and sees replies from
    dst_port: int
    host_ip: IPv4Address     # where the host socket sends
    host_port: int
    last_used: float
    dns: bool
    inbound: bool = False    # created by a -U forward
    forward_port: int | None = None   # inbound: the host port of the forward's socket
    handle: Any = field(default=None, repr=False)   # the shell's (its socket); untouched here


@dataclass(frozen=True)
class UdpForward:
    host_port: int
    guest_ip: IPv4Address
    guest_port: int


class UdpFlows(Flows):
    def __init__(self, net: NetLike, resolvers: ResolverLike, max_flows: int = 1024,
                 timeout: float = 180.0, dns_timeout: float = 10.0):
        self.net = net
        self.resolvers = resolvers
        self.timeout = timeout
        self.dns_timeout = dns_timeout
        super().__init__(max_flows, (timeout, dns_timeout))
        self._inbound: dict[tuple[int, IPv4Address, int], UdpFlow] = {}
        self.forwards: dict[int, UdpForward] = {}
        self.counters = dict.fromkeys((
            "udp_flows", "udp_dns_flows", "udp_inbound_flows", "udp_expired", "udp_evicted",
            "udp_refused_dns_port", "udp_refused_dst", "udp_refused_local",
            "udp_refused_port", "udp_no_resolver", "udp_no_forward",
            "udp_inbound_conflict"), 0)


    # ------------------------------------------------------------ guest -> host

    def outbound(self, guest_ip: IPv4Address, guest_port: int, dst_ip: IPv4Address,
                 dst_port: int, now: float) -> tuple[UdpFlow, bool] | None:
        key = (guest_ip, guest_port, dst_ip, dst_port)
        flow = self._table.get(key)
        if flow is not None:
            self._table.touch(flow, now)
            return flow, False
        net = self.net
        if not (0 < guest_port < 65536 and 0 < dst_port < 65536):
            return self._refuse("udp_refused_port")
        dns = False
        if dst_ip == net.dns and dst_port == DNS_PORT:
            resolver = self.resolvers.current(now)
            if resolver is None:
                return self._refuse("udp_no_resolver")
            host_ip, dns = resolver, True
        elif dst_ip == net.host:
            host_ip = LOOPBACK
        elif dst_ip == net.dns:
            return self._refuse("udp_refused_dns_port")
        elif _unroutable(dst_ip, net.network):
            return self._refuse("udp_refused_dst")
        elif dst_ip in net.network:
            return self._refuse("udp_refused_local")
        else:
            host_ip = dst_ip
        flow = UdpFlow(guest_ip, guest_port, dst_ip, dst_port, host_ip, dst_port, now, dns)
        self._insert(key, flow)
        self.counters["udp_dns_flows" if dns else "udp_flows"] += 1
        return flow, True

    def _refuse(self, reason: str) -> None:
        self.counters[reason] += 1

    def _insert(self, key, flow: UdpFlow) -> None:
        if self._table.full():
            oldest = self._table.least_recently_used()
            self._drop(oldest)
            self._evicted.append(oldest)
            self.counters["udp_evicted"] += 1
        self._table.add(key, flow, _DNS if flow.dns else _NORMAL)
        if flow.inbound:
            self._inbound[(flow.forward_port, flow.host_ip, flow.host_port)] = flow

    def _drop(self, flow: UdpFlow) -> bool:
        if not self._table.remove(flow):
            return False
        if flow.inbound:
            self._inbound.pop((flow.forward_port, flow.host_ip, flow.host_port), None)
        return True

    # ------------------------------------------------------------ host -> guest

    def touch(self, flow: UdpFlow, now: float) -> None:
        """Traffic on the flow (a datagram from the host): its idle timer starts again."""
        self._table.touch(flow, now)

    def inbound_source(self, flow: UdpFlow) -> tuple[IPv4Address, int]:
        """The source address and port of the datagrams the guest gets on this flow."""
        return flow.dst_ip, flow.dst_port

    # ------------------------------------------------------------ -U forwards

    def forward(self, host_port: int, guest_ip: IPv4Address, guest_port: int) -> UdpForward:
        """Registers a -U forward: datagrams to the host's UDP host_port go to
        guest_ip:guest_port. ValueError if host_port is already forwarded."""
        if host_port in self.forwards:
            raise ValueError(f"UDP port {host_port} is already forwarded")
        if not (0 < host_port < 65536 and 0 < guest_port < 65536):
            raise ValueError("ports must be 1..65535")
        fwd = self.forwards[host_port] = UdpForward(host_port, guest_ip, guest_port)
        return fwd

    def inbound(self, host_port: int, src_ip: IPv4Address, src_port: int,
                now: float) -> tuple[UdpFlow, bool] | None:
        """The flow of a datagram that arrived on forward `host_port`'s socket from
        (src_ip, src_port); None if refused (no such forward, a conflict, port 0)."""
        flow = self._inbound.get((host_port, src_ip, src_port))
        if flow is not None:
            self._table.touch(flow, now)
            return flow, False
        fwd = self.forwards.get(host_port)
        if fwd is None:
            return self._refuse("udp_no_forward")
        if not 0 < src_port < 65536:
            return self._refuse("udp_refused_port")
        seen_ip = self.guest_view(src_ip)
        key = (fwd.guest_ip, fwd.guest_port, seen_ip, src_port)
        if self._table.get(key) is not None:
            return self._refuse("udp_inbound_conflict")
        flow = UdpFlow(fwd.guest_ip, fwd.guest_port, seen_ip, src_port, src_ip, src_port,
                       now, dns=False, inbound=True, forward_port=host_port)
        self._insert(key, flow)
        self.counters["udp_inbound_flows"] += 1
        return flow, True

    def guest_view(self, src_ip: IPv4Address) -> IPv4Address:
        """The address the guest sees a host peer at: the router for loopback,
        unspecified or virtual-network addresses, else the peer's own."""
        if src_ip in _LOOPBACK_NET or src_ip.is_unspecified or src_ip in self.net.network:
            return self.net.host
        return src_ip

    # ------------------------------------------------------------ ends and timers

    def expire(self, now: float) -> list[UdpFlow]:
        """Removes and returns the flows idle for their timeout, and the evicted flows not
        yet returned by evicted(): the shell closes their sockets."""
        gone = self.evicted()
        for flow in self._table.expire(now):
            if flow.inbound:
                self._inbound.pop((flow.forward_port, flow.host_ip, flow.host_port), None)
            gone.append(flow)
            self.counters["udp_expired"] += 1
        return gone

    def remove(self, flow: UdpFlow) -> bool:
        """Takes a flow out without reporting it (the shell closed it itself)."""
        return self._drop(flow)


def _unroutable(ip: IPv4Address, network: IPv4Network) -> bool:
    """Addresses no UDP flow goes to: broadcasts, multicast, loopback, unspecified,
    reserved (240/4, 255.255.255.255 included), 0/8 and the virtual network's own network
    and broadcast addresses."""
    return (ip.is_multicast or ip.is_loopback or ip in _THIS_NET or ip.is_reserved
            or ip == network.broadcast_address or ip == network.network_address)
