"""The virtual network's addresses: the router, the DNS address, the DHCP pool start, the MTU.

slirpvde's rules (research §1.1, vde-protocol.md §8.1): `-H ADDR[/LEN]` (LEN 24 when
absent); a host part of 0 only names the network and the router becomes host 2; DNS is
host 3 and the DHCP pool starts at host 15 unless given. The router answers ARP for its
addresses with the MAC 52:55 followed by the 4 bytes of the address asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Network

MTU_MIN = 576
MTU_MAX = 65520


def _address(what: str, text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except AddressValueError:
        raise ValueError(f"{what} '{text}' is not an IPv4 address") from None


@dataclass(frozen=True)
class Network:
    host: IPv4Address           # the router
    network: IPv4Network
    dns: IPv4Address
    dhcp_start: IPv4Address
    mtu: int = 1500

    @classmethod
    def from_text(cls, host: str = "10.0.2.2/24", dns: str | None = None,
                  dhcp_start: str | None = None, mtu: int = 1500) -> Network:
        addr, slash, length = host.partition("/")
        if slash:
            if not length.isdigit() or int(length) > 32:
                raise ValueError(f"host '{host}': '{length}' is not a prefix length 0..32")
            prefix = int(length)
        else:
            prefix = 24
        router = _address("host", addr)
        network = IPv4Network((router, prefix), strict=False)
        if prefix > 29:
            raise ValueError(f"host '{host}': network {network} is too small (/29 at most)")
        base = int(network.network_address)
        if router == network.network_address:
            router = IPv4Address(base + 2)
        net = cls(router, network,
                  _address("DNS", dns) if dns is not None else IPv4Address(base + 3),
                  (_address("DHCP start", dhcp_start) if dhcp_start is not None
                   else IPv4Address((base + 15) & 0xFFFFFFFF)),
                  mtu)
        net.check(dhcp=dhcp_start is not None)
        return net

    def check(self, dhcp: bool = True) -> None:
        """ValueError naming what does not fit (from_text calls it, checking the DHCP
        start only when it was given: the default one matters only with DHCP on)."""
        if not MTU_MIN <= self.mtu <= MTU_MAX:
            raise ValueError(f"MTU {self.mtu} is not {MTU_MIN}..{MTU_MAX}")
        for what, ip in (("router address", self.host), ("DNS address", self.dns),
                         ("DHCP start", self.dhcp_start if dhcp else self.host)):
            if not self.is_guest_range(ip):
                raise ValueError(f"{what} {ip} is not a host address in {self.network}")
        if self.dns == self.host:
            raise ValueError(f"DNS address {self.dns} is the router address")

    def is_guest_range(self, ip: IPv4Address) -> bool:
        """In the network and neither its network nor its broadcast address."""
        return (ip in self.network and ip != self.network.network_address
                and ip != self.network.broadcast_address)

    def mac_for(self, ip: IPv4Address) -> bytes:
        return b"\x52\x55" + ip.packed

    @property
    def router_mac(self) -> bytes:
        return b"\x52\x55" + self.host.packed

    def is_local(self, ip: IPv4Address) -> bool:
        return ip in self.network

    def is_ours(self, ip: IPv4Address) -> bool:
        return ip == self.host or ip == self.dns
