"""pyvde-slirp's DHCP server: requests built by scapy, replies read by scapy (and checked
the way busybox udhcpc checks them), leases, the pool, expiry, and malformed input."""
from __future__ import annotations

import struct
from ipaddress import IPv4Address as A

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from plugs.slirp.dhcp import (
    ACK,
    NAK,
    OFFER,
    DhcpServer,
    parse_dhcp,
)
from plugs.slirp.net import Network
from plugs.slirp.packets import PacketError, parse_ethernet, parse_ipv4, parse_udp

DAY = 86400
NET = Network.from_text()


def mac(n: int) -> bytes:
    return bytes([2, 0, 0, 0, 1, n])


def request(client: bytes, kind: str | None, xid: int = 0x1234, ciaddr: str = "0.0.0.0",
            flags: int = 0, options: list | None = None) -> bytes:
    """A client's UDP payload to port 67, as scapy builds it (udhcpc's options)."""
    opts = [("message-type", kind)] if kind else []
    opts += options or []
    opts += [("param_req_list", [1, 3, 6, 12, 15, 28, 42]), ("client_id", b"\x01" + client),
             "end"]
    return raw(BOOTP(op=1, xid=xid, ciaddr=ciaddr, flags=flags, chaddr=client)
               / DHCP(options=opts))


def options(frame: bytes) -> dict:
    return {o[0]: o[1] for o in Ether(frame)[DHCP].options if isinstance(o, tuple)}


def as_udhcpc_sees_it(frame: bytes, client: bytes, xid: int = 0x1234) -> Ether:
    """What busybox udhcpc checks in raw mode (research §1.4), plus scapy's checksums."""
    s = Ether(frame)
    assert s.dst == ":".join(f"{b:02x}" for b in client)       # chaddr, as slirpvde
    assert s.src == "52:55:0a:00:02:02"
    assert s[IP].ihl == 5 and s[IP].proto == 17 and s[IP].ttl == 64
    assert (s[IP].src, s[IP].dst) == ("10.0.2.2", "255.255.255.255")
    assert (s[UDP].sport, s[UDP].dport) == (67, 68)
    assert s[UDP].len == s[IP].len - 20 == len(frame) - 34
    again = s.copy()
    del again[IP].chksum
    del again[UDP].chksum
    again = Ether(raw(again))
    assert again[IP].chksum == s[IP].chksum and again[UDP].chksum == s[UDP].chksum
    assert s[UDP].chksum != 0
    b = s[BOOTP]
    assert (b.op, b.htype, b.hlen, b.xid) == (2, 1, 6, xid)
    assert b.chaddr[:6] == client and b.options == b"\x63\x82\x53\x63"
    assert len(raw(b)) >= 300
    assert isinstance(s[DHCP].options[0], tuple) and s[DHCP].options[0][0] == "message-type"
    return s


def dora(srv: DhcpServer, client: bytes, now: float = 0.0, requested: str | None = None,
         xid: int = 0x1234) -> A:
    extra = [("requested_addr", requested)] if requested else []
    [offer] = srv.handle(client, request(client, "discover", xid, options=extra), now)
    offered = Ether(offer)[BOOTP].yiaddr
    [ack] = srv.handle(client, request(client, "request", xid, options=[
        ("requested_addr", offered), ("server_id", "10.0.2.2")]), now)
    assert options(ack)["message-type"] == ACK
    return A(Ether(ack)[BOOTP].yiaddr)


def test_dora_gives_10_0_2_15_with_every_option():
    srv = DhcpServer(NET)
    client = mac(1)
    [offer] = srv.handle(client, request(client, "discover", flags=0x8000), 10.0)
    s = as_udhcpc_sees_it(offer, client)
    assert s[BOOTP].yiaddr == "10.0.2.15" and s[BOOTP].siaddr == "10.0.2.2"
    assert s[BOOTP].ciaddr == "0.0.0.0" and s[BOOTP].flags == 0x8000     # copied (RFC 2131)
    assert s[IP].tos == 0x10
    o = options(offer)
    assert o == {"message-type": OFFER, "server_id": "10.0.2.2", "lease_time": DAY,
                 "renewal_time": DAY // 2, "rebinding_time": DAY * 7 // 8,
                 "subnet_mask": "255.255.255.0", "router": "10.0.2.2",
                 "name_server": "10.0.2.3", "interface-mtu": 1500,
                 "broadcast_address": "10.0.2.255"}
    assert [o[0] for o in s[DHCP].options if isinstance(o, tuple)][:2] == [
        "message-type", "server_id"]
    assert srv.leases(10.0) == []           # offered, not yet leased

    [ack] = srv.handle(client, request(client, "request", options=[
        ("requested_addr", "10.0.2.15"), ("server_id", "10.0.2.2")]), 11.0)
    s = as_udhcpc_sees_it(ack, client)
    assert s[BOOTP].yiaddr == "10.0.2.15"
    assert options(ack) == dict(o, **{"message-type": ACK})
    assert srv.leases(11.0) == [(client, A("10.0.2.15"), 11.0 + DAY)]

    # our own parser reads the reply as well
    ip = parse_ipv4(parse_ethernet(ack).payload)
    m = parse_dhcp(parse_udp(ip).payload)
    assert (m.op, m.type, m.yiaddr, m.mac, m.xid) == (2, ACK, A("10.0.2.15"), client, 0x1234)
    assert m.address(54) == A("10.0.2.2") and m.options[26] == b"\x05\xdc"


def test_settings_reach_the_options():
    net = Network.from_text("192.168.50.0/24", dns="192.168.50.53", dhcp_start="192.168.50.100",
                            mtu=9000)
    srv = DhcpServer(net, lease_time=600, pool_size=4)
    client = mac(1)
    [offer] = srv.handle(client, request(client, "discover"), 0.0)
    s = Ether(offer)
    assert s[BOOTP].yiaddr == "192.168.50.100" and s[IP].src == "192.168.50.2"
    o = options(offer)
    assert (o["lease_time"], o["renewal_time"], o["rebinding_time"]) == (600, 300, 525)
    assert (o["interface-mtu"], o["name_server"], o["router"], o["server_id"]) == (
        9000, "192.168.50.53", "192.168.50.2", "192.168.50.2")
    assert srv.pool == [A(f"192.168.50.{i}") for i in range(100, 104)]


def test_the_pool_skips_the_router_dns_and_broadcast_addresses():
    net = Network.from_text("10.0.0.2/28", dns="10.0.0.4", dhcp_start="10.0.0.1")
    assert DhcpServer(net, pool_size=16).pool == [
        A("10.0.0.1"), A("10.0.0.3")] + [A(f"10.0.0.{i}") for i in range(5, 15)]


def test_sixteen_clients_fill_the_pool_the_seventeenth_gets_nothing():
    srv = DhcpServer(NET)
    got = [dora(srv, mac(i), now=float(i)) for i in range(16)]
    assert got == [A(f"10.0.2.{15 + i}") for i in range(16)]
    assert len(srv.leases(20.0)) == 16
    assert srv.handle(mac(99), request(mac(99), "discover"), 20.0) == []
    assert srv.counts["DHCP pool exhausted"] == 1
    # a client already holding a lease still gets its address
    [offer] = srv.handle(mac(3), request(mac(3), "discover"), 21.0)
    assert Ether(offer)[BOOTP].yiaddr == "10.0.2.18"


def test_offers_reserve_addresses_for_a_while():
    srv = DhcpServer(NET, offer_time=60.0)
    [a] = srv.handle(mac(1), request(mac(1), "discover"), 0.0)
    [b] = srv.handle(mac(2), request(mac(2), "discover"), 0.0)
    assert (Ether(a)[BOOTP].yiaddr, Ether(b)[BOOTP].yiaddr) == ("10.0.2.15", "10.0.2.16")
    [a2] = srv.handle(mac(1), request(mac(1), "discover"), 1.0)     # the same again
    assert Ether(a2)[BOOTP].yiaddr == "10.0.2.15"
    # an offer never taken up lapses; the address goes to whoever asks for it
    [c] = srv.handle(mac(3), request(mac(3), "request", options=[
        ("requested_addr", "10.0.2.15")]), 61.0)
    assert options(c)["message-type"] == ACK


def test_discover_honours_the_requested_address_when_it_can():
    srv = DhcpServer(NET)
    assert dora(srv, mac(1), requested="10.0.2.20") == A("10.0.2.20")
    extra = [("requested_addr", "10.0.2.20")]
    [offer] = srv.handle(mac(2), request(mac(2), "discover", options=extra), 1.0)
    assert Ether(offer)[BOOTP].yiaddr == "10.0.2.15"        # .20 is mac(1)'s
    for outside in ("10.0.2.100", "10.0.2.2", "192.168.1.5"):
        [offer] = srv.handle(mac(3), request(mac(3), "discover", options=[
            ("requested_addr", outside)]), 2.0)
        assert Ether(offer)[BOOTP].yiaddr == "10.0.2.16"
    # asking for another free address moves the client (its old one is freed)
    assert dora(srv, mac(1), now=3.0, requested="10.0.2.25") == A("10.0.2.25")
    assert [ip for _, ip, _ in srv.leases(3.0)] == [A("10.0.2.25")]


def test_renew_with_ciaddr_gets_a_new_expiry():
    srv = DhcpServer(NET)
    client = mac(1)
    dora(srv, client, now=100.0)
    assert srv.leases(100.0) == [(client, A("10.0.2.15"), 100.0 + DAY)]
    renew_at = 100.0 + DAY / 2
    [ack] = srv.handle(client, request(client, "request", xid=7, ciaddr="10.0.2.15"),
                       renew_at)
    s = as_udhcpc_sees_it(ack, client, xid=7)
    assert s[BOOTP].yiaddr == "10.0.2.15" and s[BOOTP].ciaddr == "10.0.2.15"
    assert options(ack)["message-type"] == ACK and options(ack)["lease_time"] == DAY
    assert srv.leases(renew_at) == [(client, A("10.0.2.15"), renew_at + DAY)]
    # init-reboot (option 50, no server id) for its own address: ACK too
    [ack] = srv.handle(client, request(client, "request", options=[
        ("requested_addr", "10.0.2.15")]), renew_at + 1)
    assert options(ack)["message-type"] == ACK


def test_release_frees_the_address_for_another_mac():
    srv = DhcpServer(NET)
    dora(srv, mac(1))
    assert srv.handle(mac(1), request(mac(1), "release", ciaddr="10.0.2.15", options=[
        ("server_id", "10.0.2.2")]), 5.0) == []
    assert srv.leases(5.0) == []
    assert dora(srv, mac(2), now=6.0) == A("10.0.2.15")
    # a release for an address the client does not hold changes nothing
    assert srv.handle(mac(3), request(mac(3), "release", ciaddr="10.0.2.15"), 7.0) == []
    assert srv.leases(7.0) == [(mac(2), A("10.0.2.15"), 6.0 + DAY)]
    assert srv.counts["DHCP release of an address the client does not hold"] == 1


def test_nak_for_an_address_owned_by_another_mac():
    srv = DhcpServer(NET)
    dora(srv, mac(1))
    for opts, ciaddr in (([("requested_addr", "10.0.2.15")], "0.0.0.0"),
                         ([("requested_addr", "10.0.2.15"), ("server_id", "10.0.2.2")],
                          "0.0.0.0"),
                         ([], "10.0.2.15")):
        [nak] = srv.handle(mac(2), request(mac(2), "request", options=opts, ciaddr=ciaddr), 1.0)
        s = as_udhcpc_sees_it(nak, mac(2))
        assert s[BOOTP].yiaddr == "0.0.0.0"
        o = options(nak)
        assert o["message-type"] == NAK and o["server_id"] == "10.0.2.2"
        assert o["error_message"] == b"requested address not available"
        assert "lease_time" not in o
    # outside the pool, and no address at all from an unknown client: NAK
    for opts in ([("requested_addr", "10.0.2.99")], []):
        [nak] = srv.handle(mac(3), request(mac(3), "request", options=opts), 1.0)
        assert options(nak)["message-type"] == NAK
    assert srv.leases(1.0) == [(mac(1), A("10.0.2.15"), DAY)]


def test_request_for_another_server_is_not_answered_and_frees_the_offer():
    srv = DhcpServer(NET)
    srv.handle(mac(1), request(mac(1), "discover"), 0.0)
    assert srv.handle(mac(1), request(mac(1), "request", options=[
        ("requested_addr", "10.0.2.15"), ("server_id", "10.0.2.99")]), 0.5) == []
    assert srv.counts["DHCP request for another server"] == 1
    [offer] = srv.handle(mac(2), request(mac(2), "discover"), 1.0)
    assert Ether(offer)[BOOTP].yiaddr == "10.0.2.15"


def test_expiry_lets_another_mac_take_it():
    srv = DhcpServer(NET, lease_time=3600)
    dora(srv, mac(1), now=0.0)
    [nak] = srv.handle(mac(2), request(mac(2), "request", options=[
        ("requested_addr", "10.0.2.15")]), 3599.0)
    assert options(nak)["message-type"] == NAK
    assert srv.leases(3599.9) != [] and srv.leases(3600.0) == []
    [ack] = srv.handle(mac(2), request(mac(2), "request", options=[
        ("requested_addr", "10.0.2.15")]), 3600.0)
    assert options(ack)["message-type"] == ACK
    assert srv.leases(3600.0) == [(mac(2), A("10.0.2.15"), 7200.0)]
    # mac(1) renewing too late is told no
    [nak] = srv.handle(mac(1), request(mac(1), "request", ciaddr="10.0.2.15"), 3601.0)
    assert options(nak)["message-type"] == NAK


def test_expired_addresses_stay_with_their_client_until_needed():
    srv = DhcpServer(NET, lease_time=100, pool_size=2)
    assert dora(srv, mac(1), now=0.0) == A("10.0.2.15")
    assert dora(srv, mac(2), now=10.0) == A("10.0.2.16")
    # both expired: mac(2) comes back and gets its own address, not the first free one
    assert dora(srv, mac(2), now=500.0) == A("10.0.2.16")
    # a new client gets the one expired longest ago
    assert dora(srv, mac(3), now=501.0) == A("10.0.2.15")
    assert srv.handle(mac(1), request(mac(1), "discover"), 502.0) == []


def test_decline_blocks_the_address():
    srv = DhcpServer(NET, lease_time=1000)
    dora(srv, mac(1))
    assert srv.handle(mac(1), request(mac(1), "decline", options=[
        ("requested_addr", "10.0.2.15"), ("server_id", "10.0.2.2")]), 1.0) == []
    assert srv.leases(1.0) == []
    assert srv.counts["DHCP address declined"] == 1
    assert dora(srv, mac(1), now=2.0) == A("10.0.2.16")
    assert dora(srv, mac(2), now=3.0, requested="10.0.2.15") == A("10.0.2.17")
    [nak] = srv.handle(mac(3), request(mac(3), "request", options=[
        ("requested_addr", "10.0.2.15")]), 4.0)
    assert options(nak)["message-type"] == NAK
    assert dora(srv, mac(3), now=1001.0, requested="10.0.2.15") == A("10.0.2.15")


def test_inform_gets_an_ack_without_address_or_lease():
    srv = DhcpServer(NET)
    [ack] = srv.handle(mac(1), request(mac(1), "inform", ciaddr="10.0.2.77"), 0.0)
    s = as_udhcpc_sees_it(ack, mac(1))
    assert s[BOOTP].yiaddr == "0.0.0.0" and s[BOOTP].ciaddr == "10.0.2.77"
    o = options(ack)
    assert o["message-type"] == ACK and o["router"] == "10.0.2.2"
    assert o["name_server"] == "10.0.2.3" and o["subnet_mask"] == "255.255.255.0"
    assert not {"lease_time", "renewal_time", "rebinding_time"} & o.keys()
    assert srv.leases(0.0) == []


def test_what_is_not_answered_is_counted():
    srv = DhcpServer(NET)
    assert srv.handle(mac(1), request(mac(1), None), 0.0) == []             # plain BOOTP
    assert srv.handle(mac(1), request(mac(1), "offer"), 0.0) == []          # a rogue server
    assert srv.counts["BOOTP request ignored"] == 1
    assert srv.counts["DHCP message type 2 ignored"] == 1
    # chaddr is what counts; a different Ethernet source is only noted
    [offer] = srv.handle(mac(2), request(mac(1), "discover"), 0.0)
    assert Ether(offer).dst == "02:00:00:00:01:01"
    assert srv.counts["chaddr is not the Ethernet source"] == 1


def _bootp(**fields) -> bytes:
    return raw(BOOTP(**{"op": 1, "chaddr": mac(1), **fields})
               / DHCP(options=[("message-type", "discover"), "end"]))


@pytest.mark.parametrize("payload,reason", [
    (_bootp()[:239], "truncated DHCP message"),
    (b"", "truncated DHCP message"),
    (_bootp(op=2), "not a BOOTREQUEST"),
    (_bootp(op=3), "bad BOOTP op"),
    (_bootp(htype=6), "not an Ethernet DHCP message"),
    (_bootp(hlen=16), "not an Ethernet DHCP message"),
    (_bootp(options=b"\x63\x82\x53\x64") + b"\x35\x01\x01\xff", "no DHCP magic cookie"),
    (raw(BOOTP(op=1, chaddr=mac(1))) + bytes(64), "no DHCP magic cookie"),    # plain BOOTP
    (_bootp()[:240] + b"\x35\x01\x01\x32\x04\x0a\x00", "bad DHCP options"),
    (_bootp()[:240] + b"\x35", "bad DHCP options"),
    (_bootp()[:240] + b"\x35\x02\x01\x01\xff", "bad DHCP option 53"),
    (_bootp()[:240] + b"\x35\x01\x01\x32\x03\x0a\x00\x02\xff", "bad DHCP option 50"),
    (_bootp()[:240] + b"\x35\x01\x01\x36\x05\x0a\x00\x02\x02\x00\xff", "bad DHCP option 54"),
    (_bootp(chaddr=b"\xff" * 6), "bad DHCP client hardware address"),
    (_bootp(chaddr=b"\x00" * 6), "bad DHCP client hardware address"),
])
def test_malformed_messages(payload, reason):
    with pytest.raises(PacketError) as e:
        DhcpServer(NET).handle(mac(1), payload, 0.0)
    assert str(e.value) == reason


def test_options_pad_end_and_repeated_codes():
    # pads anywhere, nothing read after END, a code given twice is one value (RFC 3396)
    body = _bootp()[:240]
    m = parse_dhcp(body + b"\x00\x35\x01\x01\x00\x0c\x02ab\x0c\x01c\xff\x35\x01\x03")
    assert m.type == 1 and m.options[12] == b"abc"
    # a missing END at the end of the message is accepted
    assert parse_dhcp(body + b"\x35\x01\x01").type == 1


_HEADER = _bootp()[:240]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=400),
                 st.binary(max_size=80).map(lambda b: _HEADER + b),
                 st.tuples(st.sampled_from([1, 3, 4, 7, 8]), st.binary(max_size=60)).map(
                     lambda t: _HEADER + bytes((53, 1, t[0])) + t[1])),
       st.floats(0, 1e6))
def test_fuzz_handle_raises_only_packet_error(payload, now):
    srv = DhcpServer(NET)
    dora(srv, mac(2))
    try:
        out = srv.handle(mac(1), payload, now)
    except PacketError:
        return
    for frame in out:
        Ether(frame)[BOOTP]
    assert len(out) <= 1


def test_the_bootp_area_is_padded_to_300_bytes():
    srv = DhcpServer(NET)
    [offer] = srv.handle(mac(1), request(mac(1), "discover"), 0.0)
    ip = parse_ipv4(parse_ethernet(offer).payload)
    assert len(parse_udp(ip).payload) == 300
    assert struct.unpack("!H", offer[16:18])[0] == 20 + 8 + 300


def test_a_flood_of_discovers_does_not_lock_out_a_real_client():
    """Offers are taken back, oldest first, when nothing else is free: 500 DISCOVERs from
    made-up MACs, then a real client still completes DISCOVER/REQUEST."""
    net = Network.from_text()
    server = DhcpServer(net)
    for i in range(500):
        server.handle(bytes([2, 0, 0, 1, i >> 8, i & 255]),
                      request(bytes([2, 0, 0, 1, i >> 8, i & 255]), "discover", xid=i), 10.0)
    mac = bytes.fromhex("020000000abc")
    offer = server.handle(mac, request(mac, "discover", xid=9999), 11.0)
    assert offer, server.counts
    assert server.counts["DHCP offer taken back"] >= 485
