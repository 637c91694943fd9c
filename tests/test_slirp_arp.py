"""pyvde-slirp's addresses (net.py) and ARP (arp.py): slirpvde's defaults and MAC rule,
replies only for the router and DNS addresses, a neighbour table per guest."""
from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network

import pytest
from scapy.layers.l2 import ARP, Ether

from plugs.slirp.arp import Neighbours, arp_reply, arp_request
from plugs.slirp.net import Network
from plugs.slirp.packets import Arp, parse_arp, parse_ethernet

GUEST_MAC = bytes.fromhex("020000000001")


def test_network_defaults_are_slirpvde_s():
    n = Network.from_text()
    assert (n.host, n.network, n.dns, n.dhcp_start, n.mtu) == (
        A("10.0.2.2"), IPv4Network("10.0.2.0/24"), A("10.0.2.3"), A("10.0.2.15"), 1500)
    assert n.router_mac == bytes.fromhex("52550a000202")
    assert n.mac_for(A("10.0.2.3")) == bytes.fromhex("52550a000203")
    assert n.is_local(A("10.0.2.200")) and not n.is_local(A("10.0.3.1"))
    assert n.is_ours(A("10.0.2.2")) and n.is_ours(A("10.0.2.3"))
    assert not n.is_ours(A("10.0.2.15"))


def test_network_rules():
    n = Network.from_text("10.1.0.0/16", dhcp_start="10.1.1.44", dns="10.1.0.53")
    assert (n.host, n.network, n.dns, n.dhcp_start) == (
        A("10.1.0.2"), IPv4Network("10.1.0.0/16"), A("10.1.0.53"), A("10.1.1.44"))
    n = Network.from_text("192.168.7.1", mtu=65520)     # LEN defaults to 24
    assert (n.host, n.dns, n.dhcp_start, n.mtu) == (
        A("192.168.7.1"), A("192.168.7.3"), A("192.168.7.15"), 65520)
    # a /28 has no host 15 to start DHCP at; that only matters when it is asked for
    assert Network.from_text("10.0.0.2/28").dhcp_start == A("10.0.0.15")


@pytest.mark.parametrize("kwargs,message", [
    ({"host": "10.0.2.300/24"}, "host '10.0.2.300' is not an IPv4 address"),
    ({"host": "10.0.2.2/33"}, "'33' is not a prefix length"),
    ({"host": "10.0.2.2/x"}, "'x' is not a prefix length"),
    ({"host": "10.0.2.2/30"}, "too small"),
    ({"host": "10.0.2.255/24"}, "router address 10.0.2.255 is not a host address in"),
    ({"dns": "10.0.3.3"}, "DNS address 10.0.3.3 is not a host address in 10.0.2.0/24"),
    ({"dns": "10.0.2.2"}, "DNS address 10.0.2.2 is the router address"),
    ({"dns": "nope"}, "DNS 'nope' is not an IPv4 address"),
    ({"dhcp_start": "10.0.2.0"}, "DHCP start 10.0.2.0 is not a host address"),
    ({"host": "10.0.0.2/28", "dhcp_start": "10.0.0.15"}, "DHCP start 10.0.0.15"),
    ({"mtu": 575}, "MTU 575 is not 576..65520"),
    ({"mtu": 65521}, "MTU 65521"),
])
def test_network_errors(kwargs, message):
    with pytest.raises(ValueError) as e:
        Network.from_text(**kwargs)
    assert message in str(e.value)


def test_arp_reply_for_router_and_dns_only():
    net = Network.from_text()
    for ip in ("10.0.2.2", "10.0.2.3"):
        req = Arp(1, GUEST_MAC, A("10.0.2.15"), b"\x00" * 6, A(ip))
        frame = arp_reply(net, req)
        s = Ether(frame)
        mac = "52:55:0a:00:02:0" + ip[-1]
        assert (s.dst, s.src, s.type) == ("02:00:00:00:00:01", mac, 0x806)
        assert (s[ARP].op, s[ARP].hwsrc, s[ARP].psrc, s[ARP].hwdst, s[ARP].pdst) == (
            2, mac, ip, "02:00:00:00:00:01", "10.0.2.15")
        assert len(frame) == 42
    assert arp_reply(net, Arp(1, GUEST_MAC, A("10.0.2.15"), b"\x00" * 6, A("10.0.2.16"))) is None
    assert arp_reply(net, Arp(2, GUEST_MAC, A("10.0.2.15"), b"\x00" * 6, A("10.0.2.2"))) is None
    # gratuitous ARP asks nothing; a broadcast sender cannot be answered
    assert arp_reply(net, Arp(1, GUEST_MAC, A("10.0.2.2"), b"\x00" * 6, A("10.0.2.2"))) is None
    assert arp_reply(net, Arp(1, b"\xff" * 6, A("10.0.2.15"), b"\x00" * 6, A("10.0.2.2"))) is None
    # an ARP probe (sender 0.0.0.0, RFC 5227) for our address is answered: it is taken
    probe = arp_reply(net, Arp(1, GUEST_MAC, A("0.0.0.0"), b"\x00" * 6, A("10.0.2.3")))
    assert parse_arp(parse_ethernet(probe).payload).tpa == A("0.0.0.0")


def test_arp_request_from_the_router():
    net = Network.from_text()
    s = Ether(arp_request(net, A("10.0.2.15")))
    assert (s.dst, s.src) == ("ff:ff:ff:ff:ff:ff", "52:55:0a:00:02:02")
    assert (s[ARP].op, s[ARP].hwsrc, s[ARP].psrc, s[ARP].hwdst, s[ARP].pdst) == (
        1, "52:55:0a:00:02:02", "10.0.2.2", "00:00:00:00:00:00", "10.0.2.15")


def test_neighbours_learn_lookup_evict_oldest():
    n = Neighbours(limit=3)
    macs = [bytes([2, 0, 0, 0, 0, i]) for i in range(6)]
    for i in range(3):
        n.learn(A(f"10.0.2.{15 + i}"), macs[i], float(i))
    assert n.lookup(A("10.0.2.15")) == macs[0] and len(n) == 3
    n.learn(A("10.0.2.15"), macs[4], 5.0)       # refreshed (and moved): now the newest
    n.learn(A("10.0.2.30"), macs[5], 6.0)       # full: .16 is the oldest
    assert n.lookup(A("10.0.2.16")) is None and n.evictions == 1
    assert n.lookup(A("10.0.2.15")) == macs[4] and n.lookup(A("10.0.2.30")) == macs[5]
    assert [ip for ip, _, _ in n.entries()] == [A("10.0.2.17"), A("10.0.2.15"), A("10.0.2.30")]
    assert n.lookup(A("10.0.2.99")) is None


def test_neighbours_ignore_what_is_not_a_neighbour():
    n = Neighbours()
    n.learn(A("10.0.2.15"), b"\xff" * 6, 0.0)
    n.learn(A("10.0.2.15"), b"\x01\x00\x5e\x00\x00\x01", 0.0)
    n.learn(A("10.0.2.15"), b"\x00" * 6, 0.0)
    n.learn(A("0.0.0.0"), GUEST_MAC, 0.0)
    n.learn(A("255.255.255.255"), GUEST_MAC, 0.0)
    n.learn(A("224.0.0.1"), GUEST_MAC, 0.0)
    assert len(n) == 0
    n.learn(A("10.0.2.15"), GUEST_MAC, 0.0)
    n.forget(A("10.0.2.15"))
    assert len(n) == 0
