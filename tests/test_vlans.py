"""802.1Q VLANs end to end (vde-protocol.md §5.5): ingress classification by the 0x8100
tag, tags inserted or stripped on egress as each destination port needs, learning keyed
by (MAC, VLAN), flooding confined to a VLAN's members, VLAN drops counted, the vlan/*
console commands, a trunk to Debian's vde_switch, and a Hypothesis model of the rules.

Frames are compared byte for byte at every port that should (or must not) get them.
"""
from __future__ import annotations

import os
import re
import signal
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw
from vdetest import RawClient, mac, need_tool, wait_for

BCAST = "ff:ff:ff:ff:ff:ff"
NOVLAN = 4095
OK = "1000 Success"
ENXIO = "1006 No such device or address"
ENODEV = "1019 No such device"
EEXIST = "1017 File exists"
EINVAL = "1022 Invalid argument"
EADDRINUSE = "1098 Address already in use"


def tci(vid: int, prio: int = 0, dei: int = 0) -> bytes:
    return struct.pack(">H", prio << 13 | dei << 12 | vid)


def with_tag(f: bytes, vid: int, prio: int = 0) -> bytes:
    """What a tagged port gets for an untagged frame: 81 00 + TCI after the source MAC."""
    return f[:12] + b"\x81\x00" + tci(vid, prio) + f[12:]


def without_tag(f: bytes) -> bytes:
    return f[:12] + f[16:]


def pkt(src: str, dst: str = BCAST, vid: int | None = None, prio: int = 0,
        payload: bytes = b"") -> bytes:
    """An IPv4/UDP frame, 802.1Q-tagged when vid is given."""
    eth = Ether(dst=dst, src=src)
    if vid is not None:
        eth = eth / Dot1Q(vlan=vid, prio=prio)
    return bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1234, dport=5678)
                 / Raw(payload or b"pyvde vlan test"))


class Lan:
    """One pyvde-switch, a console kept open, and RawClients on chosen ports."""

    def __init__(self, sw, tmp):
        self.sw, self.tmp = sw, tmp
        self.con = sw.console()
        self.ports: dict[int, RawClient] = {}

    def plug(self, *numbers: int) -> None:
        for n in numbers:
            c = RawClient(self.sw.dir, self.tmp, f"p{n}")
            c.handshake(port=n, description=f"p{n}")
            self.ports[n] = c
        wait_for(lambda: all(self.active(n) for n in numbers), what=f"ports {numbers} active")

    def active(self, n: int) -> bool:
        data, status = self.con.cmd(f"port/print {n}")
        return status == OK and " ACTIVE " in data[0]

    def ok(self, line: str) -> list[str]:
        return self.con.ok(line)

    def send(self, port: int, f: bytes) -> None:
        self.ports[port].send(f)

    def recv(self, port: int) -> bytes:
        return self.ports[port].recv()

    def nothing(self, *ports: int, wait: float = 0.3) -> None:
        for n in ports:
            self.ports[n].recv_none(wait)

    def counters(self, port: int) -> str:
        (line,) = self.ok(f"port/counters {port}")
        return line

    def configure(self, vlans=(), untagged=None, tagged=None) -> None:
        for v in vlans:
            self.ok(f"vlan/create {v}")
        for p, v in (untagged or {}).items():
            self.ok(f"port/setvlan {p} {v}")
        for p, vs in (tagged or {}).items():
            for v in vs:
                self.ok(f"vlan/addport {v} {p}")

    def close(self) -> None:
        self.con.close()
        for c in self.ports.values():
            c.close()


@pytest.fixture
def lan(switch, sockdir):
    made = Lan(switch, sockdir)
    yield made
    made.close()


COUNTERS_RE = re.compile(r"Port (\d{4}) in (\d+) (\d+) out (\d+) (\d+) drop runt (\d+)"
                         r" oversize (\d+) vlan (\d+) tx (\d+) mirror (\d+)")


def counts(lan, port: int) -> dict[str, int]:
    m = COUNTERS_RE.fullmatch(lan.counters(port))
    assert m, lan.counters(port)
    return dict(zip(("inf", "inb", "outf", "outb", "runt", "oversize", "vlan", "tx", "mirror"),
                    map(int, m.groups()[1:])))


def counters_line(port: int, inf=0, inb=0, outf=0, outb=0, vlan=0) -> str:
    return (f"Port {port:04d} in {inf} {inb} out {outf} {outb} drop runt 0 oversize 0"
            f" vlan {vlan} tx 0 mirror 0")


A, B, C, D = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d"
X, T = "52:54:00:00:00:99", "02:00:00:00:00:77"


# ----------------------------------------------------------------- 1. tag and untag

def test_access_ports_and_trunks_tag_and_untag_exactly(lan):
    """1, 2: access VLAN 10; 3: access VLAN 0; 4: trunk (VLAN 0 untagged, 10 and 20
    tagged); 5: pure trunk (no untagged VLAN, 20 tagged); 6: access VLAN 20."""
    lan.plug(1, 2, 3, 4, 5, 6)
    lan.configure(vlans=(10, 20), untagged={1: 10, 2: 10, 5: NOVLAN, 6: 20},
                  tagged={4: (10, 20), 5: (20,)})

    # untagged from a VLAN 10 access port: unchanged to the other access port, tag
    # 81 00 00 0a inserted for the trunk, nothing for VLAN 0 or VLAN 20 ports
    f = pkt(A)
    lan.send(1, f)
    assert lan.recv(2) == f
    got = lan.recv(4)
    assert got == f[:12] + b"\x81\x00\x00\x0a" + f[12:] and len(got) == len(f) + 4
    assert got == pkt(A, vid=10)                    # what scapy makes of the same frame tagged
    lan.nothing(1, 3, 5, 6)

    # tagged (PCP 5, VID 10) from the trunk: stripped for both VLAN 10 access ports
    f = pkt(B, vid=10, prio=5)
    assert f[12:16] == b"\x81\x00\xa0\x0a"
    lan.send(4, f)
    untagged = pkt(B)
    assert lan.recv(1) == untagged and lan.recv(2) == untagged
    assert len(untagged) == len(f) - 4
    lan.nothing(3, 4, 5, 6)

    # tagged VLAN 20 trunk -> trunk: the tag, PCP 3 and DEI kept bit for bit
    f = pkt(B)[:12] + b"\x81\x00" + tci(20, prio=3, dei=1) + pkt(B)[12:]
    lan.send(4, f)
    assert lan.recv(5) == f
    assert lan.recv(6) == pkt(B)
    lan.nothing(1, 2, 3, 4)

    # untagged from the VLAN 20 access port: tagged (PCP 0) for both trunks
    f = pkt(C, payload=b"from vlan 20")
    lan.send(6, f)
    assert lan.recv(4) == with_tag(f, 20) and lan.recv(5) == with_tag(f, 20)
    lan.nothing(1, 2, 3, 6)

    # VLAN 0: untagged on the access port and on the trunk's untagged side
    f = pkt(D)
    lan.send(3, f)
    assert lan.recv(4) == f
    lan.nothing(1, 2, 5, 6)
    lan.send(4, f)
    assert lan.recv(3) == f
    lan.nothing(1, 2, 4, 5, 6)

    # never padded: a bare header gains exactly 4 bytes, a bare tagged header loses 4
    bare = mac(BCAST) + mac(A) + b"\x88\xb5"
    lan.send(1, bare)
    assert lan.recv(2) == bare and lan.recv(4) == with_tag(bare, 10)
    bare_tagged = mac(BCAST) + mac(B) + b"\x81\x00\x00\x0a\x88\xb5"
    lan.send(4, bare_tagged)
    bare_b = mac(BCAST) + mac(B) + b"\x88\xb5"
    assert lan.recv(1) == bare_b and lan.recv(2) == bare_b
    lan.nothing(1, 2, 3, 4, 5, 6)

    sizes10 = [len(pkt(A)), len(pkt(B, vid=10)), 14, 18]
    sizes20 = [len(pkt(B)) + 4, len(pkt(C, payload=b"from vlan 20"))]
    sizes0 = [len(pkt(D))] * 2
    assert lan.ok("vlan/counters") == [f"VLAN 0000 in 2 {sum(sizes0)}",
                                       f"VLAN 0010 in 4 {sum(sizes10)}",
                                       f"VLAN 0020 in 2 {sum(sizes20)}"]
    assert lan.ok("vlan/counters 20") == [f"VLAN 0020 in 2 {sum(sizes20)}"]
    for p in range(1, 7):
        assert " vlan 0 tx 0 mirror 0" in lan.counters(p)


# ----------------------------------------------------------------- 2. (MAC, VLAN) learning

HASH_RE = re.compile(r"Hash: \d{4} Addr: ([0-9a-f:]{17}) VLAN (\d{4}) to port: (\d{3})"
                     r"  age \d+ secs")


def table(lan) -> set[tuple[str, int, int]]:
    entries = set()
    for line in lan.ok("hash/print"):
        m = HASH_RE.fullmatch(line)
        assert m, line
        entries.add((m[1], int(m[2]), int(m[3])))
    return entries


def find(lan, mac_text: str, vlan: int) -> tuple[str, int, int]:
    (line,) = lan.ok(f"hash/find {mac_text} {vlan}")
    m = HASH_RE.fullmatch(line)
    assert m, line
    return m[1], int(m[2]), int(m[3])


def test_learning_is_keyed_by_mac_and_vlan(lan):
    """1: access 10, 2: access 20, 3: trunk (10, 20 tagged, no untagged), 4: access 10,
    5: access 20. The same MAC X lives behind port 1 on VLAN 10 and port 2 on VLAN 20."""
    lan.plug(1, 2, 3, 4, 5)
    lan.configure(vlans=(10, 20), untagged={1: 10, 2: 20, 3: NOVLAN, 4: 10, 5: 20},
                  tagged={3: (10, 20)})
    f10, f20 = pkt(X, payload=b"X on 10"), pkt(X, payload=b"X on 20")
    lan.send(1, f10)
    assert lan.recv(3) == with_tag(f10, 10) and lan.recv(4) == f10
    lan.send(2, f20)
    assert lan.recv(3) == with_tag(f20, 20) and lan.recv(5) == f20
    lan.nothing(1, 2, 3, 4, 5)
    assert table(lan) == {(X, 10, 1), (X, 20, 2)}
    assert find(lan, X, 10) == (X, 10, 1)
    assert find(lan, X, 20) == (X, 20, 2)
    assert lan.con.cmd(f"hash/find {X} 0") == ([], ENODEV)
    assert lan.con.cmd(f"hash/find {X} 30") == ([], ENODEV)

    # unicast to X from the trunk goes to the port X has in that VLAN only, untagged
    u10 = pkt(T, dst=X, vid=10, prio=6, payload=b"to X on 10")
    lan.send(3, u10)
    assert lan.recv(1) == without_tag(u10)
    lan.nothing(2, 3, 4, 5)
    u20 = pkt(T, dst=X, vid=20, payload=b"to X on 20")
    lan.send(3, u20)
    assert lan.recv(2) == without_tag(u20)
    lan.nothing(1, 3, 4, 5)

    # ... and from the access ports
    u = pkt(C, dst=X, payload=b"from 4")
    lan.send(4, u)
    assert lan.recv(1) == u
    u = pkt(D, dst=X, payload=b"from 5")
    lan.send(5, u)
    assert lan.recv(2) == u
    lan.nothing(1, 2, 3, 4, 5)
    assert table(lan) == {(X, 10, 1), (X, 20, 2), (T, 10, 3), (T, 20, 3), (C, 10, 4), (D, 20, 5)}

    # T is known on the trunk in both VLANs: unicast to it gets the right tag, nobody else
    u = pkt(X, dst=T, payload=b"to T")
    lan.send(1, u)
    assert lan.recv(3) == with_tag(u, 10)
    lan.send(2, u)
    assert lan.recv(3) == with_tag(u, 20)
    lan.nothing(1, 2, 3, 4, 5)
    # C is known on VLAN 10 only: on VLAN 20 it is unknown and flooded within VLAN 20
    u = pkt(D, dst=C, payload=b"C on 20?")
    lan.send(5, u)
    assert lan.recv(2) == u and lan.recv(3) == with_tag(u, 20)
    lan.nothing(1, 4, 5)


# ----------------------------------------------------------------- 3. drops counted

def test_vlan_drops_are_counted_and_nothing_is_delivered(lan):
    """1: trunk (VLAN 0 untagged, 10 tagged); 2: access 10; 3: no untagged VLAN, 20
    tagged; 4: access 0."""
    lan.plug(1, 2, 3, 4)
    lan.configure(vlans=(10, 20), untagged={2: 10, 3: NOVLAN}, tagged={1: (10,), 3: (20,)})
    for p in (1, 2, 3, 4):
        assert lan.counters(p) == counters_line(p)
    sent: dict[int, list[bytes]] = {1: [], 2: [], 3: []}
    for i in range(3):                       # VLAN 20 exists, port 1 is no member
        sent[1].append(pkt(A, vid=20, payload=b"not a member %d" % i))
    for i in range(2):                       # VLAN 30 was never created
        sent[1].append(pkt(A, vid=30, prio=7, payload=b"undefined %d" % i))
    sent[1].append(pkt(A, vid=NOVLAN, payload=b"vid 4095"))
    sent[2].append(pkt(B, vid=0, payload=b"vlan 0 tagged, port 2 is on 10"))
    sent[2].append(pkt(B, vid=20, payload=b"vlan 20 on an access port"))
    for i in range(4):                       # untagged on a port without untagged VLAN
        sent[3].append(pkt(C, payload=b"untagged %d" % i))
    for p, frames in sent.items():
        for f in frames:
            lan.send(p, f)
    lan.nothing(1, 2, 3, 4)
    for p, frames in sent.items():
        n, nbytes = len(frames), sum(map(len, frames))
        assert lan.counters(p) == counters_line(p, n, nbytes, vlan=n)
    assert lan.counters(4) == counters_line(4)
    assert lan.ok("vlan/counters") == ["VLAN 0000 in 0 0", "VLAN 0010 in 0 0",
                                       "VLAN 0020 in 0 0"]
    assert table(lan) == set()               # a dropped frame teaches nothing

    # the same ports still forward what they may, without touching the drop counters
    f = pkt(A, vid=10, payload=b"fine")
    lan.send(1, f)
    assert lan.recv(2) == without_tag(f)
    lan.nothing(1, 3, 4)
    assert lan.counters(1) == counters_line(1, 7, sum(map(len, sent[1])) + len(f), vlan=6)
    assert lan.counters(2) == counters_line(2, 2, sum(map(len, sent[2])), 1, len(f) - 4, vlan=2)
    assert lan.ok("vlan/counters 10") == [f"VLAN 0010 in 1 {len(f)}"]
    lan.ok("port/resetcounter 1")
    assert lan.counters(1) == counters_line(1)


# ----------------------------------------------------------------- 4. membership changes

def test_membership_changes_take_effect_immediately(lan):
    """1: access 20; 2: trunk (10, 20 tagged, no untagged); 3: access 20; 4: access 10."""
    lan.plug(1, 2, 3, 4)
    lan.configure(vlans=(10, 20), untagged={1: 20, 2: NOVLAN, 3: 20, 4: 10}, tagged={2: (10, 20)})
    f = pkt(T, vid=20, payload=b"T says hello")
    lan.send(2, f)
    assert lan.recv(1) == without_tag(f) and lan.recv(3) == without_tag(f)
    lan.nothing(4)
    b20 = pkt(A, payload=b"bcast 20")
    lan.send(1, b20)
    assert lan.recv(2) == with_tag(b20, 20) and lan.recv(3) == b20
    to_t = pkt(A, dst=T, payload=b"to T")
    lan.send(1, to_t)
    assert lan.recv(2) == with_tag(to_t, 20)
    lan.nothing(3, 4)
    assert (T, 20, 2) in table(lan)

    lan.ok("vlan/delport 20 2")
    assert lan.con.cmd(f"hash/find {T} 20") == ([], ENODEV)   # its VLAN 20 MACs forgotten
    lan.send(1, b20)
    assert lan.recv(3) == b20
    lan.nothing(2)
    lan.send(1, to_t)                        # T unknown again: flooded, but not to port 2
    assert lan.recv(3) == to_t
    lan.nothing(2, 4)
    before = counts(lan, 2)
    lan.send(2, f)                           # port 2 may no longer send on VLAN 20
    lan.nothing(1, 3, 4)
    assert counts(lan, 2) == before | {"inf": before["inf"] + 1, "inb": before["inb"] + len(f),
                                       "vlan": before["vlan"] + 1}
    b10 = pkt(D, payload=b"bcast 10")
    lan.send(4, b10)                         # VLAN 10 membership untouched
    assert lan.recv(2) == with_tag(b10, 10)
    lan.nothing(1, 3)

    lan.ok("vlan/addport 20 2")
    lan.send(1, b20)
    assert lan.recv(2) == with_tag(b20, 20) and lan.recv(3) == b20

    lan.ok("port/setvlan 3 10")              # port 3 moves from VLAN 20 to VLAN 10
    lan.send(1, b20)
    assert lan.recv(2) == with_tag(b20, 20)
    lan.nothing(3)
    lan.send(4, b10)
    assert lan.recv(2) == with_tag(b10, 10) and lan.recv(3) == b10
    lan.nothing(1)

    lan.ok(f"port/setvlan 3 {NOVLAN}")       # ... and then to no VLAN at all
    lan.send(4, b10)
    assert lan.recv(2) == with_tag(b10, 10)
    lan.nothing(3)
    before = counts(lan, 3)
    lan.send(3, b10)
    lan.nothing(1, 2, 4)
    assert counts(lan, 3) == before | {"inf": before["inf"] + 1,
                                       "inb": before["inb"] + len(b10),
                                       "vlan": before["vlan"] + 1}

    # the trunk's client leaves and another comes to port 2: the port is still a trunk
    lan.ports.pop(2).close()
    wait_for(lambda: not lan.active(2), what="port 2 to go inactive")
    lan.send(4, b10)                         # VLAN 10 now has no other active member
    lan.nothing(1, 3)
    lan.plug(2)
    lan.send(4, b10)
    assert lan.recv(2) == with_tag(b10, 10)
    lan.send(1, b20)
    assert lan.recv(2) == with_tag(b20, 20)
    lan.nothing(1, 3, 4)


def test_memberships_survive_growing_the_port_table(switches, sockdir):
    """Membership bitmaps grow past 64 ports; ports cut off by a shrink leave their VLANs."""
    lan = Lan(switches("-n", "32"), sockdir)
    try:
        lan.plug(5, 6)
        lan.configure(vlans=(10, 20), untagged={6: 10}, tagged={5: (10, 20)})
        lan.ok("port/setnumports 100")
        lan.plug(90, 70)
        lan.configure(untagged={90: 10, 70: NOVLAN}, tagged={70: (20,)})
        f = pkt(A, payload=b"to the high ports")
        lan.send(6, f)
        assert lan.recv(90) == f and lan.recv(5) == with_tag(f, 10)
        lan.nothing(6, 70)
        g = pkt(B, vid=20, prio=2, payload=b"vlan 20 trunk to trunk")
        lan.send(70, g)
        assert lan.recv(5) == g
        lan.nothing(6, 70, 90)
        for n in (90, 70):
            lan.ports.pop(n).close()
        wait_for(lambda: not lan.active(90) and not lan.active(70), what="ports 70, 90 inactive")
        lan.ok("port/setnumports 64")
        assert lan.ok("vlan/allprint") == [
            "VLAN 0000", " -- Port 0005 tagged=0 active=1 status=Forwarding",
            "VLAN 0010", " -- Port 0005 tagged=1 active=1 status=Forwarding",
            " -- Port 0006 tagged=0 active=1 status=Forwarding",
            "VLAN 0020", " -- Port 0005 tagged=1 active=1 status=Forwarding"]
        lan.ok("port/setnumports 100")
        lan.plug(90)                          # a new port 90 starts on VLAN 0, in no other
        lan.send(6, f)
        assert lan.recv(5) == with_tag(f, 10)
        lan.nothing(90)
        h = pkt(C, payload=b"vlan 0")
        lan.send(90, h)
        assert lan.recv(5) == h
        lan.nothing(6)
    finally:
        lan.close()


# ----------------------------------------------------------------- 5. console commands

def test_vlan_console_commands_and_errors(lan):
    lan.plug(1, 2)
    c = lan.con
    assert c.cmd("vlan/create 10") == ([], OK)
    assert c.cmd("vlan/create 20") == ([], OK)
    assert c.cmd("vlan/create 10") == ([], EEXIST)
    for bad in ("0", "4094", "4095", "-1", "x", "", "10 11"):
        assert c.cmd(f"vlan/create {bad}".strip())[1] == EINVAL, bad
    assert c.cmd("vlan/create 4093") == ([], OK)
    assert c.cmd("vlan/create 1") == ([], OK)
    assert c.cmd("vlan/remove 4093") == ([], OK)
    assert c.cmd("vlan/remove 1") == ([], OK)
    assert c.cmd("vlan/remove 4093") == ([], ENXIO)
    assert c.cmd("vlan/remove 11") == ([], ENXIO)
    assert c.cmd("vlan/remove 0") == ([], EINVAL)       # VLAN 0 stays (vde_switch crashes)

    # vlan/addport: the VLAN and the port must exist
    assert c.cmd("vlan/addport 10 3") == ([], ENXIO)     # port 3 never used
    assert c.cmd("vlan/addport 11 1") == ([], ENXIO)     # VLAN 11 never created
    assert c.cmd("port/create 3") == ([], OK)
    assert c.cmd("port/create 4") == ([], OK)
    assert c.cmd("vlan/addport 20 3") == ([], OK)
    assert c.cmd("vlan/addport 20 3") == ([], OK)         # again: still one membership
    for bad in ("10", "10 x", "4095 3", "4096 3", "10 99", "-1 3", ""):
        assert c.cmd(f"vlan/addport {bad}".strip())[1] == EINVAL, bad
    assert c.cmd("vlan/addport 10 2") == ([], OK)
    assert c.cmd("vlan/addport 20 2") == ([], OK)

    # port/setvlan: untagged VLAN, 4095 = none
    assert c.cmd("port/setvlan 1 10") == ([], OK)
    assert c.cmd(f"port/setvlan 4 {NOVLAN}") == ([], OK)
    assert c.cmd("port/setvlan 1 30") == ([], ENXIO)      # no VLAN 30
    assert c.cmd("port/setvlan 9 0") == ([], ENXIO)       # no port 9
    for bad in ("1 4096", "1 -1", "1 x", "1", "", "x 10"):
        assert c.cmd(f"port/setvlan {bad}".strip())[1] == EINVAL, bad

    # a port's untagged VLAN cannot also be tagged on it (vde_switch answers 1000 and
    # ignores the request; pyvde says why): either way the membership stays untagged
    assert c.cmd("vlan/addport 10 1")[1] in (OK, EADDRINUSE)
    assert c.cmd("vlan/addport 0 2")[1] in (OK, EADDRINUSE)

    # vlan/delport: not the untagged VLAN, and only a member can leave
    assert c.cmd("vlan/delport 10 1") == ([], EADDRINUSE)
    assert c.cmd("vlan/delport 10 3") == ([], ENXIO)     # port 3 is no member of 10
    assert c.cmd("vlan/delport 30 3") == ([], ENXIO)     # no VLAN 30
    assert c.cmd("vlan/delport 10 5") == ([], ENXIO)     # no port 5
    assert c.cmd("vlan/delport 10") == ([], EINVAL)
    assert c.cmd("vlan/remove 10") == ([], EADDRINUSE)   # ports 1 and 2 are members
    assert c.cmd("vlan/remove 20") == ([], EADDRINUSE)

    # 1: active, untagged 10; 2: active, untagged 0, tagged 10 and 20;
    # 3: inactive, untagged 0, tagged 20; 4: inactive, in no VLAN
    everything = ["VLAN 0000",
                  " -- Port 0002 tagged=0 active=1 status=Forwarding",
                  " -- Port 0003 tagged=0 active=0 status=Learning",
                  "VLAN 0010",
                  " -- Port 0001 tagged=0 active=1 status=Forwarding",
                  " -- Port 0002 tagged=1 active=1 status=Forwarding",
                  "VLAN 0020",
                  " -- Port 0002 tagged=1 active=1 status=Forwarding",
                  " -- Port 0003 tagged=1 active=0 status=Learning"]
    assert c.cmd("vlan/allprint") == (everything, OK)
    assert c.cmd("vlan/print") == ([line for line in everything if "active=0" not in line], OK)
    assert c.cmd("vlan/allprint 20") == (everything[6:], OK)
    assert c.cmd("vlan/print 20") == (everything[6:8], OK)
    assert c.cmd("vlan/print 0") == (everything[:2], OK)
    assert c.cmd("vlan/print 30") == ([], ENXIO)
    assert c.cmd("vlan/allprint 30") == ([], ENXIO)
    for bad in ("4095", "x", "-1"):
        assert c.cmd(f"vlan/print {bad}") == ([], EINVAL)
        assert c.cmd(f"vlan/allprint {bad}") == ([], EINVAL)
    assert c.raw("vlan/print 20") == (b"0000 DATA END WITH '.'\nVLAN 0020\n"
                                      b" -- Port 0002 tagged=1 active=1 status=Forwarding\n"
                                      b".\n1000 Success\n\nvde$ ")
    assert c.cmd("vlan/counters") == (["VLAN 0000 in 0 0", "VLAN 0010 in 0 0",
                                       "VLAN 0020 in 0 0"], OK)
    assert c.cmd("vlan/counters 30") == ([], ENXIO)
    assert c.cmd("port/counters 1") == ([counters_line(1)], OK)
    assert lan.ok("port/print 1")[0] == "Port 0001 untagged_vlan=0010 ACTIVE - Unnamed Allocatable"
    assert lan.ok("port/allprint 4")[0].startswith("Port 0004 untagged_vlan=4095 INACTIVE")

    # undo it all: members leave, then the VLANs can go
    assert c.cmd("vlan/delport 20 3") == ([], OK)
    assert c.cmd("vlan/delport 20 3") == ([], ENXIO)
    assert c.cmd("vlan/delport 20 2") == ([], OK)
    assert c.cmd("vlan/remove 20") == ([], OK)
    assert c.cmd("vlan/delport 10 2") == ([], OK)
    assert c.cmd("vlan/remove 10") == ([], EADDRINUSE)   # still port 1's untagged VLAN
    assert c.cmd("port/setvlan 1 0") == ([], OK)
    assert c.cmd("vlan/remove 10") == ([], OK)
    assert c.cmd("vlan/remove 10") == ([], ENXIO)
    assert c.cmd("vlan/allprint") == (["VLAN 0000",
                                       " -- Port 0001 tagged=0 active=1 status=Forwarding",
                                       " -- Port 0002 tagged=0 active=1 status=Forwarding",
                                       " -- Port 0003 tagged=0 active=0 status=Learning"], OK)
    assert c.cmd("vlan/create 10") == ([], OK)            # a new VLAN 10 starts empty
    assert c.cmd("vlan/allprint 10") == (["VLAN 0010"], OK)
    assert c.cmd("port/remove 3") == ([], OK)             # a removed port leaves every VLAN
    assert c.cmd("vlan/allprint 0") == (["VLAN 0000",
                                         " -- Port 0001 tagged=0 active=1 status=Forwarding",
                                         " -- Port 0002 tagged=0 active=1 status=Forwarding"], OK)
    # a port that went away keeps its configuration, and shows it as inactive
    assert c.cmd("vlan/addport 10 2") == ([], OK)
    lan.ports.pop(2).close()
    wait_for(lambda: not lan.active(2), what="port 2 to go inactive")
    assert c.cmd("vlan/allprint 10") == (["VLAN 0010",
                                          " -- Port 0002 tagged=1 active=0 status=Learning"], OK)
    assert c.cmd("vlan/print 10") == (["VLAN 0010"], OK)


def test_setvlan_replaces_a_tagged_membership(lan):
    lan.plug(1, 2)
    lan.configure(vlans=(10,), untagged={2: 10}, tagged={1: (10,)})
    lan.ok("port/setvlan 1 10")                # port 1: from trunk of 10 to access on 10
    lan.ok("port/setvlan 1 0")                 # ... and then to VLAN 0: no longer in VLAN 10
    assert lan.ok("vlan/allprint 10") == ["VLAN 0010",
                                          " -- Port 0002 tagged=0 active=1 status=Forwarding"]
    f = pkt(A, payload=b"vlan 10 only")
    lan.send(2, f)
    lan.nothing(1)


# ----------------------------------------------------------------- 6. trunk to vde_switch

class Dpipe:
    """dpipe vde_plug A = vde_plug B in its own process group (dpipe makes itself a
    group leader, which a session leader cannot become)."""

    def __init__(self, left: str, right: str):
        need_tool("dpipe", "vde_plug")
        self.proc = subprocess.Popen(["dpipe", "vde_plug", left, "=", "vde_plug", right],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, process_group=0)

    def children(self) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(self.proc.pid):
                pids.append(int(entry))
        return pids

    def stop(self) -> None:
        """Ends dpipe's two vde_plugs so that dpipe reaps them and exits by itself (killing
        dpipe first would leave them to init, as zombies here)."""
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def test_trunk_between_pyvde_and_debian_vde_switch(lan, debian_switch, plugs):
    """pyvde: 1 access 10, 2 access 0, 3 access 20, 8 trunk (10, 20 tagged).
    vde_switch: 1 access 10, 2 access 0, 3 access 20, 6 trunk (10, 20 tagged)."""
    need_tool("vde_switch", "dpipe", "vde_plug")
    vde = debian_switch()
    vcon = vde.console()                       # one command per write, reply read whole
    try:
        for line in ("vlan/create 10", "vlan/create 20", "port/create 1", "port/create 2",
                     "port/create 3", "port/create 6", "port/setvlan 1 10", "port/setvlan 3 20",
                     "vlan/addport 10 6", "vlan/addport 20 6"):
            vcon.ok(line)
        lan.ok("port/create 8")
        lan.configure(vlans=(10, 20), tagged={8: (10, 20)})
        lan.plug(1, 2, 3)
        lan.configure(untagged={1: 10, 3: 20})
        far = {n: plugs(f"{vde.dir}[{n}]") for n in (1, 2, 3)}
        pipe = Dpipe(f"{lan.sw.dir}[8]", f"{vde.dir}[6]")
        try:
            wait_for(lambda: lan.active(8), what="pyvde trunk port")
            wait_for(lambda: all(" ACTIVE " in "\n".join(vcon.ok(f"port/print {n}"))
                                 for n in (1, 2, 3, 6)), what="vde_switch ports")
            # pyvde access 10 -> trunk (tagged) -> vde_switch access 10, untagged again
            f = pkt(A, payload=b"pyvde to vde_switch on 10")
            lan.send(1, f)
            assert far[1].recv() == f
            assert far[2].recv_all() == [] and far[3].recv_all() == []
            lan.nothing(2, 3)
            assert lan.counters(8).startswith(f"Port 0008 in 0 0 out 1 {len(f) + 4} ")
            # vde_switch access 10 -> pyvde access 10, exact bytes, VLAN 0 and 20 untouched
            g = pkt(B, dst=A, payload=b"vde_switch to pyvde on 10")
            far[1].send(g)
            assert lan.recv(1) == g
            lan.nothing(2, 3)
            assert far[2].recv_all() == [] and far[3].recv_all() == []
            assert lan.counters(8).startswith(f"Port 0008 in 1 {len(g) + 4} out 1 ")
            assert find(lan, B, 10) == (B, 10, 8)
            # VLAN 20 both ways
            h = pkt(C, payload=b"pyvde on 20")
            lan.send(3, h)
            assert far[3].recv() == h
            assert far[1].recv_all() == [] and far[2].recv_all() == []
            k = pkt(D, payload=b"vde_switch on 20")
            far[3].send(k)
            assert lan.recv(3) == k
            lan.nothing(1, 2)
            # VLAN 0 crosses untagged: both trunk ports kept their untagged VLAN 0
            z = pkt(A, payload=b"vlan 0 across")
            lan.send(2, z)
            assert far[2].recv() == z
            assert far[1].recv_all() == [] and far[3].recv_all() == []
        finally:
            pipe.stop()
    finally:
        vcon.close()


# ----------------------------------------------------------------- 7. model

MODEL_PORTS = (1, 2, 3, 4)
POOL = (10, 20, 30)
BARRIER_VID = 99
SRC_MACS = tuple(mac(f"02:00:00:00:01:{i:02x}") for i in range(1, 4))
DST_MACS = SRC_MACS + (mac(BCAST), mac("01:00:5e:00:00:01"), mac("02:00:00:00:01:ff"))
BARRIER_MAC = {p: mac(f"02:00:00:00:0b:{p:02x}") for p in MODEL_PORTS}


@st.composite
def layouts(draw):
    created = draw(st.frozensets(st.sampled_from(POOL)))
    vlans = sorted(created | {0})
    cfg = {}
    for p in MODEL_PORTS:
        untagged = draw(st.sampled_from(vlans + [NOVLAN]))
        others = [v for v in vlans if v != untagged]
        tagged = draw(st.frozensets(st.sampled_from(others))) if others else frozenset()
        cfg[p] = (untagged, tagged)
    return created, cfg


@st.composite
def frames(draw):
    port = draw(st.sampled_from(MODEL_PORTS))
    head = draw(st.sampled_from(DST_MACS)) + draw(st.sampled_from(SRC_MACS))
    if draw(st.booleans()):
        vid = draw(st.sampled_from((0, 5, 10, 20, 30, 40, NOVLAN)))
        head += b"\x81\x00" + tci(vid, draw(st.integers(0, 7)), draw(st.integers(0, 1)))
    ethertype = draw(st.sampled_from((0x0800, 0x86DD, 0x88B5, 0x88A8)))
    return port, head + struct.pack(">H", ethertype) + draw(st.binary(max_size=48))


class Model:
    """vde-protocol.md §5.5 in a few lines of Python."""

    def __init__(self, created, cfg):
        self.exists = set(created) | {0}
        self.cfg = cfg
        self.table: dict[tuple[bytes, int], int] = {}

    def member(self, port: int, vlan: int) -> bool:
        untagged, tagged = self.cfg[port]
        return untagged == vlan or vlan in tagged

    def classify(self, port: int, f: bytes) -> int | None:
        if f[12:14] == b"\x81\x00":
            vlan = int.from_bytes(f[14:16], "big") & 0xFFF
            ok = vlan != NOVLAN and vlan in self.exists and self.member(port, vlan)
            return vlan if ok else None
        untagged = self.cfg[port][0]
        return None if untagged == NOVLAN else untagged

    def ambiguous(self, port: int, f: bytes) -> bool:
        """A source seen on another port of the same VLAN moves or stays depending on
        hash/setminper timing; such frames are not sent."""
        vlan = self.classify(port, f)
        return vlan is not None and self.table.get((f[6:12], vlan), port) != port

    def forward(self, port: int, f: bytes) -> tuple[int | None, dict[int, bytes]]:
        vlan = self.classify(port, f)
        if vlan is None:
            return None, {}
        tagged_in = f[12:14] == b"\x81\x00"
        src, dst = f[6:12], f[:6]
        if not src[0] & 1:
            self.table[(src, vlan)] = port
        if not dst[0] & 1 and (dst, vlan) in self.table:
            q = self.table[(dst, vlan)]
            targets = [] if q == port else [q]
        else:
            targets = [q for q in MODEL_PORTS if q != port and self.member(q, vlan)]
        out = {}
        for q in targets:
            untagged_out = self.cfg[q][0] == vlan
            if tagged_in and untagged_out:
                out[q] = without_tag(f)
            elif not tagged_in and not untagged_out:
                out[q] = with_tag(f, vlan)
            else:
                out[q] = f
        return vlan, out


def reset(lan) -> None:
    """Back to: every model port untagged on VLAN 0 and a tagged member of VLAN 99 only."""
    vlan = None
    for line in lan.ok("vlan/allprint"):
        if line.startswith("VLAN "):
            vlan = int(line[5:])
        elif "tagged=1" in line and vlan != BARRIER_VID:
            lan.ok(f"vlan/delport {vlan} {int(line.split()[2])}")
    for p in MODEL_PORTS:
        lan.ok(f"port/setvlan {p} 0")          # also forgets the port's MACs
    for line in lan.ok("vlan/allprint"):
        if line.startswith("VLAN ") and int(line[5:]) not in (0, BARRIER_VID):
            lan.ok(f"vlan/remove {int(line[5:])}")
    lan.ok("port/resetcounter")


def test_forwarding_matches_model(lan):
    lan.plug(*MODEL_PORTS)
    lan.ok(f"vlan/create {BARRIER_VID}")
    for p in MODEL_PORTS:
        lan.ok(f"vlan/addport {BARRIER_VID} {p}")
    dirty = [False]

    def barrier(sender: int, seq: int, dst: bytes = mac(BCAST)) -> bytes:
        """A VLAN 99 frame: broadcast, it reaches every other port after everything the
        sender sent before it (one socket, processed in order)."""
        return dst + BARRIER_MAC[sender] + b"\x81\x00" + tci(BARRIER_VID) + b"\x88\xb6" + \
            struct.pack(">I", seq)

    def until(port: int, marker: bytes) -> list[bytes]:
        got = []
        while (f := lan.recv(port)) != marker:
            got.append(f)
        return got

    @settings(max_examples=30, deadline=None)
    @given(layouts(), st.lists(frames(), min_size=3, max_size=16))
    def check(layout, traffic):
        created, cfg = layout
        if dirty[0]:                           # a failed example may have left frames
            for c in lan.ports.values():
                c.data.setblocking(False)
                try:
                    while True:
                        c.data.recv(70000)
                except BlockingIOError:
                    pass
        dirty[0] = True
        reset(lan)
        lan.configure(vlans=sorted(created), untagged={p: u for p, (u, _) in cfg.items()},
                      tagged={p: sorted(t) for p, (_, t) in cfg.items()})
        vlan_before = {int(line.split()[1]): tuple(map(int, line.split()[3:]))
                       for line in lan.ok("vlan/counters")}
        model = Model(created, cfg)
        stats = {p: {"inf": 0, "inb": 0, "outf": 0, "outb": 0, "vlan": 0} for p in MODEL_PORTS}
        vlan_in: dict[int, list[int]] = {}
        senders = set()

        def count(sender: int, f: bytes, deliveries: dict[int, bytes]) -> None:
            stats[sender]["inf"] += 1
            stats[sender]["inb"] += len(f)
            for q, g in deliveries.items():
                stats[q]["outf"] += 1
                stats[q]["outb"] += len(g)

        for seq, (port, f) in enumerate(traffic):
            if model.ambiguous(port, f):
                continue
            vlan, expected = model.forward(port, f)
            lan.send(port, f)
            mark = barrier(port, seq)
            lan.send(port, mark)
            senders.add(port)
            for q in MODEL_PORTS:
                if q != port:
                    got = until(q, mark)
                    want = [expected[q]] if q in expected else []
                    assert got == want, (f"frame {f.hex()} from port {port} (VLAN {vlan}) at"
                                         f" port {q}: got {[g.hex() for g in got]}")
            count(port, f, expected)
            count(port, mark, {q: mark for q in MODEL_PORTS if q != port})
            if vlan is None:
                stats[port]["vlan"] += 1
            else:
                vlan_in.setdefault(vlan, []).append(len(f))
        # nothing went back to a sender: a unicast barrier from a neighbour follows it
        for seq, port in enumerate(sorted(senders), start=len(traffic)):
            neighbour = MODEL_PORTS[port % len(MODEL_PORTS)]
            mark = barrier(neighbour, seq, dst=BARRIER_MAC[port])
            lan.send(neighbour, mark)
            assert until(port, mark) == [], f"port {port} got its own frames back"
            count(neighbour, mark, {port: mark})
        for p in MODEL_PORTS:
            assert lan.counters(p) == counters_line(p, **stats[p])
        for line in lan.ok("vlan/counters"):
            v, frames_in, bytes_in = int(line.split()[1]), *map(int, line.split()[3:])
            if v == BARRIER_VID:
                continue
            f0, b0 = vlan_before.get(v, (0, 0))
            assert (frames_in - f0, bytes_in - b0) == (len(vlan_in.get(v, [])),
                                                        sum(vlan_in.get(v, []))), line
        dirty[0] = False

    check()
