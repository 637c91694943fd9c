"""The C forwarding engine on socketpairs: exact bytes in and out, with the clock injected.

Each port's client end is an ordinary datagram socket, so these are the same frames a
VDE client would see; the end-to-end tests repeat the key cases with real clients.
"""
import socket
import time

import pytest
from vdetest import frame

from switchd.dataplane import NOVLAN, DataPlane

A, B, C, D = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d"
BCAST = "ff:ff:ff:ff:ff:ff"


class ClientSocket(socket.socket):
    """A port's client end; remembers the engine's endpoint id."""
    endpoint: int


class Engine:
    def __init__(self, nslots=8, maxframe=9234):
        self.dp = DataPlane(nslots, maxframe)
        self.dp.start()
        self.clients = []

    def plug(self, port: int) -> socket.socket:
        a, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours = ClientSocket(fileno=a.detach())
        theirs.setblocking(False)
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        ours.endpoint = self.dp.add_endpoint(port, theirs.detach())
        self.clients.append(ours)
        return ours

    def close(self):
        self.dp.close()
        for c in self.clients:
            c.close()


@pytest.fixture
def engine():
    e = Engine()
    yield e
    e.close()


def recv(s, timeout=2.0) -> bytes:
    s.settimeout(timeout)
    return s.recv(70000)


def nothing(*socks, wait=0.15):
    time.sleep(wait)
    for s in socks:
        s.setblocking(False)
        try:
            got = s.recv(70000)
        except BlockingIOError:
            continue
        raise AssertionError(f"unexpected frame {got[:16].hex()}")


def test_broadcast_floods_exactly_to_every_other_port(engine):
    p1, p2, p3 = engine.plug(1), engine.plug(2), engine.plug(3)
    f = frame(BCAST, A, bytes(range(46)))
    p1.send(f)
    assert recv(p2) == f and recv(p3) == f
    nothing(p1)
    st = engine.dp.port_stats(1)
    assert (st.in_frames, st.in_bytes) == (1, len(f))
    assert engine.dp.port_stats(2).out_frames == 1 and engine.dp.port_stats(2).out_bytes == len(f)


def test_learning_then_unicast_only_to_the_right_port(engine):
    p1, p2, p3 = engine.plug(1), engine.plug(2), engine.plug(3)
    p2.send(frame(BCAST, B))               # the switch learns B on port 2
    recv(p1), recv(p3)
    f = frame(B, A, b"unicast")
    p1.send(f)
    assert recv(p2) == f
    nothing(p3)
    entries = {(e.mac.hex(":"), e.port) for e in engine.dp.table_entries()}
    assert entries == {(B, 2), (A, 1)}


def test_unknown_unicast_floods_and_frames_never_return_to_ingress(engine):
    p1, p2 = engine.plug(1), engine.plug(2)
    p1.send(frame(C, A))
    assert recv(p2) == frame(C, A)
    p1.send(frame(A, A, b"to myself"))     # A is known on port 1: dropped, not hair-pinned
    nothing(p1, p2)


def test_multicast_floods(engine):
    p1, p2, p3 = engine.plug(1), engine.plug(2), engine.plug(3)
    p3.send(frame(BCAST, C))
    recv(p1), recv(p2)
    f = frame("01:00:5e:00:00:01", A)
    p1.send(f)
    assert recv(p2) == f and recv(p3) == f


def test_aging_with_injected_time(engine):
    engine.dp.use_manual_clock(1000.0)
    p1, p2, p3 = engine.plug(1), engine.plug(2), engine.plug(3)
    p2.send(frame(BCAST, B))
    recv(p1), recv(p3)
    engine.dp.use_manual_clock(1099.0)     # 99 s later: still known
    p1.send(frame(B, A))
    recv(p2)
    nothing(p3)
    engine.dp.use_manual_clock(1100.0)     # 100 s after B was last seen: expired
    p1.send(frame(B, A))
    assert recv(p2) == frame(B, A) and recv(p3) == frame(B, A)
    assert B not in {e.mac.hex(":") for e in engine.dp.table_entries()}


def test_minimum_persistence_resists_flapping(engine):
    engine.dp.use_manual_clock(0.0)
    p1, p2, p3 = engine.plug(1), engine.plug(2), engine.plug(3)
    p2.send(frame(BCAST, B))
    recv(p1), recv(p3)
    engine.dp.use_manual_clock(1.0)
    p3.send(frame(BCAST, B))               # B shows up on port 3 after 1 s: not moved
    recv(p1), recv(p2)
    assert engine.dp.table_find(bytes.fromhex("02000000000b")).port == 2
    engine.dp.use_manual_clock(3.0)        # 3 s after it was last seen on port 2: moved
    p3.send(frame(BCAST, B))
    recv(p1), recv(p2)
    assert engine.dp.table_find(bytes.fromhex("02000000000b")).port == 3
    assert engine.dp.stats()["mac_moved"] == 1 and engine.dp.stats()["mac_kept"] == 1


def test_port_going_inactive_flushes_its_macs(engine):
    p1, p2 = engine.plug(1), engine.plug(2)
    p2.send(frame(BCAST, B))
    recv(p1)
    assert engine.dp.table_find(bytes.fromhex("02000000000b")) is not None
    engine.dp.remove_endpoint(p2.endpoint)
    assert engine.dp.table_find(bytes.fromhex("02000000000b")) is None
    assert not engine.dp.port_active(2)


def test_short_and_oversize_frames_are_dropped_and_counted():
    e = Engine(maxframe=1518)
    try:
        p1, p2 = e.plug(1), e.plug(2)
        p1.send(bytes(13))
        p1.send(b"")                       # vde_close()'s goodbye: ignored, not counted
        p1.send(frame(BCAST, A, bytes(1519 - 14)))
        ok = frame(BCAST, A, bytes(range(256)) * 5 + bytes(1518 - 14 - 1280))
        p1.send(ok)
        assert recv(p2) == ok
        nothing(p2)
        st = e.dp.port_stats(1)
        assert (st.drop_runt, st.drop_oversize, st.in_frames) == (1, 1, 1)
        p1.send(frame(BCAST, A)[:14])      # exactly 14 bytes: a frame
        assert recv(p2) == frame(BCAST, A)[:14]
    finally:
        e.close()


def test_64k_frames_pass_intact():
    e = Engine(maxframe=65550)
    try:
        p1, p2 = e.plug(1), e.plug(2)
        big = frame(BCAST, A, bytes(i % 251 for i in range(65550 - 14)))
        p1.send(big)
        assert recv(p2) == big
    finally:
        e.close()


def test_slow_receiver_never_blocks_the_others(engine):
    p1, p2, _stuck = engine.plug(1), engine.plug(2), engine.plug(3)   # port 3 never reads
    f = frame(BCAST, A, bytes(1000))
    for _ in range(60):
        for _ in range(100):
            p1.send(f)
        for _ in range(100):
            assert recv(p2) == f
    assert engine.dp.port_stats(2).out_frames == 6000
    assert engine.dp.port_stats(3).drop_tx > 0
    assert engine.dp.port_stats(3).out_frames + engine.dp.port_stats(3).drop_tx == 6000


def test_several_endpoints_on_one_port_each_get_a_copy(engine):
    p1, p2a, p2b = engine.plug(1), engine.plug(2), engine.plug(2)
    f = frame(BCAST, A)
    p1.send(f)
    assert recv(p2a) == f and recv(p2b) == f
    p2a.send(frame(BCAST, B))              # not sent to the port's other endpoint
    assert recv(p1) == frame(BCAST, B)
    nothing(p2b)


def test_hub_mode_floods_everything_and_learns_nothing(engine):
    engine.dp.hub = True
    p1, p2, p3 = engine.plug(1), engine.plug(2), engine.plug(3)
    p2.send(frame(BCAST, B))
    recv(p1), recv(p3)
    p1.send(frame(B, A))
    assert recv(p2) == frame(B, A) and recv(p3) == frame(B, A)
    nothing(p1)
    assert engine.dp.table_entries() == []


def test_vlan_tagging_on_trunks(engine):
    dp = engine.dp
    dp.vlan_create(10)
    access0, other0, access10, trunk = engine.plug(1), engine.plug(2), engine.plug(3), engine.plug(4)
    dp.set_untagged(3, 10)
    dp.add_tagged(10, 4)
    f = frame(BCAST, C, bytes(range(46)))
    access10.send(f)                       # untagged on VLAN 10 -> tagged on the trunk
    assert recv(trunk) == f[:12] + b"\x81\x00\x00\x0a" + f[12:]
    nothing(access0, other0)
    tagged = frame(BCAST, D)[:12] + b"\x81\x00\xa0\x0a" + b"\x08\x00" + bytes(46)
    trunk.send(tagged)                     # PCP 5, VID 10 -> untagged on the access port
    assert recv(access10) == tagged[:12] + tagged[16:]
    nothing(access0, other0)
    trunk.send(frame(BCAST, D)[:12] + b"\x81\x00\x00\x14" + bytes(48))   # VLAN 20: no such VLAN
    trunk.send(frame(BCAST, D))            # untagged from the trunk: its VLAN 0
    assert recv(access0) == frame(BCAST, D) and recv(other0) == frame(BCAST, D)
    nothing(access10)
    assert dp.port_stats(4).drop_vlan == 1
    dp.set_untagged(2, NOVLAN)             # no untagged VLAN: untagged input dropped
    other0.send(frame(BCAST, B))
    nothing(access0, access10, trunk)
    assert dp.port_stats(2).drop_vlan == 1


def test_learning_is_per_vlan(engine):
    dp = engine.dp
    dp.vlan_create(10)
    p1, p2, p3 = engine.plug(1), engine.plug(2), engine.plug(3)
    dp.add_tagged(10, 1)
    dp.add_tagged(10, 3)
    p2.send(frame(BCAST, B))               # B learned on VLAN 0 / port 2
    recv(p1), recv(p3)
    p1.send(frame(B, A)[:12] + b"\x81\x00\x00\x0a" + bytes(48))   # B on VLAN 10: unknown
    assert recv(p3)[:16] == frame(B, A)[:12] + b"\x81\x00\x00\x0a"
    nothing(p2)


def test_control_calls_while_frames_flow(engine):
    """Adding and removing endpoints and reading state while the engine forwards."""
    p1, p2 = engine.plug(1), engine.plug(2)
    f = frame(BCAST, A, bytes(100))
    for i in range(200):
        p1.send(f)
        extra = engine.plug(3 + i % 4)
        engine.dp.port_stats(1)
        engine.dp.table_entries()
        engine.dp.remove_endpoint(extra.endpoint)
        assert recv(p2) == f
