"""The TCP translator core (plugs/slirp/tcp.py), pure: a connection driven with synthetic
guest segments and a fake host socket that carries out the effects as the shell would."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugs.slirp.tcp import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Close,
    Connect,
    Consume,
    Peek,
    Segment,
    Send,
    ShutdownWrite,
    TcpConnection,
    ToGuest,
    WantReadable,
    advertised_mss,
    reset_for,
)

M = 1 << 32
ISN = 1_000_000
GISN = 7_000_000


def rel(a: int, b: int) -> int:
    """a - b modulo 2**32, signed."""
    d = (a - b) % M
    return d - M if d >= M // 2 else d


class Shell:
    """The shell's side of one connection: a fake host socket (its receive queue `rx`,
    what it took `tx`) on which the effects are carried out, in order, with the
    callbacks (sent, peeked) the real shell makes."""

    def __init__(self, conn: TcpConnection, effects=(), *, now: float = 0.0,
                 eof_exact: bool = True) -> None:
        self.conn = conn
        self.now = now
        self.rx = bytearray()       # from the host peer, not consumed yet
        self.eof = False            # the host peer shut down its side
        self.tx = bytearray()       # what the socket took (to the host peer)
        self.room: int | None = None  # what the socket takes before it is full
        self.out: list[Segment] = []  # to the guest, not taken yet
        self.taken_then: list[int] = []  # for each of out: bytes taken from the guest then
        self.log: list = []
        self.reading: bool | None = None
        self.closed: bool | None = None
        self.shut_wr = False
        self.connects = 0
        self.consumed = 0
        self.eof_exact = eof_exact  # False: eof only seen by a peek of an empty queue
        self.run(effects)

    def run(self, effects) -> None:
        for e in effects:
            assert self.closed is None, f"{e} after Close"
            self.log.append(e)
            if isinstance(e, ToGuest):
                self.out.append(e.segment)
                self.taken_then.append(len(self.tx) + self.shut_wr)
            elif isinstance(e, Connect):
                self.connects += 1
            elif isinstance(e, Send):
                assert e.data
                take = len(e.data) if self.room is None else min(self.room, len(e.data))
                if self.room is not None:
                    self.room -= take
                self.tx += e.data[:take]
                self.run(self.conn.sent(take, self.now))
            elif isinstance(e, Peek):
                assert e.length > 0, e
                assert 0 <= e.offset <= len(self.rx), (e, len(self.rx))
                data = bytes(self.rx[e.offset:e.offset + e.length])
                if self.eof_exact:
                    eof = self.eof and e.offset + len(data) == len(self.rx)
                else:
                    eof = self.eof and not self.rx
                self.run(self.conn.peeked(data, eof, self.now))
            elif isinstance(e, Consume):
                assert 0 < e.count <= len(self.rx), (e, len(self.rx))
                del self.rx[:e.count]
                self.consumed += e.count
            elif isinstance(e, ShutdownWrite):
                assert not self.shut_wr
                self.shut_wr = True
            elif isinstance(e, Close):
                assert self.conn.finished
                self.closed = e.reset
            elif isinstance(e, WantReadable):
                self.reading = e.on
            else:
                raise TypeError(f"unknown effect {e!r}")

    def guest(self, seg: Segment) -> None:
        self.run(self.conn.from_guest(seg, self.now))

    def take(self) -> list[Segment]:
        out, self.out = self.out, []
        self.taken_then = []
        return out

    def pump(self, limit: int = 100_000) -> None:
        """Level-triggered readability: readable() while watched and the socket has
        data or EOF; each call must send something or stop the watching."""
        for _ in range(limit):
            if self.closed is not None or not self.reading or not (self.rx or self.eof):
                return
            before = len(self.out)
            self.run(self.conn.readable(self.now))
            if self.reading and len(self.out) == before and self.closed is None:
                raise AssertionError("busy loop: readable() sent nothing, kept watching")
        raise AssertionError("pump did not settle")

    def timer(self) -> None:
        self.run(self.conn.timer(self.now))

    def until(self, t: float) -> None:
        """Run the timers up to time t."""
        while (d := self.conn.next_deadline()) is not None and d <= t:
            self.now = max(self.now, d)
            self.timer()
        self.now = max(self.now, t)


class Guest:
    """The guest's TCP as far as these tests need: in-order receive (out-of-order
    segments are dropped), cumulative ACKs, its window."""

    def __init__(self, isn: int = GISN, window: int = 1 << 20, wscale: int | None = 7) -> None:
        self.isn = isn
        self.snd = (isn + 1) % M    # next seq the guest sends
        self.rcv: int | None = None  # next seq expected from the connection
        self.acked: int | None = None  # the last ACK sent
        self.window = window
        self.ws = wscale or 0
        self.data = bytearray()
        self.dups = 0
        self.fin = False
        self.max_flight = 0

    def field(self) -> int:
        return min(self.window >> self.ws, 0xFFFF)

    def seg(self, flags: int = ACK, payload: bytes = b"", seq_delta: int = 0) -> Segment:
        return Segment((self.snd + seq_delta) % M, self.rcv % M, flags, self.field(), payload)

    def ack(self) -> Segment:
        self.acked = self.rcv
        return self.seg()

    def receive(self, seg: Segment) -> None:
        if seg.flags & RST:
            return
        if self.acked is not None and seg.payload:
            end = rel(seg.seq + len(seg.payload), self.acked)
            self.max_flight = max(self.max_flight, end)
        off = rel(seg.seq, self.rcv)
        if seg.payload:
            if off > 0:
                return
            new = seg.payload[-off:] if off < 0 else seg.payload
            if off < 0 and -off >= len(seg.payload):
                new = b""
            self.dups += len(seg.payload) - len(new)
            self.data += new
            self.rcv = (self.rcv + len(new)) % M
        if seg.flags & FIN and rel(seg.seq + len(seg.payload), self.rcv) == 0:
            self.fin = True
            self.rcv = (self.rcv + 1) % M


def open_outbound(*, mtu: int = 1500, isn: int = ISN, guest: Guest | None = None,
                  mss: int | None = 1460, now: float = 0.0, **kw) -> tuple[Shell, Guest]:
    """An outbound connection through the handshake, ESTABLISHED."""
    g = guest or Guest()
    syn = Segment(g.isn, 0, SYN, 64240, mss=mss, wscale=g.ws if g.ws else None)
    conn, eff = TcpConnection.from_guest_syn(syn, mtu, now, isn)
    assert eff == [Connect()]
    sh = Shell(conn, eff, now=now, **kw)
    sh.run(conn.connected(True, now))
    (synack,) = sh.take()
    assert synack.flags == SYN | ACK
    g.rcv = (synack.seq + 1) % M
    sh.guest(g.ack())
    assert conn.state == "ESTABLISHED"
    assert sh.reading is True
    return sh, g


def deliver(sh: Shell, g: Guest, *, ack_every: int = 2, limit: int = 100_000) -> None:
    """Move segments to the guest, the guest acking every ack_every segments and at
    the end of each batch, until nothing more comes."""
    for _ in range(limit):
        sh.pump()
        segs = sh.take()
        if not segs:
            return
        for i, s in enumerate(segs):
            g.receive(s)
            if (i + 1) % ack_every == 0 or i == len(segs) - 1:
                sh.guest(g.ack())
    raise AssertionError("no end")


def data_of(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


# ---- handshake ------------------------------------------------------------------------

@pytest.mark.parametrize("mtu,mss", [(1500, 1460), (576, 536), (4136, 4096), (4200, 4096),
                                     (9000, 8192), (65520, 61440), (70000, 61440)])
def test_advertised_mss(mtu, mss):
    assert advertised_mss(mtu) == mss


def test_handshake_outbound():
    syn = Segment(GISN, 0, SYN, 64240, mss=1460, wscale=7)
    conn, eff = TcpConnection.from_guest_syn(syn, 65520, 0.0, ISN)
    assert eff == [Connect()]
    assert conn.state == "CONNECTING"
    assert conn.from_guest(syn, 0.5) == []          # repeated SYN while connecting
    assert conn.next_deadline() == 10.0
    (e,) = conn.connected(True, 1.0)
    s = e.segment
    assert (s.seq, s.ack, s.flags) == (ISN, GISN + 1, SYN | ACK)
    assert (s.mss, s.wscale, s.window) == (61440, 7, 65535)
    assert conn.state == "SYN_RCVD"
    assert conn.from_guest(syn, 1.1) == [e]         # SYN-ACK lost: it goes again
    eff = conn.from_guest(Segment(GISN + 1, ISN + 1, ACK, 502), 1.2)
    assert eff == [WantReadable(True)]
    assert conn.state == "ESTABLISHED"
    assert conn.snd_wnd == 502 << 7
    assert conn.dropped == 0


def test_handshake_without_window_scaling():
    syn = Segment(GISN, 0, SYN, 5000)               # no MSS, no wscale
    conn, _ = TcpConnection.from_guest_syn(syn, 1500, 0.0, ISN)
    (e,) = conn.connected(True, 0.0)
    assert e.segment.wscale is None and e.segment.mss == 1460
    assert conn.guest_mss == 536
    conn.from_guest(Segment(GISN + 1, ISN + 1, ACK, 5000), 0.0)
    assert conn.snd_wnd == 5000                     # unscaled
    sh = Shell(conn)
    sh.reading = True
    sh.rx += data_of(3000)
    sh.pump()
    segs = sh.take()
    assert [len(s.payload) for s in segs] == [536] * 5 + [320]   # the guest's default MSS
    assert [s.flags for s in segs] == [ACK] * 5 + [ACK | PSH]
    assert segs[0].window == 65535                  # 1 MiB does not fit unscaled


def test_connect_refused():
    syn = Segment(GISN, 0, SYN, 64240)
    conn, _ = TcpConnection.from_guest_syn(syn, 1500, 0.0, ISN)
    eff = conn.connected(False, 0.1)
    assert eff == [ToGuest(Segment(0, GISN + 1, RST | ACK, 0)), Close(reset=False)]
    assert conn.finished and conn.next_deadline() is None
    assert conn.from_guest(syn, 0.2) == [] and conn.timer(100.0) == []


def test_host_error_while_connecting_is_a_refusal():
    conn, _ = TcpConnection.from_guest_syn(Segment(GISN, 0, SYN, 100), 1500, 0.0, ISN)
    assert conn.host_error(0.5) == [ToGuest(Segment(0, GISN + 1, RST | ACK, 0)),
                                   Close(reset=False)]


def test_connect_timeout():
    conn, _ = TcpConnection.from_guest_syn(Segment(GISN, 0, SYN, 100), 1500, 0.0, ISN)
    assert conn.timer(9.9) == []
    eff = conn.timer(10.0)
    assert eff == [ToGuest(Segment(0, GISN + 1, RST | ACK, 0)), Close(reset=False)]
    assert conn.connected(True, 10.5) == [] and conn.dropped == 1


def test_synack_retransmitted_then_handshake_timeout():
    conn, _ = TcpConnection.from_guest_syn(Segment(GISN, 0, SYN, 100), 1500, 0.0, ISN)
    (synack,) = conn.connected(True, 0.0)
    sh = Shell(conn)
    times = []
    while not conn.finished:
        sh.now = conn.next_deadline()
        times.append(sh.now)
        sh.timer()
    assert times == [1.0, 3.0, 7.0, 10.0]
    out = sh.take()
    assert out[:3] == [synack.segment] * 3
    assert out[3].flags & RST and out[3].ack == GISN + 1
    assert sh.closed is True


def test_unacceptable_ack_in_syn_rcvd_gets_rst():
    conn, _ = TcpConnection.from_guest_syn(Segment(GISN, 0, SYN, 100), 1500, 0.0, ISN)
    conn.connected(True, 0.0)
    eff = conn.from_guest(Segment(GISN + 1, ISN + 77, ACK, 100), 0.1)
    assert eff == [ToGuest(Segment(ISN + 77, 0, RST, 0))]
    assert conn.state == "SYN_RCVD"
    conn.from_guest(Segment(GISN + 1, ISN + 1, ACK, 100), 0.2)
    assert conn.state == "ESTABLISHED"


def test_guest_rst_during_handshake():
    conn, _ = TcpConnection.from_guest_syn(Segment(GISN, 0, SYN, 100), 1500, 0.0, ISN)
    assert conn.from_guest(Segment(GISN + 5, 0, RST, 0), 0.1) == []   # not its seq
    assert conn.from_guest(Segment(GISN + 1, 0, RST, 0), 0.1) == [Close(reset=True)]
    conn, _ = TcpConnection.from_guest_syn(Segment(GISN, 0, SYN, 100), 1500, 0.0, ISN)
    conn.connected(True, 0.0)
    assert conn.from_guest(Segment(GISN + 1, ISN + 1, RST | ACK, 0), 0.1) == [Close(reset=True)]


def test_not_a_syn():
    conn, eff = TcpConnection.from_guest_syn(Segment(GISN, ISN, ACK, 100), 1500, 0.0, 1)
    assert conn.finished and eff == [ToGuest(Segment(ISN, 0, RST, 0))]
    conn, eff = TcpConnection.from_guest_syn(Segment(GISN, 0, RST, 100), 1500, 0.0, 1)
    assert conn.finished and eff == []
    assert reset_for(Segment(5, 0, SYN | FIN, 0, b"abc")) == Segment(0, 10, RST | ACK, 0)


def test_readable_before_established_stops_watching():
    conn, _ = TcpConnection.from_guest_syn(Segment(GISN, 0, SYN, 100), 1500, 0.0, ISN)
    assert conn.readable(0.1) == [WantReadable(False)]
    assert conn.readable(0.2) == []


# ---- host -> guest --------------------------------------------------------------------

@pytest.mark.parametrize("eof_exact", [True, False])
@pytest.mark.parametrize("window,mtu", [(64 * 1024, 1500), (1 << 20, 1500), (1 << 20, 65520)])
def test_bulk_host_to_guest(window, mtu, eof_exact):
    g = Guest(window=window)
    sh, g = open_outbound(guest=g, mtu=mtu, mss=mtu - 40, eof_exact=eof_exact)
    data = data_of(1 << 20)
    sh.rx += data
    sh.eof = True
    deliver(sh, g)
    assert g.data == data and g.dups == 0 and g.fin
    assert g.max_flight <= window
    assert sh.consumed == len(data) and not sh.rx
    assert sh.conn.state == "FIN_WAIT_2" and sh.reading is False
    assert sh.conn.retransmits == sh.conn.fast_retransmits == 0
    sh.guest(g.seg(FIN | ACK))
    assert sh.shut_wr and sh.closed is False
    assert sh.take() == [Segment(ISN + len(data) + 2, GISN + 2, ACK, 8192)]


def test_data_in_flight_does_not_keep_the_shell_reading():
    sh, g = open_outbound()
    sh.rx += b"hello"
    sh.pump()
    (s,) = sh.take()
    assert s.payload == b"hello" and s.flags == ACK | PSH
    assert sh.reading is False          # only unacknowledged data left in the socket
    sh.rx += b" world"                  # arrives meanwhile: goes with the guest's ACK
    g.receive(s)
    sh.guest(g.ack())
    (s,) = sh.take()
    assert s.payload == b" world"
    g.receive(s)
    sh.guest(g.ack())
    assert sh.reading is True and not sh.rx


def test_retransmission_timeout_backoff_and_give_up():
    sh, _g = open_outbound()
    sh.rx += data_of(5 * 1460)
    sh.pump()
    first = sh.take()
    assert len(first) == 5
    times = []
    while not sh.conn.finished:
        sh.now = sh.conn.next_deadline()
        times.append(sh.now)
        sh.timer()
        out = sh.take()
        if not sh.conn.finished:
            assert out == first                 # the same segments again
    assert times == [1, 3, 7, 15, 31, 63, 123, 183]
    assert out[0].flags == RST | ACK and out[0].seq == ISN + 1 + 5 * 1460
    assert sh.closed is True and sh.conn.retransmits == 7


def test_retransmission_after_loss_then_progress_resets_the_timer():
    sh, g = open_outbound()
    data = data_of(3 * 1460)
    sh.rx += data
    sh.pump()
    segs = sh.take()
    g.receive(segs[0])                          # segments 2 and 3 are lost
    sh.now = 0.5
    sh.guest(g.ack())
    assert Consume(1460) in sh.log and sh.take() == []
    assert sh.conn.next_deadline() == 1.5       # restarted by the ACK
    sh.now = 1.5
    sh.timer()
    again = sh.take()
    assert [s.seq for s in again] == [s.seq for s in segs[1:]]
    sh.now = 4.0                                # RTO now 2 s: the timer fires at 3.5
    sh.timer()
    assert sh.take() == again
    assert sh.conn.rto == 4.0
    for s in again:
        g.receive(s)
    sh.guest(g.ack())
    assert g.data == data and sh.conn.rto == 1.0 and sh.conn.retries == 0
    assert sh.conn.next_deadline() == 4.0 + 7200


def test_fast_retransmit_on_three_duplicate_acks():
    sh, g = open_outbound()
    data = data_of(20 * 1460)
    sh.rx += data
    sh.pump()
    segs = sh.take()
    assert len(segs) == 20
    for i, s in enumerate(segs):
        if i == 1:
            continue                            # lost
        g.receive(s)
        sh.guest(g.ack())
        if i == 4:                              # the third duplicate ACK
            assert sh.conn.fast_retransmits == 1
            again = sh.take()
            assert again[0].seq == segs[1].seq
            assert b"".join(x.payload for x in again) == data[1460:]
    assert sh.conn.fast_retransmits == 1        # the later duplicates change nothing
    assert sh.take() == []
    for s in again:
        g.receive(s)
        sh.guest(g.ack())
    assert g.data == data and g.dups == 0
    assert sh.conn.retransmits == 0 and sh.consumed == len(data)


def test_zero_window_probes_then_resume():
    g = Guest(window=8192)
    sh, g = open_outbound(guest=g)
    data = data_of(100_000)
    sh.rx += data
    sh.pump()
    for s in sh.take():
        g.receive(s)
    assert len(g.data) == 8192 and sh.reading is False    # the window is full
    g.window = 0
    sh.now = 0.2
    sh.guest(g.ack())
    assert sh.take() == []
    assert sh.conn.next_deadline() == pytest.approx(1.2)
    times = []
    for _ in range(20):                 # the guest answers every probe, for a long time
        sh.now = sh.conn.next_deadline()
        times.append(round(sh.now - 0.2, 6))
        sh.timer()
        (probe,) = sh.take()
        assert probe.flags == ACK and not probe.payload
        assert probe.seq == (ISN + 8192) % M    # acknowledged - 1: out of window
        sh.guest(g.ack())
    assert times[:8] == [1, 3, 7, 15, 31, 63, 123, 183]
    assert not sh.conn.finished and sh.conn.probes == 20
    g.window = 1 << 20
    sh.guest(g.ack())                   # the window opens: the data comes at once
    deliver(sh, g)
    assert g.data == data and g.dups == 0
    assert sh.reading is True           # everything acked, the socket empty
    assert WantReadable(False) in sh.log


def test_zero_window_probes_unanswered_give_up():
    g = Guest(window=2920)
    sh, g = open_outbound(guest=g)
    sh.rx += data_of(10_000)
    sh.pump()
    for s in sh.take():
        g.receive(s)
    g.window = 0
    sh.guest(g.ack())
    probes = 0
    while not sh.conn.finished:
        sh.now = sh.conn.next_deadline()
        sh.timer()
        probes += 1
    assert probes == 8 and sh.conn.probes == 7
    assert sh.take()[-1].flags == RST | ACK and sh.closed is True


def test_window_shrinks_to_zero_with_data_in_flight():
    sh, g = open_outbound()
    sh.rx += data_of(4 * 1460)
    sh.pump()
    segs = sh.take()
    g.window = 0                        # acks nothing, shuts the window
    sh.guest(g.ack())
    sh.now = 1.0
    sh.timer()                          # RTO: rewound, but nothing fits
    assert sh.take() == []
    sh.now = 2.0
    sh.timer()                          # a persist probe instead
    assert [s.payload for s in sh.take()] == [b""]
    g.window = 1 << 20
    sh.guest(g.ack())
    again = sh.take()
    assert [s.seq for s in again] == [s.seq for s in segs]


def test_window_full_then_open_when_the_socket_had_more():
    g = Guest(window=2 * 1460)
    sh, g = open_outbound(guest=g)
    sh.rx += data_of(5000)
    sh.pump()
    first = sh.take()
    assert len(first) == 2 and sh.reading is False
    assert sh.conn.readable(0.0) == []          # still full: nothing, still not watching
    for s in first:
        g.receive(s)
    sh.guest(g.ack())                           # room: peeked without waiting for the poller
    rest = 5000 - sum(len(s.payload) for s in first)
    assert [len(s.payload) for s in sh.take()] == [1460, rest - 1460]


# ---- guest -> host --------------------------------------------------------------------

def test_guest_data_partial_take():
    sh, g = open_outbound()
    payload = data_of(3000, seed=2)
    sh.room = 1000
    sh.guest(g.seg(ACK | PSH, payload))
    assert sh.tx == payload[:1000]
    (a,) = sh.take()
    assert a.ack == GISN + 1 + 1000 and a.window == 0
    # the rest of a burst meanwhile: out of order now, a duplicate ACK each (and held)
    more = data_of(500, seed=3)
    sh.guest(g.seg(ACK, more, seq_delta=3000))
    (d,) = sh.take()
    assert d.ack == a.ack and sh.tx == payload[:1000]
    sh.room = None
    sh.run(sh.conn.writable(0.0))
    (w,) = sh.take()
    assert w.ack == a.ack and w.window == (1 << 20) >> 7
    assert sh.conn.writable(0.0) == []
    sh.guest(g.seg(ACK | PSH, payload))        # the guest retransmits from its acked point
    assert sh.tx == payload + more              # the held segment follows, not sent again
    acks = sh.take()
    assert acks[-1].ack == GISN + 1 + 3500 and acks[-1].window == 8192
    sends = [e for e in sh.log if isinstance(e, Send)]
    assert sends[-2:] == [Send(payload[1000:]), Send(more)]


def test_out_of_order_data_is_held_until_the_gap_fills():
    sh, g = open_outbound()
    a, b, c = data_of(1000, seed=4), data_of(1000, seed=5), data_of(1000, seed=6)
    sh.guest(g.seg(ACK, c, seq_delta=2000))     # lost: a and b
    sh.guest(g.seg(ACK, b, seq_delta=1000))
    assert sh.tx == b"" and {s.ack for s in sh.take()} == {GISN + 1}
    sh.guest(g.seg(ACK, a))                     # the retransmission fills the gap
    assert sh.tx == a + b + c
    assert sh.take()[-1].ack == GISN + 1 + 3000
    sh.guest(g.seg(ACK, b, seq_delta=1000))     # a late copy: acknowledged, not written
    assert sh.tx == a + b + c and sh.take()[-1].ack == GISN + 1 + 3000


def test_a_complete_take_reopens_the_window():
    sh, g = open_outbound()
    sh.room = 10
    sh.guest(g.seg(ACK, b"x" * 20))
    assert sh.take()[0].window == 0
    sh.room = None
    sh.guest(g.seg(ACK, b"x" * 30))
    (a,) = sh.take()
    assert a.ack == GISN + 31 and a.window == 8192
    assert sh.conn.writable(0.0) == []


def test_guest_data_nothing_taken():
    sh, g = open_outbound()
    sh.room = 0
    sh.guest(g.seg(ACK, b"abc"))
    (a,) = sh.take()
    assert a.ack == GISN + 1 and a.window == 0 and not sh.tx


def test_guest_out_of_order_dropped_with_duplicate_ack():
    sh, g = open_outbound()
    sh.guest(g.seg(ACK, b"later", seq_delta=100))
    (a,) = sh.take()
    assert a.ack == GISN + 1 and a.flags == ACK
    assert not [e for e in sh.log if isinstance(e, Send)] and not sh.tx
    assert sh.conn.out_of_order == 1


def test_guest_old_and_overlapping_data():
    sh, g = open_outbound()
    sh.guest(g.seg(ACK, b"hello"))
    sh.take()
    sh.guest(g.seg(ACK, b"hello"))                  # a retransmission: ACK only
    (a,) = sh.take()
    assert a.ack == GISN + 6 and sh.tx == b"hello"
    sh.guest(g.seg(ACK, b"hello world"))            # overlapping: the new tail
    assert sh.tx == b"hello world"
    assert sh.log[-2] == Send(b" world")
    sh.guest(g.seg(ACK, b"", seq_delta=10))          # keep-alive (seq = expected - 1)
    (a, b) = sh.take()
    assert b.ack == GISN + 12


# ---- close ------------------------------------------------------------------------------

def test_guest_fin_first():
    sh, g = open_outbound()
    sh.guest(g.seg(FIN | ACK, b"request"))
    assert sh.tx == b"request" and sh.shut_wr
    (a,) = sh.take()
    assert a.ack == GISN + 1 + 7 + 1
    g.snd = (g.snd + 8) % M
    assert sh.conn.state == "CLOSE_WAIT"
    sh.rx += b"response"
    sh.eof = True
    sh.pump()
    (r,) = sh.take()
    assert r.payload == b"response" and r.flags == ACK | PSH | FIN
    assert sh.conn.state == "LAST_ACK" and sh.reading is False
    g.receive(r)
    sh.guest(g.ack())
    assert sh.closed is False and sh.conn.finished
    assert sh.conn.from_guest(g.ack(), 0.0) == []


def test_host_eof_first_linux_eof():
    sh, g = open_outbound(eof_exact=False)
    sh.rx += b"bye"
    sh.eof = True
    sh.pump()
    (d,) = sh.take()
    assert d.flags == ACK | PSH                 # the EOF is not seen until the data is gone
    g.receive(d)
    sh.guest(g.ack())
    (f,) = sh.take()
    assert f.flags == FIN | ACK and f.seq == ISN + 4
    assert sh.conn.state == "FIN_WAIT_1"
    g.receive(f)
    sh.guest(g.ack())
    assert sh.conn.state == "FIN_WAIT_2" and sh.take() == []
    sh.guest(g.seg(ACK, b"late data"))          # half-closed: the guest may still send
    assert sh.tx == b"late data"
    sh.take()
    g.snd = (g.snd + 9) % M
    sh.guest(g.seg(FIN | ACK))
    assert sh.shut_wr and sh.closed is False
    assert sh.take()[0].ack == GISN + 1 + 9 + 1


def test_guest_data_and_fin_after_our_fin_acked_closes():
    sh, g = open_outbound()
    sh.eof = True
    sh.pump()
    for s in sh.take():
        g.receive(s)
    sh.guest(g.ack())
    sh.guest(g.seg(FIN | ACK | PSH, b"last words"))
    assert sh.tx == b"last words" and sh.shut_wr and sh.closed is False
    assert sh.take()[-1].ack == GISN + 1 + 10 + 1


def test_guest_data_after_its_fin_is_dropped():
    sh, g = open_outbound()
    sh.guest(g.seg(FIN | ACK))
    sh.take()
    g.snd = (g.snd + 1) % M
    sh.guest(g.seg(ACK, b"too late"))
    (a,) = sh.take()
    assert a.ack == GISN + 2 and not sh.tx and sh.conn.dropped == 1


def test_callbacks_out_of_turn_are_dropped():
    sh, _g = open_outbound()
    assert sh.conn.sent(5, 0.0) == [] and sh.conn.peeked(b"x", False, 0.0) == []
    assert sh.conn.connected(True, 0.0) == []
    assert sh.conn.from_guest("not a segment", 0.0) == []
    assert sh.conn.dropped == 4


def test_fin_retransmitted_when_lost():
    sh, _g = open_outbound()
    sh.eof = True
    sh.pump()
    (f,) = sh.take()
    assert f.flags == FIN | ACK
    sh.now = 1.0
    sh.timer()
    assert sh.take() == [f]


def test_fin_wait_2_timeout():
    sh, g = open_outbound()
    sh.eof = True
    sh.pump()
    for s in sh.take():
        g.receive(s)
    sh.now = 5.0
    sh.guest(g.ack())
    assert sh.conn.state == "FIN_WAIT_2"
    assert sh.conn.next_deadline() == 65.0
    sh.until(64.9)
    assert not sh.conn.finished
    sh.until(65.0)
    assert sh.closed is True and sh.take()[-1].flags == RST | ACK


def test_guest_rst():
    sh, g = open_outbound()
    sh.guest(g.seg(RST, seq_delta=1000))        # in window, not exact: challenge ACK
    (a,) = sh.take()
    assert a.flags == ACK and not sh.conn.finished
    sh.guest(g.seg(RST, seq_delta=1 << 30))     # out of window: ignored
    assert sh.take() == [] and not sh.conn.finished
    sh.guest(g.seg(RST))
    assert sh.closed is True and sh.take() == []


def test_host_error_resets_the_guest():
    sh, _g = open_outbound()
    sh.rx += b"x" * 100
    sh.pump()
    sh.take()
    sh.run(sh.conn.host_error(0.0))
    (r,) = sh.take()
    assert (r.flags, r.seq, r.ack) == (RST | ACK, ISN + 101, GISN + 1)
    assert sh.closed is True


def test_idle_timeout():
    sh, g = open_outbound()
    sh.now = 3000.0
    sh.guest(g.seg(ACK, b"ping"))
    sh.take()
    assert sh.conn.next_deadline() == 3000.0 + 7200
    sh.until(10199.0)
    assert not sh.conn.finished
    sh.until(10200.0)
    assert sh.closed is True and sh.take()[-1].flags == RST | ACK


def test_duplicate_syn_after_established_gets_an_ack():
    sh, _g = open_outbound()
    sh.guest(Segment(GISN, 0, SYN, 100))
    (a,) = sh.take()
    assert a.flags == ACK and a.ack == GISN + 1 and sh.conn.dropped == 0


# ---- inbound (-L) -----------------------------------------------------------------------

def open_inbound(g: Guest | None = None, isn: int = ISN) -> tuple[Shell, Guest]:
    g = g or Guest()
    conn, eff = TcpConnection.from_host_accept(1500, 0.0, isn)
    sh = Shell(conn, eff)
    (syn,) = sh.take()
    assert (syn.seq, syn.flags, syn.mss, syn.wscale) == (isn % M, SYN, 1460, 7)
    g.rcv = (syn.seq + 1) % M
    sh.guest(Segment(g.isn, g.rcv, SYN | ACK, min(g.window, 65535), mss=1460,
                     wscale=g.ws if g.ws else None))
    return sh, g


def test_inbound_handshake_and_data():
    sh, g = open_inbound()
    (a,) = sh.take()
    assert (a.flags, a.seq, a.ack) == (ACK, ISN + 1, GISN + 1)
    assert sh.conn.state == "ESTABLISHED" and sh.reading is True
    sh.guest(Segment(GISN, ISN + 1, SYN | ACK, 64240))   # our ACK was lost
    assert sh.take() == [a]
    data = data_of(50_000)
    sh.rx += data
    deliver(sh, g)
    assert g.data == data
    sh.guest(g.seg(ACK, b"reply"))
    assert sh.tx == b"reply"


def test_inbound_without_window_scaling():
    sh, g = open_inbound(Guest(window=30000, wscale=None))
    assert sh.conn.our_wscale == 0 and sh.conn.snd_wnd == 30000
    sh.take()
    sh.guest(g.seg(ACK, b"x"))
    assert sh.take()[0].window == 65535


def test_inbound_refused_by_the_guest():
    conn, _ = TcpConnection.from_host_accept(1500, 0.0, ISN)
    assert conn.from_guest(Segment(0, ISN + 1, RST, 0), 0.1) == []   # no ACK: not for us
    assert conn.from_guest(Segment(0, ISN + 1, RST | ACK, 0), 0.1) == [Close(reset=True)]
    assert conn.finished


def test_inbound_bad_synack_and_timeout():
    conn, (syn,) = TcpConnection.from_host_accept(1500, 0.0, ISN)
    eff = conn.from_guest(Segment(GISN, ISN + 9, SYN | ACK, 100), 0.1)
    assert eff == [ToGuest(Segment(ISN + 9, 0, RST, 0))]
    assert conn.from_guest(Segment(GISN, 0, SYN, 100), 0.1) == []   # simultaneous open: no
    sh = Shell(conn)
    times = []
    while not conn.finished:
        sh.now = conn.next_deadline()
        times.append(sh.now)
        sh.timer()
    assert times == [1.0, 3.0, 7.0, 10.0]
    out = sh.take()
    assert out[:3] == [syn.segment] * 3
    assert out[3] == Segment(ISN + 1, 0, RST, 0) and sh.closed is True


# ---- sequence wraparound ----------------------------------------------------------------

@pytest.mark.parametrize("isn,gisn", [(M - 3000, M - 2000), (M - 1, M - 1), (M - 20000, 5)])
def test_wraparound(isn, gisn):
    g = Guest(isn=gisn, window=16384)
    sh, g = open_outbound(isn=isn, guest=g)
    down = data_of(200_000, seed=5)
    sh.rx += down
    sh.eof = True
    deliver(sh, g)
    assert g.data == down and g.fin and sh.consumed == len(down)
    up = data_of(60_000, seed=6)
    for i in range(0, len(up), 1460):
        sh.guest(g.seg(ACK, up[i:i + 1460]))
        g.snd = (g.snd + len(up[i:i + 1460])) % M
    assert sh.tx == up
    assert sh.take()[-1].ack == (gisn + 1 + len(up)) % M
    sh.guest(g.seg(FIN | ACK))
    assert sh.closed is False


def test_wraparound_retransmission():
    sh, g = open_outbound(isn=M - 2000)
    data = data_of(4 * 1460)
    sh.rx += data
    sh.pump()
    segs = sh.take()
    assert segs[-1].seq < segs[0].seq          # the sequence numbers wrapped
    g.receive(segs[0])
    g.receive(segs[1])
    sh.guest(g.ack())
    assert Consume(2920) in sh.log
    sh.now = 1.0
    sh.timer()
    assert [s.seq for s in sh.take()] == [s.seq for s in segs[2:]]


# ---- anything goes ----------------------------------------------------------------------

def _guest_byte(i: int) -> int:
    return (i * 7 + 3) & 0xFF


def _check_out(sh: Shell, host_stream: bytes, isn: int, gisn: int | None) -> None:
    """What went to the guest is right: data is the host's bytes at its seq, every ACK
    acknowledges exactly what the socket took (and the FIN once shut down)."""
    taken = sh.taken_then
    for s, n in zip(sh.take(), taken):
        if s.payload:
            off = (s.seq - isn - 1) % M
            assert host_stream[off:off + len(s.payload)] == s.payload
        if s.flags & ACK and gisn is not None and not s.flags & SYN:
            assert s.ack == (gisn + 1 + n) % M, (s, n)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_never_raises_and_always_ends(data):
    rnd = data.draw(st.randoms(use_true_random=False))
    inbound = data.draw(st.booleans())
    isn = data.draw(st.sampled_from([0, 12345, M - 100, M - 1]))
    gisn = data.draw(st.sampled_from([0, 54321, M - 50, M - 1]))
    mtu = data.draw(st.sampled_from([576, 1500, 65520]))
    if inbound:
        conn, eff = TcpConnection.from_host_accept(mtu, 0.0, isn)
    else:
        syn = Segment(gisn, 0, SYN, rnd.randrange(0, 65536),
                      mss=data.draw(st.none() | st.integers(-5, 70000)),
                      wscale=data.draw(st.none() | st.integers(-3, 30)))
        conn, eff = TcpConnection.from_guest_syn(syn, mtu, 0.0, isn)
    sh = Shell(conn, eff, eof_exact=data.draw(st.booleans()))
    host_stream = bytearray()
    known_gisn = None if inbound else gisn
    g0 = gisn

    def stream(seq: int, n: int) -> bytes:
        # the guest's bytes are a function of their position in its stream
        off = seq - g0 - 1
        return bytes(_guest_byte(off + i) for i in range(n))

    def guest_seg() -> Segment:
        nonlocal g0
        g0 = conn.guest_isn if conn.guest_isn is not None else gisn
        if rnd.random() < 0.1:  # anything at all
            seq = rnd.randrange(-2**34, 2**34)
            return Segment(seq, rnd.randrange(-2**34, 2**34),
                           rnd.randrange(0, 256), rnd.randrange(-10, 2**20),
                           stream(seq, rnd.randrange(0, 40)),
                           rnd.choice([None, rnd.randrange(-10, 10**5)]),
                           rnd.choice([None, rnd.randrange(-10, 50)]))
        # plausible: near what the connection expects
        exp_seq = (g0 + 1 + len(sh.tx) + sh.shut_wr) % M
        seq = (exp_seq + rnd.choice([0, 0, 0, -1, 1, -100, 100, rnd.randrange(-5000, 5000)])) % M
        base = (conn.iss + conn.snd_una) % M
        span = conn.snd_max - conn.snd_una
        ack = (base + rnd.choice([0, span, rnd.randrange(-3, span + 4)])) % M
        flags = rnd.choice([ACK, ACK, ACK | PSH, ACK | FIN, RST, RST | ACK, SYN,
                            SYN | ACK, FIN, 0])
        payload = stream(seq, rnd.choice([0, 0, 1, 100, 1460, 3000]))
        window = rnd.choice([0, 1, 100, 65535, rnd.randrange(0, 65536)])
        return Segment(seq, ack, flags, window, payload)

    steps = data.draw(st.integers(1, 80))
    for _ in range(steps):
        op = rnd.random()
        if op < 0.45:
            seg = guest_seg()
            if inbound and known_gisn is None and conn.state == "SYN_SENT" and rnd.random() < 0.5:
                seg = Segment(gisn, (isn + 1) % M, SYN | ACK, 65535, mss=1460, wscale=7)
            sh.guest(seg)
            if inbound and conn.guest_isn is not None:
                known_gisn = conn.guest_isn
        elif op < 0.55:
            sh.now += rnd.choice([0.01, 0.5, 1.0, 5.0, 70.0, 8000.0])
            sh.timer()
        elif op < 0.65:
            chunk = rnd.randbytes(rnd.choice([1, 100, 5000, 70000]))
            if not sh.eof:
                host_stream += chunk
                sh.rx += chunk
            sh.pump()
        elif op < 0.7:
            sh.eof = True
            sh.pump()
        elif op < 0.75:
            sh.room = rnd.choice([None, 0, 10, 2000])
            sh.run(conn.writable(sh.now))
        elif op < 0.8 and conn.state == "CONNECTING":
            sh.run(conn.connected(rnd.random() < 0.8, sh.now))
        elif op < 0.82:
            sh.run(conn.host_error(sh.now))
        else:
            sh.pump()
        if sh.tx:   # the guest's bytes reach the host in order, once
            assert bytes(sh.tx) == bytes(_guest_byte(i) for i in range(len(sh.tx)))
        _check_out(sh, bytes(host_stream), isn, known_gisn)
        assert conn.finished == (sh.closed is not None)
        if not conn.finished:
            assert conn.next_deadline() is not None
    for _ in range(1000):                       # the guest goes silent: timers end it
        if conn.finished:
            break
        sh.now = max(sh.now, conn.next_deadline())
        sh.timer()
        _check_out(sh, bytes(host_stream), isn, known_gisn)
    assert conn.finished and conn.next_deadline() is None


# ---- congestion window (the router turns it on) ------------------------------------------

def test_congestion_window_starts_at_ten_segments_and_grows(monkeypatch):
    monkeypatch.setattr(TcpConnection, "CONGESTION", True)
    g = Guest(window=4 << 20)
    sh, g = open_outbound(guest=g)
    data = data_of(2 << 20)
    sh.rx += data
    sh.pump()
    first = sh.take()
    assert sum(len(s.payload) for s in first) == 10 * 1460      # RFC 6928's initial window
    for s in first:
        g.receive(s)
    sh.guest(g.ack())
    sh.eof = True
    deliver(sh, g)
    assert g.data == data and g.fin
    assert sh.conn.cwnd > 100 * 1460                             # slow start opened it


def test_congestion_window_halves_on_fast_retransmit(monkeypatch):
    monkeypatch.setattr(TcpConnection, "CONGESTION", True)
    sh, g = open_outbound(guest=Guest(window=4 << 20))
    sh.rx += data_of(1 << 20)
    for _ in range(3):                       # a few rounds of slow start
        sh.pump()
        for s in sh.take():
            g.receive(s)
        sh.guest(g.ack())
    before = sh.conn.cwnd
    sh.pump()
    segs = sh.take()
    assert len(segs) >= 5
    g.receive(segs[0])                       # the second one is lost
    sh.guest(g.ack())
    for s in segs[2:5]:
        g.receive(s)                         # out of order: three duplicate ACKs
        sh.guest(g.ack())
    assert sh.conn.fast_retransmits == 1
    assert sh.conn.cwnd < before and sh.conn.cwnd == sh.conn.ssthresh
