"""pyvde-slirp's packet layer: our parsers read what scapy builds, scapy reads (and checks
the checksums of) what we build, and nothing a guest sends raises anything but
PacketError."""
from __future__ import annotations

import struct
from ipaddress import IPv4Address as A

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Padding
from scapy.utils import checksum as scapy_checksum

from plugs.slirp.packets import (
    ACK,
    BROADCAST_MAC,
    ETH_ARP,
    ETH_IP,
    FIN,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    PSH,
    RST,
    SYN,
    URG,
    IPv4,
    PacketError,
    build_arp,
    build_icmp,
    build_ipv4,
    build_tcp,
    build_udp,
    checksum,
    ethernet_frame,
    ip_frame,
    parse_arp,
    parse_ethernet,
    parse_icmp,
    parse_ipv4,
    parse_tcp,
    parse_udp,
)

GUEST_MAC = bytes.fromhex("020000000001")
ROUTER_MAC = bytes.fromhex("52550a000202")
GUEST, ROUTER, FAR = A("10.0.2.15"), A("10.0.2.2"), A("93.184.216.34")


def checksums_verified(frame: bytes) -> Ether:
    """scapy's reading of `frame`, after checking each checksum equals the one scapy
    computes itself for the same packet."""
    got = Ether(frame)
    again = got.copy()
    layers = [layer for layer in (IP, TCP, UDP, ICMP) if layer in got]
    for layer in layers:
        del again[layer].chksum
    again = Ether(raw(again))
    for layer in layers:
        assert again[layer].chksum == got[layer].chksum, layer.__name__
    return got


def test_constants():
    assert (ETH_IP, ETH_ARP, PROTO_ICMP, PROTO_TCP, PROTO_UDP) == (0x800, 0x806, 1, 6, 17)
    assert (FIN, SYN, RST, PSH, ACK, URG) == (1, 2, 4, 8, 16, 32)
    assert BROADCAST_MAC == b"\xff" * 6
    assert issubclass(PacketError, ValueError)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x01", b"\x00\x01\xf2\x03\xf4\xf5\xf6\xf7",
                                  b"\xff\xff", b"\xab\xcd\xef", bytes(range(256)) * 7,
                                  b"\x00\x00\x00"])
def test_checksum_is_rfc1071(data):
    assert checksum(data) == scapy_checksum(data)
    # a packet holding its own checksum sums to 0
    assert checksum(data + struct.pack("!H", checksum(data)) if len(data) % 2 == 0 else
                    data + b"\x00" + struct.pack("!H", checksum(data))) == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=9000), st.integers(0, 0xFFFFF))
def test_checksum_short_and_long_paths_agree_with_scapy(data, initial):
    assert checksum(data) == scapy_checksum(data)
    assert checksum(data, initial) == checksum(data + b"\x00" * (len(data) & 1)
                                               + initial.to_bytes(4, "big"))


def test_checksum_initial_is_a_partial_sum():
    data = bytes(range(1, 41))
    assert checksum(data[20:], int.from_bytes(data[:20], "big") % 0xFFFF) == checksum(data)
    assert checksum(b"\x00\x01\xf2\x03\xf4\xf5\xf6\xf7") == 0x220D     # RFC 1071's example


def test_ethernet_round_trip_and_scapy():
    frame = ethernet_frame(BROADCAST_MAC, GUEST_MAC, 0x88B5, b"hello")
    assert len(frame) == 19         # not padded
    e = parse_ethernet(frame)
    assert (e.dst, e.src, e.ethertype, e.payload) == (BROADCAST_MAC, GUEST_MAC, 0x88B5, b"hello")
    s = Ether(frame)
    assert (s.dst, s.src, s.type) == ("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01", 0x88B5)
    e = parse_ethernet(memoryview(raw(Ether(dst="52:55:0a:00:02:02", src=GUEST_MAC,
                                            type=0x0800) / (b"x" * 46))))
    assert e.dst == ROUTER_MAC and e.ethertype == ETH_IP and isinstance(e.payload, bytes)


def test_ethernet_errors():
    with pytest.raises(PacketError, match="truncated Ethernet header"):
        parse_ethernet(b"\x00" * 13)
    tagged = raw(Ether(src=GUEST_MAC) / Dot1Q(vlan=5) / IP(dst="10.0.2.2") / ICMP())
    with pytest.raises(PacketError) as e:
        parse_ethernet(tagged)
    assert str(e.value) == "VLAN-tagged frame"


def test_arp_from_scapy_and_to_scapy():
    req = Ether(dst="ff:ff:ff:ff:ff:ff", src=GUEST_MAC) / ARP(
        op=1, hwsrc=GUEST_MAC, psrc="10.0.2.15", pdst="10.0.2.2")
    padded = raw(req / Padding(b"\x00" * 18))
    e = parse_ethernet(padded)
    assert e.ethertype == ETH_ARP
    a = parse_arp(e.payload)
    assert (a.op, a.sha, a.spa, a.tha, a.tpa) == (1, GUEST_MAC, GUEST, b"\x00" * 6, ROUTER)
    frame = ethernet_frame(GUEST_MAC, ROUTER_MAC, ETH_ARP,
                           build_arp(2, ROUTER_MAC, ROUTER, GUEST_MAC, GUEST))
    s = Ether(frame)
    assert (s[ARP].op, s[ARP].hwsrc, s[ARP].psrc, s[ARP].hwdst, s[ARP].pdst) == (
        2, "52:55:0a:00:02:02", "10.0.2.2", "02:00:00:00:00:01", "10.0.2.15")
    assert parse_arp(build_arp(2, ROUTER_MAC, ROUTER, GUEST_MAC, GUEST)) == parse_arp(raw(s[ARP]))


def test_arp_errors():
    with pytest.raises(PacketError, match="truncated ARP packet"):
        parse_arp(raw(ARP())[:27])
    good = build_arp(1, GUEST_MAC, GUEST, b"\x00" * 6, ROUTER)
    for at, value in ((1, 6), (2, 0x86), (4, 8), (5, 16)):     # htype, ptype, hlen, plen
        with pytest.raises(PacketError, match="not an Ethernet/IPv4 ARP packet"):
            parse_arp(good[:at] + bytes([value]) + good[at + 1:])


def test_ipv4_from_scapy_options_skipped_padding_trimmed():
    pkt = IP(src="10.0.2.15", dst="93.184.216.34", ttl=17, id=4242, tos=0x10,
             options=b"\x01\x01\x01\x00") / UDP(sport=5000, dport=53) / b"q"
    data = raw(pkt) + b"\x00" * 9
    ip = parse_ipv4(data)
    assert (ip.src, ip.dst, ip.proto, ip.ttl, ip.ident, ip.tos) == (
        GUEST, FAR, PROTO_UDP, 17, 4242, 0x10)
    assert ip.payload == raw(pkt[UDP])
    u = parse_udp(ip)
    assert (u.sport, u.dport, u.payload) == (5000, 53, b"q")


def test_ipv4_built_is_read_by_scapy():
    data = build_ipv4(ROUTER, GUEST, PROTO_UDP, b"abc", ttl=9, ident=7, tos=0x10)
    frame = ip_frame(GUEST_MAC, ROUTER_MAC, data)
    s = checksums_verified(frame)
    assert (s[IP].ihl, s[IP].len, s[IP].flags, s[IP].frag, s[IP].ttl, s[IP].id, s[IP].tos) == (
        5, 23, "DF", 0, 9, 7, 0x10)
    assert (s[IP].src, s[IP].dst, s[IP].proto) == ("10.0.2.2", "10.0.2.15", 17)
    assert parse_ipv4(data) == IPv4(ROUTER, GUEST, PROTO_UDP, 9, 7, 0x10, b"abc")
    with pytest.raises(ValueError):
        build_ipv4(ROUTER, GUEST, PROTO_UDP, bytes(65516))


@pytest.mark.parametrize("mangle,reason", [
    (lambda d: d[:19], "truncated IPv4 header"),
    (lambda d: b"\x65" + d[1:], "not IPv4"),
    (lambda d: b"\x44" + d[1:], "bad IPv4 header length"),
    (lambda d: b"\x4f" + d[1:], "truncated IPv4 header"),
    (lambda d: d[:-1], "truncated IPv4 packet"),
    (lambda d: d[:10] + bytes([d[10] ^ 1]) + d[11:], "bad IPv4 checksum"),
])
def test_ipv4_errors(mangle, reason):
    data = raw(IP(src="10.0.2.15", dst="10.0.2.2") / ICMP() / b"12345678")
    with pytest.raises(PacketError) as e:
        parse_ipv4(mangle(data))
    assert str(e.value) == reason


def test_ipv4_total_length_below_the_header():
    data = raw(IP(src="10.0.2.15", dst="10.0.2.2", len=19) / ICMP())
    with pytest.raises(PacketError, match="bad IPv4 total length"):
        parse_ipv4(data)


@pytest.mark.parametrize("fields", [{"flags": "MF"}, {"frag": 100},
                                    {"flags": "MF", "frag": 3}])
def test_ipv4_fragments_are_refused(fields):
    data = raw(IP(src="10.0.2.15", dst="10.0.2.2", **fields) / (b"x" * 8))
    with pytest.raises(PacketError) as e:
        parse_ipv4(data)
    assert str(e.value) == "IPv4 fragment"
    parse_ipv4(raw(IP(src="10.0.2.15", dst="10.0.2.2", flags="DF") / (b"x" * 8)))


def _ip(pkt) -> IPv4:
    return parse_ipv4(raw(pkt))


def test_udp_from_scapy_and_to_scapy():
    u = parse_udp(_ip(IP(src="10.0.2.15", dst="10.0.2.3") / UDP(sport=33000, dport=53) / b"dns?"))
    assert (u.sport, u.dport, u.payload) == (33000, 53, b"dns?")
    # checksum 0: not computed by the sender, accepted
    u = parse_udp(_ip(IP(src="10.0.2.15", dst="10.0.2.3") / UDP(sport=1, dport=2, chksum=0) / b"x"))
    assert u.payload == b"x"
    for payload in (b"", b"odd", b"even", bytes(1472)):
        udp = build_udp(ROUTER, GUEST, 53, 33000, payload)
        frame = ip_frame(GUEST_MAC, ROUTER_MAC, build_ipv4(ROUTER, GUEST, PROTO_UDP, udp))
        s = checksums_verified(frame)
        assert (s[UDP].sport, s[UDP].dport, s[UDP].len, bytes(s[UDP].payload)) == (
            53, 33000, 8 + len(payload), payload)
        ip = parse_ipv4(parse_ethernet(frame).payload)
        assert parse_udp(ip).payload == payload


def test_udp_checksum_zero_is_sent_as_ffff():
    c = struct.unpack("!H", build_udp(ROUTER, GUEST, 1, 2, b"\x00\x00")[6:8])[0]
    udp = build_udp(ROUTER, GUEST, 1, 2, struct.pack("!H", c))
    assert udp[6:8] == b"\xff\xff"
    ip = parse_ipv4(build_ipv4(ROUTER, GUEST, PROTO_UDP, udp))
    assert parse_udp(ip).payload == struct.pack("!H", c)
    checksums_verified(ip_frame(GUEST_MAC, ROUTER_MAC, build_ipv4(ROUTER, GUEST, PROTO_UDP, udp)))


def test_udp_errors():
    good = IP(src="10.0.2.15", dst="10.0.2.3") / UDP(sport=1, dport=2) / b"abcd"
    with pytest.raises(PacketError, match="bad UDP checksum"):
        parse_udp(_ip(IP(src="10.0.2.15", dst="10.0.2.3") / UDP(sport=1, dport=2, chksum=1)
                      / b"abcd"))
    with pytest.raises(PacketError, match="bad UDP length"):
        parse_udp(_ip(IP(src="10.0.2.15", dst="10.0.2.3") / UDP(sport=1, dport=2, len=13)
                      / b"abcd"))
    with pytest.raises(PacketError, match="bad UDP length"):
        parse_udp(_ip(IP(src="10.0.2.15", dst="10.0.2.3") / UDP(sport=1, dport=2, len=7)
                      / b"abcd"))
    with pytest.raises(PacketError, match="truncated UDP header"):
        parse_udp(_ip(IP(src="10.0.2.15", dst="10.0.2.3", proto=17) / b"abcd"))
    with pytest.raises(PacketError, match="not UDP"):
        parse_udp(_ip(IP(src="10.0.2.15", dst="10.0.2.3") / TCP()))
    # a UDP length shorter than the IP payload: the rest is not data
    short = IP(src="10.0.2.15", dst="10.0.2.3") / UDP(sport=1, dport=2, len=10, chksum=0) / b"abcd"
    assert parse_udp(_ip(short)).payload == b"ab"
    assert parse_udp(_ip(good)).payload == b"abcd"


def test_tcp_from_scapy_with_options():
    pkt = IP(src="10.0.2.15", dst="93.184.216.34") / TCP(
        sport=40000, dport=80, seq=1000, ack=0, flags="S", window=64240,
        options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None),
                 ("WScale", 7)]) / b"early"
    t = parse_tcp(_ip(pkt))
    assert (t.sport, t.dport, t.seq, t.ack, t.flags, t.window, t.payload, t.mss, t.wscale) == (
        40000, 80, 1000, 0, SYN, 64240, b"early", 1460, 7)
    t = parse_tcp(_ip(IP(src="10.0.2.15", dst="1.1.1.1") / TCP(flags="PA", seq=2**32 - 1,
                                                               ack=5) / b"data"))
    assert (t.flags, t.seq, t.ack, t.mss, t.wscale) == (PSH | ACK, 2**32 - 1, 5, None, None)
    t = parse_tcp(_ip(IP(src="10.0.2.15", dst="1.1.1.1") / TCP(options=[("WScale", 15)])))
    assert t.wscale == 14           # RFC 7323 §2.3
    t = parse_tcp(_ip(IP(src="10.0.2.15", dst="1.1.1.1") / TCP(
        options=[("EOL", None), ("MSS", 1)]) / b"z"))
    assert t.mss is None and t.payload == b"z"      # nothing is read after EOL


@pytest.mark.parametrize("payload", [b"", b"x", b"even", bytes(range(256)) * 5])
@pytest.mark.parametrize("mss,wscale", [(None, None), (1460, None), (None, 7), (65480, 14)])
def test_tcp_built_is_read_by_scapy(payload, mss, wscale):
    seg = build_tcp(FAR, GUEST, 80, 40000, 123456789, 1001, SYN | ACK, 65535, payload,
                    mss=mss, wscale=wscale)
    frame = ip_frame(GUEST_MAC, ROUTER_MAC, build_ipv4(FAR, GUEST, PROTO_TCP, seg))
    s = checksums_verified(frame)
    assert (s[TCP].sport, s[TCP].dport, s[TCP].seq, s[TCP].ack, int(s[TCP].flags),
            s[TCP].window) == (80, 40000, 123456789, 1001, SYN | ACK, 65535)
    assert bytes(s[TCP].payload) == payload
    opts = {k: v for k, v in s[TCP].options if k != "NOP"}
    assert opts.get("MSS") == mss and opts.get("WScale") == wscale
    if mss is None and wscale is None:
        assert s[TCP].dataofs == 5
    t = parse_tcp(parse_ipv4(parse_ethernet(frame).payload))
    assert (t.payload, t.mss, t.wscale, t.seq, t.ack) == (payload, mss, wscale, 123456789, 1001)


@pytest.mark.parametrize("options,reason", [
    (b"\x01\x02\x04\x05", "bad TCP options"),           # MSS cut by the header's end
    (b"\x05\x00\x00\x00", "bad TCP options"),           # length 0
    (b"\x05\x01\x00\x00", "bad TCP options"),           # length 1
    (b"\x08\x0a\x00\x00", "bad TCP options"),           # longer than the option space
    (b"\x01\x01\x01\x08", "bad TCP options"),           # kind without a length byte
    (b"\x02\x03\x05\x00", "bad TCP MSS option"),
    (b"\x03\x04\x07\x00", "bad TCP window scale option"),
])
def test_tcp_bad_options(options, reason):
    head = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, (20 + len(options)) << 2, SYN, 100, 0, 0)
    seg = head + options
    c = checksum(seg, _pseudo_sum(GUEST, FAR, PROTO_TCP, len(seg)))
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    with pytest.raises(PacketError) as e:
        parse_tcp(IPv4(GUEST, FAR, PROTO_TCP, 64, 0, 0, seg))
    assert str(e.value) == reason


def _pseudo_sum(src, dst, proto, length):
    return sum(struct.unpack("!6H", src.packed + dst.packed + struct.pack("!HH", proto, length)))


def test_tcp_errors():
    good = raw(IP(src="10.0.2.15", dst="1.1.1.1") / TCP() / b"abc")
    with pytest.raises(PacketError, match="bad TCP checksum"):
        parse_tcp(parse_ipv4(good[:-1] + bytes([good[-1] ^ 0x40])))
    with pytest.raises(PacketError, match="truncated TCP header"):
        parse_tcp(_ip(IP(src="10.0.2.15", dst="1.1.1.1", proto=6) / (b"x" * 19)))
    with pytest.raises(PacketError, match="bad TCP data offset"):
        parse_tcp(_ip(IP(src="10.0.2.15", dst="1.1.1.1") / TCP(dataofs=4)))
    with pytest.raises(PacketError, match="bad TCP data offset"):
        parse_tcp(_ip(IP(src="10.0.2.15", dst="1.1.1.1") / TCP(dataofs=15) / b"abc"))
    with pytest.raises(PacketError, match="not TCP"):
        parse_tcp(_ip(IP(src="10.0.2.15", dst="1.1.1.1") / UDP()))
    # the pseudo-header counts: the same segment between other addresses is corrupt
    seg = parse_ipv4(good).payload
    with pytest.raises(PacketError, match="bad TCP checksum"):
        parse_tcp(IPv4(GUEST, A("1.1.1.2"), PROTO_TCP, 64, 0, 0, seg))


def test_icmp_from_scapy_and_to_scapy():
    i = parse_icmp(_ip(IP(src="10.0.2.15", dst="10.0.2.2") / ICMP(type=8, id=77, seq=3)
                       / b"ping!"))
    assert (i.type, i.code, i.ident, i.seq, i.payload) == (8, 0, 77, 3, b"ping!")
    for payload in (b"", b"ping!", bytes(56)):
        frame = ip_frame(GUEST_MAC, ROUTER_MAC, build_ipv4(
            ROUTER, GUEST, PROTO_ICMP, build_icmp(0, 0, 77, 3, payload)))
        s = checksums_verified(frame)
        assert (s[ICMP].type, s[ICMP].code, s[ICMP].id, s[ICMP].seq) == (0, 0, 77, 3)
        assert bytes(s[ICMP].payload) == payload
    unreach = build_icmp(3, 3, 0, 1500, b"orig")
    assert parse_icmp(IPv4(ROUTER, GUEST, PROTO_ICMP, 64, 0, 0, unreach)).seq == 1500


def test_icmp_errors():
    with pytest.raises(PacketError, match="bad ICMP checksum"):
        parse_icmp(_ip(IP(src="10.0.2.15", dst="10.0.2.2") / ICMP(chksum=5) / b"x"))
    with pytest.raises(PacketError, match="truncated ICMP header"):
        parse_icmp(_ip(IP(src="10.0.2.15", dst="10.0.2.2", proto=1) / b"1234567"))
    with pytest.raises(PacketError, match="not ICMP"):
        parse_icmp(_ip(IP(src="10.0.2.15", dst="10.0.2.2") / UDP()))


# --- nothing a guest sends raises anything but PacketError ------------------------------

def parse_all(frame: bytes) -> None:
    e = parse_ethernet(frame)
    if e.ethertype == ETH_ARP:
        parse_arp(e.payload)
    elif e.ethertype == ETH_IP:
        ip = parse_ipv4(e.payload)
        if ip.proto == PROTO_TCP:
            parse_tcp(ip)
        elif ip.proto == PROTO_UDP:
            parse_udp(ip)
        elif ip.proto == PROTO_ICMP:
            parse_icmp(ip)


def _fuzz(frame: bytes) -> None:
    try:
        parse_all(frame)
    except PacketError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_random_frames(data):
    _fuzz(data)
    _fuzz(b"\x52\x55\x0a\x00\x02\x02" + GUEST_MAC + b"\x08\x00" + data)
    _fuzz(b"\x52\x55\x0a\x00\x02\x02" + GUEST_MAC + b"\x08\x06" + data)


def _with_ip_checksum(header: bytes) -> bytes:
    header = header[:10] + b"\x00\x00" + header[12:]
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:]


@settings(max_examples=400, deadline=None)
@given(proto=st.sampled_from([PROTO_TCP, PROTO_UDP, PROTO_ICMP, 0, 255]),
       ihl=st.integers(0, 15), total_delta=st.integers(-25, 5), frag=st.integers(0, 0xFFFF),
       options=st.binary(min_size=40, max_size=40), l4=st.binary(max_size=80),
       fix_l4=st.booleans())
def test_fuzz_valid_ip_headers_random_transport(proto, ihl, total_delta, frag, options, l4,
                                                 fix_l4):
    """Past the IP checksum, with or without a valid transport checksum, so that the
    option and length parsing of TCP/UDP/ICMP is reached."""
    if fix_l4:
        if proto == PROTO_TCP and len(l4) >= 18:
            l4 = l4[:16] + b"\x00\x00" + l4[18:]
            l4 = l4[:16] + struct.pack("!H", checksum(l4, _pseudo_sum(
                GUEST, FAR, proto, len(l4)))) + l4[18:]
        elif proto == PROTO_UDP and len(l4) >= 8:
            l4 = l4[:4] + struct.pack("!H", len(l4)) + b"\x00\x00" + l4[8:]
            l4 = l4[:6] + struct.pack("!H", checksum(l4, _pseudo_sum(
                GUEST, FAR, proto, len(l4)))) + l4[8:]
        elif proto == PROTO_ICMP and len(l4) >= 4:
            l4 = l4[:2] + b"\x00\x00" + l4[4:]
            l4 = l4[:2] + struct.pack("!H", checksum(l4)) + l4[4:]
    hl = max(ihl, 5) * 4
    total = max(0, hl + len(l4) + total_delta)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 0, frag & 0x4000 if
                         frag & 1 else frag, 64, proto, 0, GUEST.packed, FAR.packed)
    header = _with_ip_checksum(header + options[:hl - 20])
    _fuzz(ROUTER_MAC + GUEST_MAC + b"\x08\x00" + header + l4)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(min_size=1, max_size=5000), mss=st.integers(1, 1460),
       seq=st.integers(0, 0xFFFFFFFF), fin=st.booleans())
def test_the_c_builder_makes_the_frames_python_makes(payload, mss, seq, fin):
    """pyvde-slirp sends runs of TCP data segments built in C (cffi_build/slirp_fast.c):
    byte for byte what build_ipv4/build_tcp make, segment by segment."""
    from plugs._slirp import ffi, lib
    src, dst = A("10.0.2.2"), A("10.0.2.15")
    eth = bytes.fromhex("525400123456") + bytes.fromhex("52550a000202") + b"\x08\x00"
    count = -(-len(payload) // mss)
    out = ffi.new("uint8_t[]", count * 54 + len(payload))
    lens = ffi.new("uint32_t[]", count)
    k = lib.slirp_build_tcp_run(eth, src.packed, dst.packed, 80, 40000, seq, 12345, 501,
                                payload, len(payload), mss, fin, out, count * 54 + len(payload),
                                lens, count)
    assert k == count
    frames, off, buf = [], 0, ffi.buffer(out)
    for i in range(k):
        frames.append(buf[off:off + lens[i]])
        off += lens[i]
    for i, frame in enumerate(frames):
        chunk = payload[i * mss:(i + 1) * mss]
        last = i == count - 1
        flags = ACK | (PSH | (FIN if fin else 0) if last else 0)
        tcp = build_tcp(src, dst, 80, 40000, (seq + i * mss) & 0xFFFFFFFF, 12345, flags, 501,
                        chunk)
        assert frame == eth + build_ipv4(src, dst, PROTO_TCP, tcp)
