"""pyvde-slirp's pure flow cores: resolv.conf and the resolvers (dns.py), UDP flows
(udp.py), ICMP echo (icmp.py)."""
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.all import ICMP, IP

from plugs.slirp.dns import Resolvers, parse_resolv_conf
from plugs.slirp.icmp import (
    PingFlows,
    echo_message,
    internet_checksum,
    local_echo_reply,
)
from plugs.slirp.udp import UdpFlows

A = IPv4Address
ROUTER, DNS, GUEST, GUEST2 = A("10.0.2.2"), A("10.0.2.3"), A("10.0.2.15"), A("10.0.2.16")
PEER = A("192.0.2.7")
RESOLVER = A("10.255.255.53")


@dataclass
class Net:
    host: IPv4Address = ROUTER
    dns: IPv4Address = DNS
    network: IPv4Network = field(default_factory=lambda: IPv4Network("10.0.2.0/24"))


class FixedResolver:
    def __init__(self, addr=RESOLVER):
        self.addr = addr

    def current(self, now):
        return self.addr


# ---------------------------------------------------------------- resolv.conf

SYSTEMD = """\
# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).
# Do not edit.
nameserver 127.0.0.53
options edns0 trust-ad
search example.com
"""

MIXED = """\
; written by NetworkManager
search lan
nameserver fe80::1%eth0
nameserver 2001:db8::53
nameserver 192.168.1.1   # the box
nameserver\t9.9.9.9;quad9
  nameserver 1.2.3.4
nameservers 5.6.7.8
#nameserver 6.6.6.6
nameserver 8.8.8.8
nameserver 1.1.1.1
options rotate timeout:1
"""


@pytest.mark.parametrize("text,expected", [
    (SYSTEMD, ["127.0.0.53"]),
    # IPv6 skipped; comments after the address; leading blanks, `nameservers`,
    # commented-out lines ignored (as glibc does); at most 3
    (MIXED, ["192.168.1.1", "9.9.9.9", "8.8.8.8"]),
    ("nameserver 10.0.0.1\r\nnameserver 10.0.0.2\n", ["10.0.0.1", "10.0.0.2"]),
    ("domain x\nsearch a b\noptions ndots:2\n", []),
    ("", []),
    ("nameserver\nnameserver \nnameserver 300.1.1.1\nnameserver 01.2.3.4\n", []),
    ("nameserver 10.0.0.1\n" * 5, ["10.0.0.1"] * 3),
    ("nameserver ::1\nnameserver 2001:db8::1\nnameserver 2001:db8::2\nnameserver 10.1.1.1\n",
     ["10.1.1.1"]),
])
def test_parse_resolv_conf(text, expected):
    assert parse_resolv_conf(text) == [A(a) for a in expected]


@given(st.text(max_size=300))
def test_parse_resolv_conf_never_raises(text):
    assert len(parse_resolv_conf(text)) <= 3


class FakeFile:
    """An injectable resolv.conf: stat() and read() are counted."""

    def __init__(self, text):
        self.text, self.version = text, 1
        self.stats = self.reads = 0
        self.missing = False

    def change(self, text):
        self.text, self.version = text, self.version + 1

    def stat(self, path):
        self.stats += 1
        if self.missing:
            raise FileNotFoundError(path)
        return self.version

    def read(self, path):
        self.reads += 1
        if self.missing:
            raise FileNotFoundError(path)
        return self.version, self.text


def test_resolvers_reread_only_on_change_at_most_once_per_recheck():
    f = FakeFile("nameserver 10.0.0.1\n")
    r = Resolvers("/x", recheck=1.0, read=f.read, stat=f.stat)
    assert r.current(100.0) == A("10.0.0.1") and f.reads == 1
    assert r.current(100.5) == A("10.0.0.1") and (f.stats, f.reads) == (0, 1)
    assert r.current(101.0) == A("10.0.0.1") and (f.stats, f.reads) == (1, 1)
    f.change("nameserver 10.0.0.2\n")
    assert r.current(101.5) == A("10.0.0.1")          # not checked yet
    assert r.current(102.0) == A("10.0.0.2") and (f.stats, f.reads) == (2, 2)
    for t in (102.1, 102.2, 102.9):
        r.current(t)
    assert (f.stats, f.reads) == (2, 2)
    assert r.counters["resolv_reads"] == 2


def test_resolvers_with_read_only_parse_on_key_change():
    f = FakeFile("nameserver 10.0.0.1\n")
    r = Resolvers("/x", recheck=1.0, read=f.read)
    r.current(0.0)
    r.current(1.0)
    r.current(2.0)
    assert f.reads == 3 and r.counters["resolv_reads"] == 1
    f.text = "nameserver 10.0.0.9\n"     # the same key: not parsed again
    assert r.current(3.0) == A("10.0.0.1")
    f.change("nameserver 10.0.0.9\n")
    assert r.current(4.0) == A("10.0.0.9")


def test_resolvers_fallback_when_empty_or_unreadable():
    f = FakeFile("search lan\n")
    r = Resolvers("/x", read=f.read, stat=f.stat)
    assert r.current(0.0) == A("127.0.0.1")
    f.change("nameserver 10.0.0.1\n")
    assert r.current(1.0) == A("10.0.0.1")
    f.missing = True
    assert r.current(2.0) == A("127.0.0.1") and r.counters["resolv_errors"] == 1
    f.missing = False
    assert r.current(3.0) == A("10.0.0.1")
    f.missing = True
    assert Resolvers("/x", read=f.read, fallback=None).current(0.0) is None


def test_resolvers_default_read_uses_the_file(tmp_path):
    p = tmp_path / "resolv.conf"
    p.write_text("nameserver 10.9.8.7\n")
    r = Resolvers(str(p), recheck=0.0)
    assert r.current(0.0) == A("10.9.8.7")
    p.write_text("nameserver 10.9.8.6\nnameserver 10.9.8.5\n")
    assert r.current(1.0) == A("10.9.8.6") and r.all(1.0) == [A("10.9.8.6"), A("10.9.8.5")]
    assert Resolvers(str(tmp_path / "none")).current(0.0) == A("127.0.0.1")


# ---------------------------------------------------------------- UDP flows

def flows(**kw):
    return UdpFlows(Net(), FixedResolver(), **kw)


def test_udp_router_goes_to_host_loopback():
    u = flows()
    flow, new = u.outbound(GUEST, 40000, ROUTER, 8080, 0.0)
    assert new and (flow.host_ip, flow.host_port) == (A("127.0.0.1"), 8080)
    assert not flow.dns and not flow.inbound
    assert u.inbound_source(flow) == (ROUTER, 8080)
    assert u.outbound(GUEST, 40000, ROUTER, 8080, 1.0) == (flow, False)
    assert flow.last_used == 1.0 and len(u) == 1


def test_udp_dns_goes_to_the_resolver():
    u = flows()
    flow, new = u.outbound(GUEST, 5353, DNS, 53, 0.0)
    assert new and flow.dns
    assert (flow.host_ip, flow.host_port) == (RESOLVER, 53)
    assert u.inbound_source(flow) == (DNS, 53)
    u2 = UdpFlows(Net(), Resolvers("/x", read=lambda p: (1, "nameserver 127.0.0.53\n")))
    assert u2.outbound(GUEST, 5353, DNS, 53, 0.0)[0].host_ip == A("127.0.0.53")


def test_udp_refusals_are_counted():
    u = flows()
    assert u.outbound(GUEST, 5353, DNS, 5353, 0.0) is None
    assert u.outbound(GUEST, 5353, DNS, 853, 0.0) is None
    assert u.counters["udp_refused_dns_port"] == 2
    for dst in ("255.255.255.255", "10.0.2.255", "10.0.2.0", "224.0.0.251",
                "239.255.255.250", "127.0.0.1", "0.0.0.0", "0.1.2.3", "240.0.0.1"):
        assert u.outbound(GUEST, 5353, A(dst), 9, 0.0) is None, dst
    assert u.counters["udp_refused_dst"] == 9
    assert u.outbound(GUEST, 5353, GUEST2, 9, 0.0) is None
    assert u.counters["udp_refused_local"] == 1
    assert u.outbound(GUEST, 0, PEER, 9, 0.0) is None
    assert u.outbound(GUEST, 9, PEER, 0, 0.0) is None
    assert u.counters["udp_refused_port"] == 2
    assert len(u) == 0
    nores = UdpFlows(Net(), FixedResolver(None))
    assert nores.outbound(GUEST, 5353, DNS, 53, 0.0) is None
    assert nores.counters["udp_no_resolver"] == 1


def test_udp_other_destinations_unchanged():
    u = flows()
    flow, new = u.outbound(GUEST, 1234, PEER, 4321, 0.0)
    assert new and (flow.host_ip, flow.host_port) == (PEER, 4321)
    assert u.inbound_source(flow) == (PEER, 4321)
    other, new = u.outbound(GUEST2, 1234, PEER, 4321, 0.0)   # another guest, another flow
    assert new and other is not flow and u.counters["udp_flows"] == 2


def test_udp_timeouts_dns_10s_others_180s():
    u = flows()
    dns, _ = u.outbound(GUEST, 5353, DNS, 53, 0.0)
    web, _ = u.outbound(GUEST, 1234, PEER, 443, 0.0)
    assert u.next_deadline() == 10.0
    assert u.expire(9.9) == []
    assert u.expire(10.0) == [dns]
    assert u.next_deadline() == 180.0
    u.touch(web, 100.0)                       # a reply from the host
    assert u.expire(180.0) == [] and u.next_deadline() == 280.0
    assert u.expire(280.0) == [web] and u.next_deadline() is None
    assert u.counters["udp_expired"] == 2 and len(u) == 0
    again, new = u.outbound(GUEST, 5353, DNS, 53, 300.0)
    assert new and again is not dns


def test_udp_lru_eviction_at_max_flows():
    u = flows(max_flows=3)
    a, _ = u.outbound(GUEST, 1, PEER, 7, 0.0)
    b, _ = u.outbound(GUEST, 2, PEER, 7, 1.0)
    c, _ = u.outbound(GUEST, 3, DNS, 53, 2.0)
    u.outbound(GUEST, 1, PEER, 7, 3.0)        # a used again: b is the oldest now
    d, new = u.outbound(GUEST, 4, PEER, 7, 4.0)
    assert new and len(u) == 3 and u.counters["udp_evicted"] == 1
    assert u.next_deadline() == 1.0           # an eviction not yet collected
    assert u.evicted() == [b] and u.evicted() == []
    e, _ = u.outbound(GUEST, 5, PEER, 7, 5.0)  # the DNS flow c is the oldest
    assert u.expire(5.0) == [c]               # reported once, by expire() here
    assert u.evicted() == [] and set(u) == {a, d, e}
    assert u.outbound(GUEST, 2, PEER, 7, 6.0)[1]   # b is gone: a new flow


def test_udp_remove_and_identity_hash():
    u = flows()
    f, _ = u.outbound(GUEST, 1, PEER, 7, 0.0)
    g, _ = u.outbound(GUEST, 2, PEER, 7, 0.0)
    sockets = {f: "s1", g: "s2"}
    assert sockets[f] == "s1"
    assert u.remove(f) and not u.remove(f)
    assert u.expire(1000.0) == [g]


def test_udp_forward_from_loopback_appears_from_router():
    u = flows()
    u.forward(5000, GUEST, 6000)
    with pytest.raises(ValueError):
        u.forward(5000, GUEST2, 6000)
    flow, new = u.inbound(5000, A("127.0.0.1"), 33333, 0.0)
    assert new and flow.inbound and flow.forward_port == 5000
    assert (flow.guest_ip, flow.guest_port) == (GUEST, 6000)
    assert u.inbound_source(flow) == (ROUTER, 33333)
    assert (flow.host_ip, flow.host_port) == (A("127.0.0.1"), 33333)
    assert u.inbound(5000, A("127.0.0.1"), 33333, 1.0) == (flow, False)
    # the guest's reply, to router:33333, is on the same flow
    assert u.outbound(GUEST, 6000, ROUTER, 33333, 2.0) == (flow, False)
    # another loopback address with the same port would look the same to the guest
    assert u.inbound(5000, A("127.0.0.2"), 33333, 2.0) is None
    assert u.counters["udp_inbound_conflict"] == 1
    assert u.inbound(5001, A("127.0.0.1"), 1, 2.0) is None
    assert u.counters["udp_no_forward"] == 1
    assert u.expire(181.9) == [] and u.expire(182.0) == [flow]
    assert u.inbound(5000, A("127.0.0.1"), 33333, 200.0)[1]


def test_udp_forward_from_elsewhere_keeps_the_source():
    u = flows()
    u.forward(5000, GUEST, 6000)
    flow, new = u.inbound(5000, PEER, 1111, 0.0)
    assert new and u.inbound_source(flow) == (PEER, 1111)
    assert u.outbound(GUEST, 6000, PEER, 1111, 1.0) == (flow, False)
    inside, _ = u.inbound(5000, A("10.0.2.99"), 1112, 0.0)   # unreachable for the guest
    assert u.inbound_source(inside) == (ROUTER, 1112)
    # an outbound flow holds the key an inbound one would get: refused
    u.outbound(GUEST, 6000, ROUTER, 2222, 0.0)
    assert u.inbound(5000, A("127.0.0.1"), 2222, 0.0) is None


@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 3), st.floats(0, 30)),
                max_size=60))
def test_udp_every_flow_reported_once(ops):
    u = flows(max_flows=4, timeout=20.0, dns_timeout=5.0)
    dsts = [PEER, DNS, ROUTER, A("198.51.100.1")]
    created, reported, now = set(), [], 0.0
    for port, d, dt in ops:
        now += dt
        r = u.outbound(GUEST, port, dsts[d], 53, now)
        if r and r[1]:
            created.add(r[0])
        if port % 2:
            reported += u.evicted()
        else:
            reported += u.expire(now)
            deadline = u.next_deadline()
            assert deadline is None or deadline > now
        assert len(u) <= 4
    reported += u.expire(now + 1000)
    assert len(reported) == len(set(reported)) and set(reported) == created


# ---------------------------------------------------------------- ICMP

def request(ident=0x1234, seq=7, payload=b"abcdefgh" * 7):
    return echo_message(8, ident, seq, payload)


@pytest.mark.parametrize("dst", [ROUTER, DNS])
def test_local_echo_reply(dst):
    payload = bytes(range(56))
    pkt = IP(local_echo_reply(Net(), GUEST, dst, request(0xBEEF, 3, payload)))
    assert (pkt.src, pkt.dst, pkt.ttl, pkt.proto) == (str(dst), str(GUEST), 255, 1)
    icmp = pkt[ICMP]
    assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (0, 0, 0xBEEF, 3)
    assert bytes(icmp.payload) == payload and pkt.len == 20 + 8 + 56
    # scapy recomputes checksums when they are deleted: ours must be the same
    ours = (pkt.chksum, icmp.chksum)
    del pkt.chksum, pkt[ICMP].chksum
    again = IP(bytes(pkt))
    assert (again.chksum, again[ICMP].chksum) == ours


def test_local_echo_reply_odd_length_and_scapy_request():
    req = bytes(ICMP(type=8, id=1, seq=2) / b"xyz")
    pkt = IP(local_echo_reply(Net(), GUEST, ROUTER, req))
    assert bytes(pkt[ICMP].payload) == b"xyz"
    assert internet_checksum(bytes(pkt[ICMP])) == 0
    assert internet_checksum(bytes(pkt)[:20]) == 0


@pytest.mark.parametrize("src,dst,icmp", [
    (GUEST, PEER, request()),                     # not ours to answer
    (GUEST, ROUTER, echo_message(0, 1, 1, b"")),  # a reply, not a request
    (GUEST, ROUTER, request()[:7]),               # truncated
    (GUEST, ROUTER, request()[:2] + b"\0\0" + request()[4:]),   # bad checksum
    (A("255.255.255.255"), ROUTER, request()),
    (A("224.0.0.1"), ROUTER, request()),
])
def test_local_echo_reply_none(src, dst, icmp):
    assert local_echo_reply(Net(), src, dst, icmp) is None


def test_ping_flows_restore_the_guest_id():
    p = PingFlows()
    flow, new = p.outbound(GUEST, 0x4242, PEER, 0.0)
    assert new and p.outbound(GUEST, 0x4242, PEER, 1.0) == (flow, False)
    assert p.outbound(GUEST, 0x4243, PEER, 1.0)[1]
    # what the ping socket read: the kernel's id (its "port"), its checksum
    from_kernel = bytes(ICMP(type=0, id=0x7E31, seq=9) / b"payload!")
    reply = ICMP(p.reply(flow, 9, b"payload!"))
    assert (reply.type, reply.id, reply.seq, bytes(reply.payload)) == (0, 0x4242, 9, b"payload!")
    check = reply.chksum
    del reply.chksum
    assert ICMP(bytes(reply)).chksum == check
    pkt = IP(p.reply_from_host(flow, from_kernel))
    assert (pkt.src, pkt.dst, pkt.ttl) == (str(PEER), str(GUEST), 64)
    assert pkt[ICMP].id == 0x4242 and internet_checksum(bytes(pkt[ICMP])) == 0
    assert p.reply_from_host(flow, bytes(ICMP(type=3, code=3))) is None


def test_ping_flows_timeout_and_eviction():
    p = PingFlows(max_flows=2, timeout=60.0)
    a, _ = p.outbound(GUEST, 1, PEER, 0.0)
    b, _ = p.outbound(GUEST, 2, PEER, 10.0)
    assert p.next_deadline() == 60.0
    p.touch(a, 20.0)
    c, new = p.outbound(GUEST, 3, PEER, 30.0)      # evicts b, the least recently used
    assert new and p.counters["icmp_evicted"] == 1 and p.evicted() == [b]
    assert p.next_deadline() == 80.0
    assert p.expire(79.0) == [] and p.expire(80.0) == [a]
    assert p.expire(90.0) == [c] and p.next_deadline() is None
    assert p.counters["icmp_expired"] == 2
