"""The TCP translator: one connection between a guest and one host socket, passt-style.

There is no TCP stack here. The host kernel does real TCP with the peer; this core only
mirrors sequence numbers, windows and flags between the guest (segments) and the host
socket (effects the shell carries out). It is pure: no sockets, no I/O, `now` (float
seconds, monotonic) passed in. Every method returns a list of effects, to be carried
out in order; a Peek or a Send makes the shell call back peeked()/sent() (at once or
later, but exactly once per Peek/Send).

Host -> guest (the MSG_PEEK scheme): data stays in the host socket's receive queue until
the guest acknowledges it. `Peek(offset, length)` asks for `length` bytes after the
`offset` bytes already sent and not yet acknowledged; the core cuts them into segments
of the guest's MSS (ACK on each, PSH on the last). A guest ACK that advances ->
`Consume(n)` (the acknowledged bytes leave the socket). Retransmission timeout: 1 s,
doubling up to 60 s, reset by any advancing ACK; on expiry the core rewinds to the
acknowledged point (Peek at offset 0); after 7 expiries without progress: RST to the
guest and `Close(reset=True)`. Three duplicate ACKs -> the same rewind at once (fast
retransmit; not again until the ACK passes what had been sent at that point, so the
go-back-N duplicates do not set off another). Zero window from the guest: persist
probes (a bare ACK with seq = acknowledged - 1, which the guest answers with its
window), 1 s doubling to 60 s; given up (RST) only after 7 probes in a row the guest
did not answer.

Reading the socket: `WantReadable(False)` while the guest's window is full (and after
host EOF); on a level-triggered poller a socket with unacknowledged data in it stays
readable, so the core also stops watching once a peek found nothing beyond what is in
flight, and instead peeks again itself when the guest acknowledges something (new host
data arriving meanwhile waits for that ACK). When the core is sure the socket has more
than it could send (a full-length peek, readable() with a full window) it peeks as soon
as the window opens, without waiting for readability.

Guest -> host: in-order payload -> `Send(data)`; the shell reports with sent(n) how much
the socket took and the guest gets an ACK for exactly that (it retransmits the rest).
The window advertised to the guest is `RCV_WINDOW` (1 MiB, scaled) except after a
partial take, when it is 0 until writable() (or a later complete take) re-opens it.
Out-of-order payload is dropped with a duplicate ACK; old data gets an ACK.

Close: guest FIN (in order, after its data) -> `ShutdownWrite()` and its ACK; host EOF
(peeked with eof=True: nothing after the data returned) -> FIN to the guest once all
data before it is sent; both FINs there and ours acknowledged -> `Close(reset=False)`.
Guest RST (seq exactly the expected one; otherwise a challenge ACK, RFC 5961) ->
`Close(reset=True)`. Host error -> RST to the guest, `Close(reset=True)`.

Timers (next_deadline()/timer()): handshake 10 s (no host connect result, or no guest
ACK of our SYN-ACK, or no guest SYN-ACK to our SYN) -> RST; FIN_WAIT_2 (our FIN
acknowledged, the guest's not come) 60 s after the guest's last segment -> RST; no
activity either way for 7200 s -> RST. The shell forgets the connection once `finished`.

Handshake: outbound, from_guest_syn() -> `Connect()`; the SYN-ACK (our MSS = MTU - 40,
rounded down to a multiple of 4096 above 4096, like passt; window scale 7 if the guest
offered scaling) only goes out on connected(True); connected(False) -> RST|ACK and
`Close(reset=False)`. A repeated guest SYN while connecting is ignored, after the
SYN-ACK it gets the SYN-ACK again (passt resets in both cases). Inbound (-L),
from_host_accept() -> SYN to the guest; its SYN-ACK -> ACK, established; its RST ->
`Close(reset=True)` (the host client sees a refusal).

Anything that makes no sense for the state gets the RFC 793 answer (RST for an
unacceptable ACK in SYN-RECEIVED/SYN-SENT, ACK for an unacceptable sequence number) or
is dropped; nothing a guest sends raises. Dropped oddities are counted in `dropped`.

Sequence numbers are kept inside as unbounded integers counted from each side's ISN
(the SYN is 0, the first data byte 1) and converted modulo 2**32 only on the wire.
"""
from __future__ import annotations

from dataclasses import dataclass

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16

_MOD = 1 << 32
_MASK = _MOD - 1
_HALF = 1 << 31


def _s32(x: int) -> int:
    """x modulo 2**32 as a signed distance (-2**31 .. 2**31-1)."""
    x &= _MASK
    return x - _MOD if x >= _HALF else x


@dataclass(frozen=True)
class Segment:
    """A TCP segment as the guest sees it (addresses are the connection's)."""
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes = b""
    mss: int | None = None
    wscale: int | None = None


@dataclass(frozen=True)
class ToGuest:
    """Send this segment to the guest."""
    segment: Segment


@dataclass(frozen=True)
class ToGuestData:
    """A run of data segments for the guest (with COALESCE): payload cut at mss from seq
    on, every segment with ack and window, ACK|PSH on the last (and FIN if fin)."""
    seq: int
    ack: int
    window: int
    payload: bytes
    mss: int
    fin: bool = False


@dataclass(frozen=True)
class Connect:
    """Start the host connect (non-blocking); answer with connected(ok, now)."""


@dataclass(frozen=True)
class Send:
    """Write to the host socket; answer with sent(n, now), n = what the socket took."""
    data: bytes


@dataclass(frozen=True)
class Peek:
    """recv(offset + length, MSG_PEEK), drop the first offset bytes, answer with
    peeked(data, eof, now); eof=True only if nothing follows the data returned."""
    offset: int
    length: int


@dataclass(frozen=True)
class Consume:
    """Discard count bytes from the host socket (recv with MSG_TRUNC)."""
    count: int


@dataclass(frozen=True)
class ShutdownWrite:
    """shutdown(SHUT_WR) on the host socket."""


@dataclass(frozen=True)
class Close:
    """Close the host socket (reset=True: SO_LINGER 0, the peer gets RST); the
    connection is finished."""
    reset: bool


@dataclass(frozen=True)
class WantReadable:
    """Whether the shell should watch the host socket for readability."""
    on: bool


def advertised_mss(mtu: int) -> int:
    """Our MSS to the guest: MTU - 40 (at most 65495), rounded down to a multiple of
    4096 when above 4096 (passt: MTU 65520 -> 61440)."""
    mss = min(mtu - 40, 65495)
    if mss > 4096:
        mss -= mss % 4096
    return max(mss, 1)


def reset_for(seg: Segment) -> Segment | None:
    """The RFC 793 answer to a segment that matches no connection: None for a RST,
    <SEQ=SEG.ACK><CTL=RST> if it has ACK, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>."""
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return Segment(seq=seg.ack & _MASK, ack=0, flags=RST, window=0)
    length = len(seg.payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
    return Segment(seq=0, ack=(seg.seq + length) & _MASK, flags=RST | ACK, window=0)


@dataclass(frozen=True)
class _In:
    """A guest segment checked and normalised."""
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    mss: int | None
    wscale: int | None


def _norm(seg: object) -> _In | None:
    if not isinstance(seg, Segment):
        return None
    ints = (seg.seq, seg.ack, seg.flags, seg.window)
    if not all(isinstance(v, int) for v in ints):
        return None
    if not isinstance(seg.payload, (bytes, bytearray, memoryview)):
        return None
    if seg.mss is not None and not isinstance(seg.mss, int):
        return None
    if seg.wscale is not None and not isinstance(seg.wscale, int):
        return None
    return _In(seg.seq & _MASK, seg.ack & _MASK, seg.flags & 0x3F,
               min(max(seg.window, 0), 0xFFFF), bytes(seg.payload), seg.mss, seg.wscale)


# phases (state gives the finer TCP name while OPEN)
_CONNECTING = "CONNECTING"   # outbound: guest SYN seen, host connect under way
_SYN_RCVD = "SYN_RCVD"       # outbound: SYN-ACK sent, waiting for the guest's ACK
_SYN_SENT = "SYN_SENT"       # inbound: SYN sent to the guest, waiting for its SYN-ACK
_OPEN = "OPEN"
_CLOSED = "CLOSED"
_HANDSHAKE = (_CONNECTING, _SYN_RCVD, _SYN_SENT)


class TcpConnection:
    """One guest TCP connection and its host socket; see the module docstring."""

    RTO_INITIAL = 1.0
    RTO_MAX = 60.0
    MAX_RETRIES = 7            # retransmission timeouts in a row, then RST
    MAX_PROBES = 7             # unanswered zero-window probes in a row, then RST
    HANDSHAKE_TIMEOUT = 10.0
    FIN_TIMEOUT = 60.0
    IDLE_TIMEOUT = 7200.0
    PEEK_MAX = 4 * 65536       # at most this much per Peek
    COALESCE = False           # True: a peek's data goes out as one ToGuestData
    CONGESTION = False         # True: Reno's congestion window limits what is in flight
    INITIAL_CWND = 10          # segments (RFC 6928)
    MAX_WINDOW = 1 << 24       # the guest's window is used up to this (passt's limit)
    RCV_WINDOW = 1 << 20       # what we advertise to the guest
    WSCALE = 7                 # our window scale (when the guest scales too)
    DUPACK_THRESHOLD = 3
    GUEST_MSS_DEFAULT = 536

    def __init__(self, mtu: int, now: float, isn: int) -> None:
        self.mtu = mtu
        self.mss = advertised_mss(mtu)          # ours, to the guest
        self.iss = isn & _MASK
        self._phase = _CONNECTING
        # host -> guest, offsets from iss (SYN = 0, first data byte = 1)
        self.snd_una = 0                        # acked_by_guest
        self.cwnd: int | None = None            # congestion window (CONGESTION), bytes
        self.ssthresh = 1 << 30
        self.snd_nxt = 0                        # seq_to_guest (rewound to snd_una on retransmission)
        self.snd_max = 0                        # the highest ever sent
        self.snd_wnd = 0                        # the guest's window, scaled
        self._wl1 = 0
        self._wl2 = 0
        self.host_end: int | None = None        # offset of the host's EOF (our FIN) once known
        # guest -> host, offsets from the guest's ISN
        self.guest_isn: int | None = None
        self.rcv_nxt = 0
        self.guest_mss = self.GUEST_MSS_DEFAULT
        self.guest_wscale = 0
        self.our_wscale = 0
        self.guest_fin = False
        self._rcv_wnd = self.RCV_WINDOW
        self._send_pending: tuple[int, bool] | None = None   # (length, FIN follows)
        self._held: dict[int, bytes] = {}       # out-of-order guest data, by offset
        self._held_bytes = 0
        self._send_blocked = False
        # reading the host socket
        self._peek: tuple[int, int] | None = None   # (offset from iss, length) asked for
        self._may_have = False      # the socket surely holds more than we have sent
        self._drained = False       # a peek found nothing beyond what is in flight
        self._kick = False          # something changed that may let us send more
        self._reading: bool | None = None
        # timers
        self.rto = self.RTO_INITIAL
        self.retries = 0
        self._rto_at: float | None = None
        self._recover = 0           # no fast retransmit until snd_una passes this
        self._dupacks = 0
        self._persist_interval = self.RTO_INITIAL
        self.probes_unanswered = 0
        self._persist_at: float | None = None
        self._handshake_at = now + self.HANDSHAKE_TIMEOUT
        self._last_activity = now
        self._last_guest = now
        # counters
        self.dropped = 0
        self.out_of_order = 0
        self.retransmits = 0
        self.fast_retransmits = 0
        self.probes = 0

    # ---- creation -------------------------------------------------------------------

    @classmethod
    def from_guest_syn(cls, syn: Segment, mtu: int, now: float,
                       isn: int) -> tuple[TcpConnection, list]:
        """Outbound: the guest's SYN. Effects: [Connect()]. A segment that is not a
        plain SYN gives a finished connection and the RFC 793 RST (if any)."""
        conn = cls(mtu, now, isn)
        s = _norm(syn)
        if s is None or s.flags & (SYN | ACK | RST | FIN) != SYN:
            conn._phase = _CLOSED
            conn.dropped += 1
            rst = reset_for(syn) if s is not None else None
            return conn, [ToGuest(rst)] if rst is not None else []
        conn.guest_isn = s.seq
        conn.rcv_nxt = 1
        conn._guest_options(s)
        conn.our_wscale = cls.WSCALE if s.wscale is not None else 0
        conn.snd_wnd = s.window            # unscaled in a SYN
        return conn, [Connect()]

    @classmethod
    def from_host_accept(cls, mtu: int, now: float, isn: int) -> tuple[TcpConnection, list]:
        """Inbound (-L): the shell accepted a host connection. Effects: [ToGuest(SYN)]."""
        conn = cls(mtu, now, isn)
        conn._phase = _SYN_SENT
        conn.our_wscale = cls.WSCALE
        conn.snd_nxt = conn.snd_max = 1
        conn._rto_at = now + conn.rto
        return conn, [ToGuest(conn._syn_segment())]

    def _guest_options(self, s: _In) -> None:
        self.guest_mss = (self.GUEST_MSS_DEFAULT if s.mss is None
                          else min(max(s.mss, 64), 65495))
        self.guest_wscale = 0 if s.wscale is None else min(max(s.wscale, 0), 14)

    # ---- the public view ------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._phase == _CLOSED

    @property
    def state(self) -> str:
        if self._phase != _OPEN:
            return self._phase
        fin_sent = self.host_end is not None and self.snd_max > self.host_end
        fin_acked = self.host_end is not None and self.snd_una > self.host_end
        if self.guest_fin:
            return "LAST_ACK" if fin_sent else "CLOSE_WAIT"
        if fin_acked:
            return "FIN_WAIT_2"
        return "FIN_WAIT_1" if fin_sent else "ESTABLISHED"

    def next_deadline(self) -> float | None:
        if self._phase == _CLOSED:
            return None
        times = [t for t in (self._rto_at, self._persist_at) if t is not None]
        if self._phase in _HANDSHAKE:
            times.append(self._handshake_at)
        else:
            times.append(self._last_activity + self.IDLE_TIMEOUT)
            if self.state == "FIN_WAIT_2":
                times.append(self._last_guest + self.FIN_TIMEOUT)
        return min(times)

    def __repr__(self) -> str:
        return (f"<TcpConnection {self.state} una={self.snd_una} nxt={self.snd_nxt} "
                f"max={self.snd_max} wnd={self.snd_wnd} rcv_nxt={self.rcv_nxt}>")

    # ---- segments to the guest ------------------------------------------------------

    def _wseq(self, off: int) -> int:
        return (self.iss + off) & _MASK

    def _wack(self) -> int:
        return ((self.guest_isn or 0) + self.rcv_nxt) & _MASK

    def _unwrap_ack(self, wire: int) -> int:
        return self.snd_una + _s32(wire - (self.iss + self.snd_una))

    def _unwrap_seq(self, wire: int) -> int:
        return self.rcv_nxt + _s32(wire - ((self.guest_isn or 0) + self.rcv_nxt))

    def _window_field(self) -> int:
        return min(self._rcv_wnd >> self.our_wscale, 0xFFFF)

    def _seg(self, off: int, flags: int, payload: bytes = b"") -> Segment:
        ack = self._wack() if flags & ACK else 0
        return Segment(self._wseq(off), ack, flags, self._window_field(), payload)

    def _ack_seg(self) -> ToGuest:
        # seq = the highest sent: after a rewind the guest may have all of it, and an
        # ACK with an old seq would be dropped by it as a duplicate
        return ToGuest(self._seg(self.snd_max, ACK))

    def _syn_segment(self) -> Segment:
        flags = SYN | ACK if self.guest_isn is not None else SYN
        return Segment(self._wseq(0), self._wack() if flags & ACK else 0, flags,
                       min(self.RCV_WINDOW, 0xFFFF), mss=self.mss,
                       wscale=self.WSCALE if self.our_wscale else None)

    def _send_mss(self) -> int:
        return max(1, min(self.guest_mss, self.mtu - 40))

    # ---- endings ---------------------------------------------------------------------

    def _refuse(self) -> list:
        """The host connect failed: RST|ACK for the guest's SYN."""
        self._phase = _CLOSED
        rst = Segment(0, self._wack(), RST | ACK, 0)
        return [ToGuest(rst), Close(reset=False)]

    def _abort(self) -> list:
        """RST to the guest and reset the host side."""
        self._phase = _CLOSED
        if self.guest_isn is None:
            rst = Segment(self._wseq(self.snd_max), 0, RST, 0)
        else:
            rst = Segment(self._wseq(self.snd_max), self._wack(), RST | ACK, 0)
        return [ToGuest(rst), Close(reset=True)]

    def _done(self) -> bool:
        return (self.guest_fin and self.host_end is not None
                and self.snd_una > self.host_end)

    # ---- the C data path (cffi_build/tcp_fast.c) ------------------------------------------

    def steady(self) -> bool:
        """Whether the connection may run in C for now: established, both directions
        open, nothing asked of the shell and not answered, no recovery under way (no
        rewind, no retransmission backoff, no zero window)."""
        return (self._phase == _OPEN and self.host_end is None and not self.guest_fin
                and self._peek is None and self._send_pending is None
                and not self._send_blocked and self._persist_at is None
                and self.snd_wnd > 0 and self.snd_nxt == self.snd_max
                and self.retries == 0 and not self._held
                and self.COALESCE and self.CONGESTION)

    def handed_state(self) -> dict:
        """What C needs to carry the connection on (see steady())."""
        return {"iss": self.iss, "guest_isn": self.guest_isn or 0, "snd_una": self.snd_una,
                    "snd_nxt": self.snd_nxt, "snd_max": self.snd_max, "snd_wnd": self.snd_wnd,
                    "cwnd": self._cwnd(), "ssthresh": self.ssthresh,
                    "max_window": self.MAX_WINDOW, "rcv_nxt": self.rcv_nxt,
                    "mss": self._send_mss(), "peek_max": self.PEEK_MAX,
                    "guest_wscale": self.guest_wscale, "window_field": self._window_field(),
                    "rto": self.rto, "rto_initial": self.RTO_INITIAL,
                    "rto_at": self._rto_at or 0.0, "last_activity": self._last_activity,
                    "last_guest": self._last_guest}

    def taken_back(self, snd_una: int, snd_nxt: int, snd_max: int, snd_wnd: int, cwnd: int,
                   rcv_nxt: int, rto: float, rto_at: float, last_activity: float,
                   last_guest: float, now: float) -> list:
        """C gives the connection back with its state. Effects as after any event."""
        self.snd_una, self.snd_nxt, self.snd_max = snd_una, snd_nxt, snd_max
        self.snd_wnd, self.cwnd, self.rcv_nxt = snd_wnd, cwnd, rcv_nxt
        self.rto, self._rto_at = rto, (rto_at or None)
        self._last_activity, self._last_guest = last_activity, last_guest
        self._wl1, self._wl2 = self.rcv_nxt - 1, self.snd_una
        self._dupacks = 0
        self._may_have, self._drained, self._kick = True, False, True
        self._reading = None                    # say again whether to watch the socket
        eff: list = []
        self._tail(now, eff)
        return eff

    # ---- host events ------------------------------------------------------------------

    def connected(self, ok: bool, now: float) -> list:
        """The host connect finished (ok) or failed."""
        if self._phase != _CONNECTING:
            self.dropped += 1
            return []
        if not ok:
            return self._refuse()
        self._phase = _SYN_RCVD
        self.snd_nxt = self.snd_max = 1
        self._handshake_at = now + self.HANDSHAKE_TIMEOUT
        self._last_activity = now
        self.rto = self.RTO_INITIAL
        self.retries = 0
        self._rto_at = now + self.rto
        return [ToGuest(self._syn_segment())]

    def readable(self, now: float) -> list:
        """The host socket has data or EOF."""
        if self._phase == _CLOSED:
            return []
        if self._phase != _OPEN:
            if self._reading is False:
                return []
            self._reading = False
            return [WantReadable(False)]
        if self._peek is not None:
            return []
        self._may_have = True
        self._kick = True
        eff: list = []
        self._tail(now, eff)
        return eff

    def peeked(self, data: bytes, eof: bool, now: float) -> list:
        """The result of the last Peek: data after its offset, eof if nothing follows."""
        if self._phase != _OPEN or self._peek is None:
            self.dropped += 1
            return []
        start, length = self._peek
        self._peek = None
        data = bytes(data)
        if len(data) > length:
            data, eof = data[:length], False
        if self.host_end is not None and start + len(data) > self.host_end:
            data = data[:max(0, self.host_end - start)]
        end = start + len(data)
        if eof and self.host_end is None:
            self.host_end = end
        eff: list = []
        if start > self.snd_nxt:
            self._kick = True       # rewound meanwhile: these bytes come later
        elif end > self.snd_nxt:
            room = max(0, self.snd_una + self.snd_wnd - self.snd_nxt)
            skip = self.snd_nxt - start
            self._send_data(data[skip:skip + room], eff)
            self._last_activity = now
        if eof:
            self._may_have = self._drained = False
        elif len(data) < length:
            self._may_have = False
            self._drained = self.snd_nxt > self.snd_una
        else:
            self._may_have = True
            self._drained = False
            self._kick = True
        self._tail(now, eff)
        return eff

    def sent(self, n: int, now: float) -> list:
        """The socket took n bytes of the last Send."""
        if self._phase != _OPEN or self._send_pending is None:
            self.dropped += 1
            return []
        length, fin = self._send_pending
        self._send_pending = None
        n = min(max(int(n), 0), length)
        self.rcv_nxt += n
        if n:
            self._last_activity = now
        eff: list = []
        if n < length:
            self._send_blocked = True
            self._rcv_wnd = 0
        elif self._send_blocked:
            self._send_blocked = False
            self._rcv_wnd = self.RCV_WINDOW
        if n == length and fin and not self.guest_fin:
            self.guest_fin = True
            self.rcv_nxt += 1
            eff.append(ShutdownWrite())
        more = self._take_held() if n == length and not self.guest_fin else b""
        if more:                        # the gap is filled: what was held goes on
            self._send_pending = (len(more), False)
            self._tail(now, eff)
            return eff + [Send(more)]
        eff.append(self._ack_seg())
        if self._done():
            self._phase = _CLOSED
            eff.append(Close(reset=False))
            return eff
        self._tail(now, eff)
        return eff

    def writable(self, now: float) -> list:
        """The socket has room again: re-open the window to the guest if it was shut."""
        if self._phase != _OPEN or not self._send_blocked:
            return []
        self._send_blocked = False
        self._rcv_wnd = self.RCV_WINDOW
        return [self._ack_seg()]

    def host_error(self, now: float) -> list:
        """Socket error or hangup: RST to the guest (a refusal while connecting)."""
        if self._phase == _CLOSED:
            return []
        if self._phase == _CONNECTING:
            return self._refuse()
        return self._abort()

    # ---- timers ---------------------------------------------------------------------

    def timer(self, now: float) -> list:
        """Call at or after next_deadline(); early calls do nothing."""
        if self._phase == _CLOSED:
            return []
        if self._phase in _HANDSHAKE:
            if now >= self._handshake_at:
                return self._refuse() if self._phase == _CONNECTING else self._abort()
        else:
            if now >= self._last_activity + self.IDLE_TIMEOUT:
                return self._abort()
            if self.state == "FIN_WAIT_2" and now >= self._last_guest + self.FIN_TIMEOUT:
                return self._abort()
        eff: list = []
        if self._rto_at is not None and now >= self._rto_at:
            self._rto_at = None
            self.retries += 1
            if self.retries > self.MAX_RETRIES:
                return self._abort()
            self.rto = min(self.rto * 2, self.RTO_MAX)
            self.retransmits += 1
            self._congestion(timeout=True)
            if self._phase in (_SYN_RCVD, _SYN_SENT):
                eff.append(ToGuest(self._syn_segment()))
            elif self._phase == _OPEN:
                self._rewind()
        if self._persist_at is not None and now >= self._persist_at:
            self._persist_at = None
            self.probes_unanswered += 1
            if self.probes_unanswered > self.MAX_PROBES:
                return self._abort()
            self.probes += 1
            self._persist_interval = min(self._persist_interval * 2, self.RTO_MAX)
            eff.append(ToGuest(self._seg(self.snd_una - 1, ACK)))
        self._tail(now, eff)
        return eff

    def _cwnd(self) -> int:
        if self.cwnd is None:
            self.cwnd = self.INITIAL_CWND * self._send_mss()
        return int(self.cwnd)

    def _congestion(self, timeout: bool) -> None:
        """A loss: half of what was in flight (Reno); a timeout starts again from two
        segments."""
        if self.CONGESTION:
            mss = self._send_mss()
            self.ssthresh = max((self.snd_max - self.snd_una) // 2, 2 * mss)
            self.cwnd = 2 * mss if timeout else self.ssthresh

    def _rewind(self) -> None:
        """Send again from what the guest acknowledged (go-back-N)."""
        self.snd_nxt = self.snd_una
        self._recover = self.snd_max
        self._dupacks = 0
        self._kick = True

    # ---- guest segments -------------------------------------------------------------

    def from_guest(self, seg: Segment, now: float) -> list:
        """A segment from the guest."""
        if self._phase == _CLOSED:
            self.dropped += 1
            return []
        s = _norm(seg)
        if s is None:
            self.dropped += 1
            return []
        if self._phase == _CONNECTING:
            return self._guest_connecting(s)
        if self._phase == _SYN_RCVD:
            return self._guest_syn_rcvd(s, now)
        if self._phase == _SYN_SENT:
            return self._guest_syn_sent(s, now)
        return self._guest_open(s, now)

    def _guest_connecting(self, s: _In) -> list:
        if s.flags & (SYN | ACK | RST) == SYN and s.seq == self.guest_isn:
            return []                       # a repeated SYN: the SYN-ACK comes with the connect
        if s.flags & RST and self._unwrap_seq(s.seq) == self.rcv_nxt:
            self._phase = _CLOSED
            return [Close(reset=True)]
        self.dropped += 1
        return []

    def _guest_syn_rcvd(self, s: _In, now: float) -> list:
        if s.flags & RST:
            if self._unwrap_seq(s.seq) == self.rcv_nxt:
                self._phase = _CLOSED
                return [Close(reset=True)]
            self.dropped += 1
            return []
        if s.flags & SYN:
            if not s.flags & ACK and s.seq == self.guest_isn:
                return [ToGuest(self._syn_segment())]   # our SYN-ACK was lost
            self.dropped += 1
            return []
        if not s.flags & ACK:
            self.dropped += 1
            return []
        if self._unwrap_ack(s.ack) != 1:
            self.dropped += 1
            return [ToGuest(Segment(s.ack, 0, RST, 0))]
        # the handshake is done; the rest of the segment as in ESTABLISHED
        self._phase = _OPEN
        self.snd_una = 1
        self.snd_nxt = max(self.snd_nxt, 1)
        self._rto_at = None
        self.rto = self.RTO_INITIAL
        self.retries = 0
        self._wl1 = -1                      # take the window of this ACK
        self._kick = True
        return self._guest_open(s, now)

    def _guest_syn_sent(self, s: _In, now: float) -> list:
        ack_ok = bool(s.flags & ACK) and s.ack == self._wseq(1)
        if s.flags & RST:
            if ack_ok:                      # the guest refuses
                self._phase = _CLOSED
                return [Close(reset=True)]
            self.dropped += 1
            return []
        if s.flags & ACK and not ack_ok:
            self.dropped += 1
            return [ToGuest(Segment(s.ack, 0, RST, 0))]
        if not (s.flags & SYN and ack_ok):
            self.dropped += 1
            return []
        self.guest_isn = s.seq
        self.rcv_nxt = 1
        self._guest_options(s)
        if s.wscale is None:
            self.our_wscale = 0
        self._phase = _OPEN
        self.snd_una = 1
        self.snd_wnd = min(s.window, self.MAX_WINDOW)     # unscaled in a SYN
        self._wl1, self._wl2 = 0, 1
        self._rto_at = None
        self.rto = self.RTO_INITIAL
        self.retries = 0
        self._last_activity = self._last_guest = now
        self._kick = True
        eff: list = [self._ack_seg()]
        self._tail(now, eff)
        return eff

    def _guest_open(self, s: _In, now: float) -> list:
        self._last_guest = self._last_activity = now
        self.probes_unanswered = 0
        if s.flags & SYN:
            # a retransmitted SYN or SYN-ACK (our answer was lost) or garbage: an ACK
            # (RFC 5961 challenge ACK) tells the guest where we are
            if s.seq != self.guest_isn:
                self.dropped += 1
            return [self._ack_seg()]
        seq = self._unwrap_seq(s.seq)
        plen = len(s.payload)
        seglen = plen + (1 if s.flags & FIN else 0)
        lo, hi = self.rcv_nxt, self.rcv_nxt + max(self.RCV_WINDOW, 1)
        if seglen == 0:
            acceptable = lo <= seq < hi
        else:
            acceptable = seq < hi and seq + seglen > lo
        if not acceptable:
            if s.flags & RST:
                self.dropped += 1
                return []
            if seq >= hi:
                self.dropped += 1
            return [self._ack_seg()]        # an old duplicate or a keep-alive
        if s.flags & RST:
            if seq == self.rcv_nxt:
                self._phase = _CLOSED
                return [Close(reset=True)]
            return [self._ack_seg()]        # RFC 5961 challenge ACK
        if not s.flags & ACK:
            self.dropped += 1
            return []
        eff: list = []
        ack = self._unwrap_ack(s.ack)
        if ack > self.snd_max:
            self.dropped += 1
            return [self._ack_seg()]
        if ack >= self.snd_una:
            wnd = min(s.window << self.guest_wscale, self.MAX_WINDOW)
            if ack > self.snd_una:
                self._advance(ack, eff)
            elif (seglen == 0 and wnd == self.snd_wnd and self.snd_max > self.snd_una):
                self._dupacks += 1
                if (self._dupacks == self.DUPACK_THRESHOLD
                        and self.snd_una > self._recover):
                    self.fast_retransmits += 1
                    self._congestion(timeout=False)
                    self._rewind()
            self._update_window(seq, ack, wnd)
        if self._done():
            self._phase = _CLOSED
            eff.append(Close(reset=False))
            return eff
        send: list = []
        if seglen:
            if seq > self.rcv_nxt:
                self.out_of_order += 1
                self._hold(seq, s.payload, s.flags)
                eff.append(self._ack_seg())     # duplicate ACK: the gap is ours to wait for
            elif self.guest_fin:
                self.dropped += 1               # data after the guest's FIN
                eff.append(self._ack_seg())
            else:
                new = s.payload[self.rcv_nxt - seq:]
                if new:
                    if self._send_pending is None:
                        self._send_pending = (len(new), bool(s.flags & FIN))
                        send.append(Send(new))
                    else:
                        self.dropped += 1       # the guest retransmits it
                elif s.flags & FIN:
                    self.guest_fin = True
                    self.rcv_nxt += 1
                    eff += [ShutdownWrite(), self._ack_seg()]
                    if self._done():
                        self._phase = _CLOSED
                        eff.append(Close(reset=False))
                        return eff
        self._tail(now, eff)
        return eff + send

    def _hold(self, seq: int, payload: bytes, flags: int) -> None:
        """Keeps out-of-order data (within the window, not with a FIN) until the gap
        before it is filled: the guest then need not send all of it again."""
        if (flags & FIN or not payload or seq in self._held
                or seq + len(payload) > self.rcv_nxt + self.RCV_WINDOW
                or self._held_bytes + len(payload) > self.RCV_WINDOW):
            return
        self._held[seq] = bytes(payload)
        self._held_bytes += len(payload)

    def _take_held(self) -> bytes:
        """The held data that now follows rcv_nxt without a gap (removed from the hold)."""
        if not self._held:
            return b""
        out = bytearray()
        pos = self.rcv_nxt
        for start in sorted(self._held):
            data = self._held[start]
            if start > pos:
                break
            del self._held[start]
            self._held_bytes -= len(data)
            if start + len(data) > pos:
                out += data[pos - start:]
                pos = start + len(data)
        return bytes(out)

    def _advance(self, ack: int, eff: list) -> None:
        """The guest acknowledged up to ack: discard those bytes from the socket."""
        limit = self.host_end if self.host_end is not None else ack
        n = min(ack, limit) - min(self.snd_una, limit)
        if n > 0:
            eff.append(Consume(n))
        if self.CONGESTION:                     # slow start, then one segment per window
            mss, cwnd, acked = self._send_mss(), self._cwnd(), ack - self.snd_una
            grow = acked if cwnd < self.ssthresh else max(1, mss * acked // cwnd)
            self.cwnd = min(cwnd + grow, self.MAX_WINDOW)
        self.snd_una = ack
        self.snd_nxt = max(self.snd_nxt, ack)
        self.rto = self.RTO_INITIAL
        self.retries = 0
        self._rto_at = None
        self._dupacks = 0
        self._kick = True

    def _update_window(self, seq: int, ack: int, wnd: int) -> None:
        if self._wl1 < seq or (self._wl1 == seq and self._wl2 <= ack):
            if wnd != self.snd_wnd:
                if self.snd_wnd == 0:
                    self._persist_interval = self.RTO_INITIAL
                if wnd > self.snd_wnd:
                    self._kick = True
                self.snd_wnd = wnd
            self._wl1, self._wl2 = seq, ack

    # ---- host -> guest ----------------------------------------------------------------

    def _send_data(self, payload: bytes, eff: list) -> None:
        mss = self._send_mss()
        if self.COALESCE and len(payload) > mss:
            seq = self.snd_nxt
            self.snd_nxt += len(payload)
            fin = self.snd_nxt == self.host_end
            if fin:
                self.snd_nxt += 1
            first = self._seg(seq, ACK)
            eff.append(ToGuestData(first.seq, first.ack, first.window, payload, mss, fin))
            self.snd_max = max(self.snd_max, self.snd_nxt)
            return
        pos, n = 0, len(payload)
        while pos < n:
            chunk = payload[pos:pos + mss]
            pos += len(chunk)
            flags = ACK | PSH if pos >= n else ACK
            seq = self.snd_nxt
            self.snd_nxt += len(chunk)
            if pos >= n and self.snd_nxt == self.host_end:
                flags |= FIN
                self.snd_nxt += 1
            eff.append(ToGuest(self._seg(seq, flags, chunk)))
        self.snd_max = max(self.snd_max, self.snd_nxt)

    def _want_peek(self) -> Peek | None:
        unsent_known = self.snd_nxt < self.snd_max or self.host_end is not None
        if not (self._may_have or self._drained or unsent_known):
            return None
        limit = self.PEEK_MAX
        if self.host_end is not None:
            limit = min(limit, self.host_end - self.snd_nxt)
        length = min(self.snd_una + self.snd_wnd - self.snd_nxt, limit)
        if self.CONGESTION:
            length = min(length, self.snd_una + self._cwnd() - self.snd_nxt)
        if length <= 0:
            return None
        self._peek = (self.snd_nxt, length)
        return Peek(self.snd_nxt - self.snd_una, length)

    def _tail(self, now: float, eff: list) -> None:
        """After every event while open: peek if that may send more, the FIN once the
        data before it is out, the timers, and whether to watch the socket."""
        if self._phase == _OPEN:
            if self._kick and self._peek is None:
                peek = self._want_peek()
                if peek is not None:
                    eff.append(peek)
            self._kick = False
            if (self.host_end is not None and self.snd_nxt == self.host_end
                    and self._peek is None):
                eff.append(ToGuest(self._seg(self.host_end, FIN | ACK)))
                self.snd_nxt += 1
                self.snd_max = max(self.snd_max, self.snd_nxt)
        self._rearm(now)
        if self._phase == _OPEN and self._peek is None:
            room = self.snd_una + self.snd_wnd - self.snd_nxt
            if self.CONGESTION:                 # a full congestion window waits for ACKs too
                room = min(room, self.snd_una + self._cwnd() - self.snd_nxt)
            want = self.host_end is None and room > 0 and not self._drained
            if want != self._reading:
                self._reading = want
                eff.append(WantReadable(want))

    def _rearm(self, now: float) -> None:
        if self._phase in (_SYN_SENT, _SYN_RCVD):
            outstanding = True
        elif self._phase == _OPEN:
            outstanding = self.snd_nxt > self.snd_una
        else:
            outstanding = False
        if not outstanding:
            self._rto_at = None
        elif self._rto_at is None:
            self._rto_at = now + self.rto
        persist = (self._phase == _OPEN and self.snd_wnd == 0
                   and self.snd_nxt == self.snd_una
                   and (self.host_end is None or self.snd_nxt < self.host_end))
        if not persist:
            self._persist_at = None
        elif self._persist_at is None:
            self._persist_at = now + self._persist_interval
