"""pyvde-cable's sealed-mode handshake (cable-spec.md, "Sealed mode: the wire protocol"):
the byte layouts, the key derivation, every acceptance rule, the timers, and whole
conversations between two Handshake objects over an in-memory network with a model of
the C engine's session slots (current / pending / previous)."""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugs.cable.handshake import (
    HELLO_SIZE,
    REASONS,
    REKEY_SIZE,
    REPLY_SIZE,
    Handshake,
    Hello,
    InstallSession,
    PacketRefused,
    Refused,
    Rekey,
    Reply,
    SendDatagram,
    SendKeepalive,
    build_hello,
    build_rekey,
    build_reply,
    derive_keys,
    parse,
    parse_hello,
    parse_rekey,
    parse_reply,
)

K = bytes(range(32))
OTHER_K = bytes(range(1, 33))
W = 1_700_000_000.0                 # the wall clock at monotonic time 0
NONCE = bytes(range(100, 124))


def rand(seed: int):
    return random.Random(seed).randbytes


def us(wall: float) -> int:
    return int(wall * 1e6)


def blake_mac(key: bytes, message: bytes) -> bytes:
    return hashlib.blake2b(message, key=key, digest_size=16).digest()


def handshake_pair(keepalive: float = 5.0, psk_r: bytes = K):
    """An initiator that has sent its HELLO at t=0 and a responder."""
    ini = Handshake(K, initiator=True, keepalive=keepalive, rand=rand(1))
    res = Handshake(psk_r, initiator=False, keepalive=keepalive, rand=rand(2))
    [hello] = ini.start(0.0, W, "R")
    return ini, res, hello


def established(keepalive: float = 5.0, at: float = 0.25):
    """A handshake completed at t=`at`: (initiator, responder, its session, theirs)."""
    ini, res, hello = handshake_pair(keepalive)
    pending, reply = res.datagram(hello.data, "I", at, W + at)
    current, keepalive_effect = ini.datagram(reply.data, "R", at, W + at)
    assert keepalive_effect == SendKeepalive()
    return ini, res, current, pending


# --- the wire format -----------------------------------------------------------------

def test_hello_layout():
    data = build_hello(K, 0x04030201, 0x0102030405060708, NONCE)
    assert len(data) == HELLO_SIZE == 54
    assert data[:2] == b"\x01\x01"
    assert data[2:6] == bytes([1, 2, 3, 4])
    assert data[6:14] == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert data[14:38] == NONCE
    assert data[38:] == blake_mac(K, data[:38])
    assert parse_hello(K, data) == Hello(0x04030201, 0x0102030405060708, NONCE)


def test_reply_layout():
    data = build_reply(K, 7, 0xDEADBEEF, NONCE)
    assert len(data) == REPLY_SIZE == 50
    assert data[:2] == b"\x02\x01"
    assert data[2:6] == (7).to_bytes(4, "little")
    assert data[6:10] == (0xDEADBEEF).to_bytes(4, "little")
    assert data[10:34] == NONCE
    assert data[34:] == blake_mac(K, data[:34])
    assert parse_reply(K, data) == Reply(7, 0xDEADBEEF, NONCE)


def test_rekey_layout():
    data = build_rekey(K, 0xCAFE, us(W))
    assert len(data) == REKEY_SIZE == 30
    assert data[:2] == b"\x05\x01"
    assert data[2:6] == (0xCAFE).to_bytes(4, "little")
    assert data[6:14] == us(W).to_bytes(8, "little")
    assert data[14:] == blake_mac(K, data[:14])
    assert parse_rekey(K, data) == Rekey(0xCAFE, us(W))
    assert parse(K, bytearray(data)) == Rekey(0xCAFE, us(W))


def test_a_nonce_must_be_24_bytes():
    with pytest.raises(ValueError):
        build_hello(K, 1, 1, b"short")


def test_derive_keys_is_the_spec_s_formula():
    nonce_i, nonce_r = bytes(24), bytes(range(24))
    okm = hashlib.blake2b(b"pyvde-cable v1 keys" + nonce_i + nonce_r
                          + (5).to_bytes(4, "little") + (0x01020304).to_bytes(4, "little"),
                          key=K, digest_size=64).digest()
    assert derive_keys(K, nonce_i, nonce_r, 5, 0x01020304) == (okm[:32], okm[32:])
    assert derive_keys(K, nonce_i, nonce_r, 0x01020304, 5) != (okm[:32], okm[32:])
    assert derive_keys(OTHER_K, nonce_i, nonce_r, 5, 0x01020304) != (okm[:32], okm[32:])


HELLO_BYTES = build_hello(K, 1, us(W), NONCE)


def _with(data: bytes, i: int, value: int) -> bytes:
    return data[:i] + bytes([value]) + data[i + 1:]


@pytest.mark.parametrize("data,reason", [
    (b"", "truncated"),
    (b"\x01", "truncated"),
    (b"\x02", "truncated"),
    (HELLO_BYTES[:53], "truncated"),
    (HELLO_BYTES + b"\x00", "truncated"),
    (build_reply(K, 1, 2, NONCE)[:49], "truncated"),
    (build_rekey(K, 1, 2)[:29], "truncated"),
    (build_rekey(K, 1, 2) + bytes(20), "truncated"),
    (b"\x00" * 54, "unknown type"),
    (b"\x03" + bytes(60), "unknown type"),          # DATA is the engine's
    (b"\x04\x01" + bytes(28), "unknown type"),
    (b"\xff", "unknown type"),
    (_with(HELLO_BYTES, 1, 2), "bad version"),
    (b"\x05\x00", "bad version"),
    (_with(HELLO_BYTES, 53, HELLO_BYTES[53] ^ 1), "bad MAC"),
    (_with(HELLO_BYTES, 20, HELLO_BYTES[20] ^ 0x80), "bad MAC"),
    (build_hello(OTHER_K, 1, us(W), NONCE), "bad MAC"),
    (build_reply(OTHER_K, 1, 2, NONCE), "bad MAC"),
    (build_rekey(OTHER_K, 1, 2), "bad MAC"),
])
def test_refused_datagrams(data, reason):
    with pytest.raises(PacketRefused) as e:
        parse(K, data)
    assert e.value.reason == str(e.value) == reason
    for side in (Handshake(K, True, 5, rand(1)), Handshake(K, False, 5, rand(1))):
        assert side.datagram(data, "X", 0.0, W) == [Refused(reason)]


def test_a_typed_parser_refuses_the_other_types():
    with pytest.raises(PacketRefused, match="unknown type"):
        parse_reply(K, HELLO_BYTES)


# --- a handshake, step by step ---------------------------------------------------------

def test_a_full_handshake_gives_both_sides_the_same_keys():
    ini, res, hello = handshake_pair()
    assert isinstance(hello, SendDatagram) and hello.addr == "R"
    h = parse_hello(K, hello.data)
    assert h.index != 0 and h.timestamp == us(W)
    assert ini.handshaking and not ini.established

    pending, reply = res.datagram(hello.data, "I", 0.1, W + 0.1)
    assert isinstance(pending, InstallSession) and pending.slot == "pending"
    assert reply == SendDatagram(reply.data, "I")
    r = parse_reply(K, reply.data)
    assert (r.receiver_index, pending.my_index, pending.peer_index, pending.addr) == (
        h.index, r.sender_index, h.index, "I")
    assert not res.established

    current, keepalive = ini.datagram(reply.data, "R", 0.2, W + 0.2)
    assert keepalive == SendKeepalive()
    assert current == InstallSession("current", h.index, r.sender_index, current.send_key,
                                     current.recv_key, "R")
    assert (current.send_key, current.recv_key) == (pending.recv_key, pending.send_key)
    key_i2r, key_r2i = derive_keys(K, h.nonce, r.nonce, h.index, r.sender_index)
    assert (current.send_key, current.recv_key) == (key_i2r, key_r2i)
    assert len(key_i2r) == len(key_r2i) == 32 and key_i2r != key_r2i
    assert ini.established and not ini.handshaking

    assert res.promoted(0.3) == []
    assert res.established


def test_the_session_goes_to_where_the_reply_came_from():
    ini, res, hello = handshake_pair()
    _, reply = res.datagram(hello.data, ("10.0.0.2", 4000), 0.1, W)
    current, _ = ini.datagram(reply.data, ("10.9.9.9", 4000), 0.2, W)
    assert current.addr == ("10.9.9.9", 4000)


def test_a_wrong_key_gives_bad_mac_and_no_session():
    ini, res, hello = handshake_pair(psk_r=OTHER_K)
    assert res.datagram(hello.data, "I", 0.1, W) == [Refused("bad MAC")]
    forged = build_reply(OTHER_K, 9, parse_hello(K, hello.data).index, NONCE)
    assert ini.datagram(forged, "R", 0.2, W) == [Refused("bad MAC")]
    assert ini.handshaking and not ini.established and not res.established


def test_a_reply_is_accepted_once():
    ini, res, hello = handshake_pair()
    _, reply = res.datagram(hello.data, "I", 0.1, W)
    assert len(ini.datagram(reply.data, "R", 0.2, W)) == 2
    assert ini.datagram(reply.data, "R", 0.3, W) == [Refused("unexpected REPLY")]


def test_a_reply_to_another_hello_is_unexpected():
    ini, res, hello = handshake_pair()
    index = parse_hello(K, hello.data).index
    other = build_reply(K, 5, index ^ 1, NONCE)
    assert ini.datagram(other, "R", 0.1, W) == [Refused("unexpected REPLY")]
    assert ini.handshaking
    assert res.datagram(build_reply(K, 5, 6, NONCE), "I", 0.1, W) == [
        Refused("unexpected REPLY")]


# --- HELLO acceptance ------------------------------------------------------------------

def responder() -> Handshake:
    return Handshake(K, initiator=False, keepalive=5, rand=rand(3))


def test_a_replayed_hello_is_refused():
    res = responder()
    h1 = build_hello(K, 11, us(W), NONCE)
    first = res.datagram(h1, "A", 0.0, W)
    assert [type(e) for e in first] == [InstallSession, SendDatagram]
    # the same HELLO from another address (a copy raced it, or a NAT moved the initiator):
    # the same REPLY, sent there, and no new session
    assert res.datagram(h1, "B", 0.1, W) == [SendDatagram(first[1].data, "B")]
    # an older or equal timestamp, other bytes: a replay
    assert res.datagram(build_hello(K, 12, us(W) - 1, NONCE), "A", 0.1, W) == [
        Refused("replayed handshake")]
    assert res.datagram(build_hello(K, 12, us(W), bytes(24)), "A", 0.1, W) == [
        Refused("replayed handshake")]
    # a later one is a new handshake; after it, the first one is a replay even from A
    h2 = build_hello(K, 12, us(W) + 1, NONCE)
    assert [type(e) for e in res.datagram(h2, "A", 0.2, W)] == [InstallSession, SendDatagram]
    assert res.datagram(h1, "A", 0.3, W) == [Refused("replayed handshake")]


def test_a_repeated_hello_gets_the_same_reply():
    res = responder()
    h1 = build_hello(K, 11, us(W), NONCE)
    _, reply = res.datagram(h1, "A", 0.0, W)
    assert res.datagram(h1, "A", 1.0, W + 1) == [reply]
    assert res.datagram(h1, "A", 200.0, W + 200) == [reply]     # no new session either


@pytest.mark.parametrize("offset", [-120.0, -1.0, 0.0, 1.0, 119.999999, 120.0])
def test_timestamps_within_120_s_are_fresh(offset):
    hello = build_hello(K, 11, us(W + offset), NONCE)
    assert len(responder().datagram(hello, "A", 0.0, W)) == 2


@pytest.mark.parametrize("offset", [-120.001, 120.001, -3600.0, 86400.0, -W])
def test_timestamps_further_than_120_s_are_stale(offset):
    hello = build_hello(K, 11, us(W + offset), NONCE)
    assert responder().datagram(hello, "A", 0.0, W) == [Refused("stale timestamp")]


def test_our_own_timestamps_increase_when_the_wall_clock_steps_back():
    ini = Handshake(K, True, 5, rand(1))
    [first] = ini.start(0.0, W, "R")
    [second] = ini.tick(31.0, W - 50, 0.0, 0.0)    # HELLO_REUSE passed: a fresh HELLO
    assert parse_hello(K, second.data).timestamp == us(W) + 1
    assert parse_hello(K, first.data).timestamp == us(W)


# --- timers ----------------------------------------------------------------------------

def run_timers(hs: Handshake, until: float, rx: float = 0.0, tx: float = 0.0,
               rx_follows: bool = False):
    """tick() at every next_deadline() up to `until`: [(time, effects)]."""
    out = []
    while (t := hs.next_deadline()) is not None and t <= until:
        if rx_follows:
            rx = t
        effects = hs.tick(t, W + t, rx, tx)
        assert effects, f"a deadline at {t} with nothing to do"
        out.append((t, effects))
    return out


def test_hello_retries_back_off_1_2_4_8_and_renew_after_30_s():
    ini = Handshake(K, True, 5, rand(1))
    [hello] = ini.start(0.0, W, "R")
    assert ini.next_deadline() == 1.0
    assert ini.tick(0.999, W, 0, 0) == []
    sent = run_timers(ini, 64.0)
    assert [t for t, _ in sent] == [1, 3, 7, 15, 23, 31, 39, 47, 55, 63]
    packets = [effects for _, effects in sent]
    assert all(p == [SendDatagram(hello.data, "R")] for p in packets[:5])
    renewed = packets[5][0]
    assert renewed.addr == "R" and renewed.data != hello.data
    h0, h1 = parse_hello(K, hello.data), parse_hello(K, renewed.data)
    assert h1.index != h0.index and h1.timestamp == us(W + 31)
    assert all(p == [renewed] for p in packets[6:9])
    assert packets[9][0].data != renewed.data                 # 63 - 31 >= 30


def test_a_responder_has_no_timers_until_it_has_a_session():
    res = responder()
    assert res.next_deadline() is None and res.tick(100.0, W, 0, 0) == []
    with pytest.raises(ValueError):
        res.start(0.0, W, "I")


def test_silence_makes_the_initiator_handshake_again():
    ini, _, _, _ = established(keepalive=5, at=0.25)       # nothing arrives after 0.25
    sent = run_timers(ini, 16.25, rx=0.25, tx=0.25)
    assert [(t, e) for t, e in sent] == [
        (5.25, [SendKeepalive()]), (10.25, [SendKeepalive()]), (15.25, [SendKeepalive()]),
        (16.25, [SendDatagram(sent[-1][1][0].data, "R")])]
    assert parse_hello(K, sent[-1][1][0].data).timestamp == us(W + 16.25)


def test_no_silence_rule_while_the_peer_is_heard():
    ini, _, _, _ = established(keepalive=5, at=0.25)
    for t in range(1, 120):
        assert ini.tick(float(t), W + t, float(t), float(t)) == []
    [hello] = ini.tick(120.25, W + 120.25, 120.0, 120.0)     # the 2-minute rekey
    assert isinstance(hello, SendDatagram) and len(hello.data) == HELLO_SIZE


def test_keepalive_zero_disables_keepalives_and_the_silence_rule():
    ini, _, _, _ = established(keepalive=0, at=0.25)
    assert ini.next_deadline() == 120.25
    assert ini.tick(120.0, W + 120, 0.25, 0.25) == []
    [hello] = ini.tick(120.25, W + 120.25, 0.25, 0.25)
    assert isinstance(hello, SendDatagram)


def test_keepalives_when_nothing_was_sent():
    _, res, _, _ = established(keepalive=5, at=0.25)
    assert res.promoted(1.0) == []
    assert res.next_deadline() == 6.0
    assert res.tick(5.99, W, 5.0, 1.0) == []
    assert res.tick(6.0, W, 5.0, 1.0) == [SendKeepalive()]
    assert res.tick(7.0, W, 5.0, 1.0) == []                  # our keepalive counts
    assert res.tick(11.5, W, 11.0, 9.0) == []                 # data went out at 9
    assert res.tick(14.0, W, 11.0, 9.0) == [SendKeepalive()]
    assert res.tick(500.0, W, 0.0, 0.0) == [SendKeepalive()]  # a responder never rekeys


def test_the_responder_of_a_session_does_not_rekey_it():
    both = Handshake(K, initiator=True, keepalive=5, rand=rand(7))   # --connect too
    [hello] = Handshake(K, True, 5, rand(8)).start(0.0, W, "B")
    both.start(0.0, W + 1, "A")                       # ours is later: theirs wins
    pending, _ = both.datagram(hello.data, "A", 0.1, W + 0.1)
    assert pending.slot == "pending" and not both.handshaking
    both.promoted(0.2)
    assert both.tick(200.0, W + 200, 199.0, 199.0) == []


# --- REKEY -----------------------------------------------------------------------------

def test_a_responder_sends_rekey_once_a_second_per_address():
    res = responder()
    [rekey] = res.unknown_index(0xABCD, "A", 10.0, W + 10)
    assert rekey.addr == "A" and parse_rekey(K, rekey.data) == Rekey(0xABCD, us(W + 10))
    assert res.unknown_index(0xABCD, "A", 10.5, W + 10.5) == []
    assert len(res.unknown_index(0xABCD, "B", 10.5, W + 10.5)) == 1
    assert res.unknown_index(0xABCD, "A", 10.999, W + 11) == []
    assert len(res.unknown_index(0xABCD, "A", 11.0, W + 11)) == 1


def test_the_rekey_table_stays_small():
    res = responder()
    sent = [res.unknown_index(1, ("10.0.0.1", port), 0.0, W) for port in range(1000)]
    assert sum(map(len, sent)) == 256
    assert len(res.unknown_index(1, "late", 1.0, W + 1)) == 1     # the old ones are pruned


def test_an_initiator_answers_an_unknown_index_with_a_keepalive():
    ini = Handshake(K, True, 5, rand(1))
    ini.start(0.0, W, "R")
    assert ini.unknown_index(5, "R", 0.5, W) == []            # no session to confirm
    ini, _, _, _ = established(at=0.25)
    assert ini.unknown_index(5, "R", 3.0, W + 3) == [SendKeepalive()]
    assert ini.unknown_index(5, "R", 3.5, W + 3.5) == []
    assert ini.unknown_index(5, "X", 3.5, W + 3.5) == [SendKeepalive()]
    assert ini.tick(8.0, W + 8, 8.0, 0.0) == [] and ini.next_deadline() == 8.5


def test_an_authentic_rekey_makes_the_initiator_handshake_at_most_once_a_second():
    ini, _, current, _ = established(at=0.25)
    r1 = build_rekey(K, current.peer_index, us(W + 1))
    [hello] = ini.datagram(r1, "R", 1.0, W + 1)
    assert isinstance(hello, SendDatagram) and hello.addr == "R"
    assert ini.handshaking and ini.next_deadline() == 2.0
    assert ini.datagram(build_rekey(K, current.peer_index, us(W + 1.5)), "R", 1.5,
                        W + 1.5) == []
    [again] = ini.datagram(build_rekey(K, current.peer_index, us(W + 2)), "R", 2.0, W + 2)
    assert again.data != hello.data
    assert ini.datagram(r1, "R", 3.0, W + 3) == [Refused("replayed handshake")]
    assert ini.datagram(build_rekey(K, 1, us(W - 200)), "R", 4.0, W + 4) == [
        Refused("stale timestamp")]
    assert ini.datagram(build_rekey(OTHER_K, 1, us(W + 5)), "R", 5.0, W + 5) == [
        Refused("bad MAC")]


def test_a_rekey_for_another_index_does_nothing():
    """Junk DATA with a made-up index, sent to the peer, makes it send an authentic REKEY
    for that index; passed on to us it must not start a handshake."""
    ini, _, current, _ = established(at=0.25)
    assert ini.datagram(build_rekey(K, current.peer_index ^ 1, us(W + 1)), "R", 1.0,
                        W + 1) == []
    assert not ini.handshaking


def test_a_rekey_to_a_responder_does_nothing():
    assert responder().datagram(build_rekey(K, 1, us(W)), "A", 0.0, W) == []


# --- both sides with --connect -----------------------------------------------------------

def test_crossing_hellos_the_lower_timestamp_wins():
    a = Handshake(K, initiator=True, keepalive=5, rand=rand(1))
    b = Handshake(K, initiator=True, keepalive=5, rand=rand(2))
    [hello_a] = a.start(0.0, W, "B")
    [hello_b] = b.start(0.0, W + 0.5, "A")
    assert a.datagram(hello_b.data, "B", 0.1, W + 0.1) == []        # ours wins
    assert a.handshaking
    pending, reply = b.datagram(hello_a.data, "A", 0.1, W + 0.6)    # theirs wins
    assert not b.handshaking and pending.slot == "pending"
    current, _ = a.datagram(reply.data, "B", 0.2, W + 0.2)
    assert (current.send_key, current.my_index) == (pending.recv_key, pending.peer_index)
    assert b.datagram(reply.data, "A", 0.2, W) == [Refused("unexpected REPLY")]


def test_a_promotion_ends_our_own_handshake():
    a = Handshake(K, initiator=True, keepalive=5, rand=rand(1))
    a.start(0.0, W + 5, "B")
    [hello_b] = Handshake(K, True, 5, rand(2)).start(0.0, W, "A")
    assert len(a.datagram(hello_b.data, "B", 0.1, W + 5)) == 2    # theirs is earlier
    assert not a.handshaking
    a.start(0.5, W + 5.5, "B")                                     # (say it started again)
    a.promoted(0.6)
    assert not a.handshaking and a.established


# --- Hypothesis: nothing the network sends raises ----------------------------------------

EFFECTS = (SendDatagram, InstallSession, SendKeepalive, Refused)


def check_effects(effects) -> None:
    for e in effects:
        assert isinstance(e, EFFECTS)
        if isinstance(e, Refused):
            assert e.reason in REASONS
        elif isinstance(e, SendDatagram):
            assert len(e.data) in (HELLO_SIZE, REPLY_SIZE, REKEY_SIZE)
        elif isinstance(e, InstallSession):
            assert e.slot in ("current", "pending")
            assert len(e.send_key) == len(e.recv_key) == 32 and e.my_index != 0


u32 = st.integers(0, 2**32 - 1)
stamp = st.one_of(st.integers(0, 2**64 - 1), st.integers(us(W - 200), us(W + 200)))
nonce = st.binary(min_size=24, max_size=24)
authentic = st.one_of(
    st.builds(lambda i, t, n: build_hello(K, i, t, n), u32, stamp, nonce),
    st.builds(lambda s, r, n: build_reply(K, s, r, n), u32, u32, nonce),
    st.builds(lambda i, t: build_rekey(K, i, t), u32, stamp),
)
garbled = st.builds(lambda data, i, x: _with(data, i % len(data), x), authentic,
                    st.integers(0, 60), st.integers(0, 255))
datagrams = st.one_of(st.binary(max_size=80), authentic, garbled)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(datagrams, st.sampled_from(["A", "B"]), st.floats(0, 300)),
                max_size=12))
def test_nothing_from_the_network_raises(messages):
    ini, res, _ = handshake_pair()
    sides = (ini, res, Handshake(K, True, 0, rand(5)))
    for data, addr, t in messages:
        for side in sides:
            check_effects(side.datagram(data, addr, t, W + t))
        try:
            parse(K, data)
        except PacketRefused as e:
            assert e.reason in REASONS


# --- whole conversations: two sides, an engine model, a network -----------------------

@dataclass(frozen=True)
class Data:
    """The engine's DATA, as the model carries it: receiver_index and the sealing key."""
    index: int
    key: bytes


class Side:
    """One pyvde-cable: its Handshake and a model of the C engine's session slots."""

    def __init__(self, addr: str, hs: Handshake, skew: float = 0.0) -> None:
        self.addr, self.hs, self.skew = addr, hs, skew
        self.current: InstallSession | None = None
        self.pending: InstallSession | None = None
        self.previous: InstallSession | None = None
        self.previous_until = 0.0
        self.rx = self.tx = 0.0
        self.refused: list[str] = []
        self.hellos = 0

    def restart(self, hs: Handshake) -> None:
        self.hs = hs
        self.current = self.pending = self.previous = None


class Net:
    STEP = 1 / 64

    def __init__(self, a: Side, b: Side, drop=lambda n, src, packet: False) -> None:
        self.sides = {a.addr: a, b.addr: b}
        self.drop = drop
        self.now = 0.0
        self.sent = 0
        self.queue: list[tuple[str, str, object]] = []

    def wall(self, side: Side) -> float:
        return W + self.now + side.skew

    def start(self, side: Side, peer: str) -> None:
        self.apply(side, side.hs.start(self.now, self.wall(side), peer))

    def apply(self, side: Side, effects: list) -> None:
        check_effects(effects)
        for e in effects:
            if isinstance(e, SendDatagram):
                side.hellos += len(e.data) == HELLO_SIZE
                self.queue.append((side.addr, e.addr, e.data))
            elif isinstance(e, InstallSession) and e.slot == "pending":
                side.pending = e
            elif isinstance(e, InstallSession):
                side.previous, side.previous_until = side.current, self.now + 10
                side.current = e
            elif isinstance(e, SendKeepalive) and side.current is not None:
                self.queue.append((side.addr, side.current.addr,
                                   Data(side.current.peer_index, side.current.send_key)))
                side.tx = self.now
            elif isinstance(e, Refused):
                side.refused.append(e.reason)

    def deliver(self) -> None:
        while self.queue:
            src, dst, packet = self.queue.pop(0)
            self.sent += 1
            side = self.sides.get(dst)
            if side is None or self.drop(self.sent, src, packet):
                continue
            if isinstance(packet, Data):
                self.data(side, src, packet)
            else:
                self.apply(side, side.hs.datagram(packet, src, self.now, self.wall(side)))

    def data(self, side: Side, src: str, packet: Data) -> None:
        if side.previous is not None and self.now >= side.previous_until:
            side.previous = None
        for session in (side.current, side.previous, side.pending):
            if session is not None and session.my_index == packet.index:
                assert session.recv_key == packet.key
                side.rx = self.now
                if session is side.pending:
                    side.previous, side.previous_until = side.current, self.now + 10
                    side.current, side.pending = side.pending, None
                    self.apply(side, side.hs.promoted(self.now))
                return
        self.apply(side, side.hs.unknown_index(packet.index, src, self.now, self.wall(side)))

    def run(self, until: float) -> None:
        self.deliver()
        while self.now < until:
            self.now += self.STEP
            for side in self.sides.values():
                self.apply(side, side.hs.tick(self.now, self.wall(side), side.rx, side.tx))
            self.deliver()


def connected(a: Side, b: Side) -> bool:
    x, y = a.current, b.current
    return (x is not None and y is not None and x.my_index == y.peer_index
            and x.peer_index == y.my_index and x.send_key == y.recv_key
            and x.recv_key == y.send_key and x.addr == b.addr and y.addr == a.addr)


def _same(x: InstallSession | None, y: InstallSession | None) -> bool:
    return (x is not None and y is not None and x.my_index == y.peer_index
            and x.send_key == y.recv_key and x.recv_key == y.send_key)


def agreed(a: Side, b: Side) -> bool:
    """One side's current session is the other's current or pending one (pending: the
    engine promotes it at the first DATA; without keepalives that may be a while)."""
    return (_same(a.current, b.current) or _same(a.current, b.pending)
            or _same(a.pending, b.current))


def pair(keepalive: float = 5.0, both_connect: bool = False, drop=lambda *_: False,
         skew: float = 0.0):
    a = Side("A", Handshake(K, True, keepalive, rand(10)))
    b = Side("B", Handshake(K, both_connect, keepalive, rand(20)), skew)
    net = Net(a, b, drop)
    net.start(a, "B")
    if both_connect:
        net.start(b, "A")
    return a, b, net


def test_two_sides_connect_and_stay_connected_across_rekeys():
    a, b, net = pair()
    net.run(1.0)
    assert connected(a, b) and a.refused == b.refused == []
    first = a.current
    net.run(121.0)
    assert connected(a, b) and a.current != first          # rekeyed once, at 120 s
    assert a.hellos == 2 and b.hellos == 0
    net.run(600.0)
    assert connected(a, b) and a.hellos == 6 and a.refused == b.refused == []


def test_a_lost_reply_is_answered_again_by_the_retried_hello():
    replies = []

    def drop(n, src, packet):
        if isinstance(packet, bytes) and len(packet) == REPLY_SIZE:
            replies.append(packet)
            return len(replies) == 1
        return False

    a, b, net = pair(drop=drop)
    net.run(0.5)
    assert not connected(a, b) and b.pending is not None
    net.run(1.5)
    assert connected(a, b) and replies[0] == replies[1]


def test_a_restarted_initiator_gets_a_new_session():
    a, b, net = pair()
    net.run(30.0)
    old = b.current
    a.restart(Handshake(K, True, 5, rand(99)))
    net.start(a, "B")                           # its wall clock is later: W + 30
    net.run(31.0)
    assert connected(a, b) and b.current != old
    net.run(200.0)
    assert connected(a, b) and b.refused == []


def test_a_restarted_responder_is_rekeyed_within_seconds():
    a, b, net = pair()
    net.run(30.0)
    b.restart(Handshake(K, False, 5, rand(98)))
    net.run(36.0)                               # a keepalive (5 s), a REKEY, a handshake
    assert connected(a, b) and a.refused == b.refused == []
    assert a.hellos == 2


def test_a_lost_confirmation_is_repaired_by_the_peer_s_next_packet():
    lost = {"n": 0}

    def drop(n, src, packet):       # the keepalive that confirms the first rekey
        if net.now >= 120 and src == "A" and isinstance(packet, Data) and not lost["n"]:
            lost["n"] = n
            return True
        return False

    a, b, net = pair(keepalive=25.0, drop=drop)
    net.run(135.0)
    assert lost["n"] and not connected(a, b) and b.pending is not None
    net.run(151.0)          # B's keepalive (at 150) is under a session A has dropped
    assert connected(a, b)


def test_a_silent_peer_is_found_again_after_it_comes_back():
    down = {"on": False}
    a, b, net = pair(drop=lambda n, src, packet: down["on"])
    net.run(10.0)
    down["on"] = True
    net.run(60.0)
    assert a.hs.handshaking                    # silence -> retrying HELLOs
    down["on"] = False
    net.run(70.0)
    assert connected(a, b)


def test_both_sides_connecting_agree_on_one_session():
    a, b, net = pair(both_connect=True, skew=0.5)
    net.run(1.0)
    assert connected(a, b) and a.refused == b.refused == []
    assert b.pending is None and a.pending is None
    net.run(400.0)
    assert connected(a, b) and a.refused == b.refused == []


@settings(max_examples=60, deadline=None)
@given(drops=st.sets(st.integers(1, 40), max_size=12), both_connect=st.booleans(),
       keepalive=st.sampled_from([0.0, 1.0, 5.0]), skew=st.floats(-60, 60))
def test_a_lossy_start_still_ends_connected(drops, both_connect, keepalive, skew):
    a, b, net = pair(keepalive, both_connect, lambda n, src, packet: n in drops, skew)
    net.run(110.0)
    assert connected(a, b) if keepalive else agreed(a, b)
    assert set(a.refused + b.refused) <= {"unexpected REPLY", "replayed handshake"}
