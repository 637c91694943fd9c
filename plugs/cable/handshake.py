"""pyvde-cable's sealed-mode handshake (cable-spec.md, "Sealed mode: the wire protocol"),
pure: datagrams and times in, effects out. No sockets, no clock: `now` is monotonic
seconds, `wall` is seconds since the epoch (only for the timestamps in HELLO and REKEY).

Wire format, version 1 (integers little-endian; K the 32-byte pre-shared key;
MAC = BLAKE2b-128 keyed with K over all the bytes before it):

    HELLO 54 bytes  0x01 | 0x01 | sender_index 4 | timestamp 8 (µs) | nonce_i 24 | MAC
    REPLY 50 bytes  0x02 | 0x01 | sender_index 4 | receiver_index 4 | nonce_r 24 | MAC
    REKEY 30 bytes  0x05 | 0x01 | unknown_index 4 | timestamp 8 (µs) | MAC
    (DATA, 0x03, is the C engine's: it never comes here.)

The initiator (the side with --connect) sends HELLO; the responder answers with REPLY
and both derive the session keys (derive_keys): okm = BLAKE2b-512 keyed with K over
"pyvde-cable v1 keys" | nonce_i | nonce_r | index_i | index_r, key_i2r = okm[:32],
key_r2i = okm[32:]. The responder installs the session as PENDING (receive only); the
initiator installs it as CURRENT and sends a keepalive at once, whose arrival makes the
engine promote PENDING to CURRENT on the responder (promoted()).

Effects (small frozen dataclasses, carried out in order by the shell):
SendDatagram(data, addr), InstallSession(slot, my_index, peer_index, send_key, recv_key,
addr), SendKeepalive() (an empty DATA on the current session), Refused(reason) (count and
log it). Handshake.datagram() never raises on what the network sends.

Acceptance (the spec's rules):
* HELLO: MAC; |timestamp - wall| <= 120 s ("stale timestamp"); timestamp greater than
  every HELLO timestamp accepted before ("replayed handshake"). The very HELLO answered
  last, again, from any address, gets the same REPLY again, sent there (the REPLY was
  lost, a NAT moved the initiator, or a copy raced the original) and changes nothing.
* REPLY: MAC; receiver_index must be the outstanding HELLO's index; accepted once
  (afterwards, and on a side with no HELLO out: "unexpected REPLY").
* REKEY: MAC; the same timestamp rules as HELLO (with its own greatest timestamp); an
  initiator then starts a new handshake, at most one per second for REKEYs, and only if
  the REKEY names the index its DATA goes to (the peer lost that session): the peer
  answers junk DATA of any index with a REKEY, so any other index is an attacker's.
* Parse order: empty -> "truncated"; type not HELLO/REPLY/REKEY (DATA included) ->
  "unknown type"; version -> "bad version"; a length other than the type's (shorter or
  longer) -> "truncated"; then the MAC -> "bad MAC".

Timers (tick(), next_deadline()): a HELLO is retried after 1 s, then 2, 4 and every 8 s
until a REPLY; an initiator re-handshakes when nothing authentic arrived for
3 x keepalive + 1 s, and 120 s after a handshake it initiated (rekey); both sides send a
keepalive when nothing was sent for `keepalive` seconds on a current session.
keepalive 0 disables keepalives and the silence rule (the 120 s rekey still runs).

Choices where the spec is silent:
* Retries resend the same HELLO bytes (same index, nonce, timestamp: the responder's
  repeated-HELLO rule then answers with the same REPLY), but a HELLO older than 30 s is
  replaced by a new one, so that retries to a peer that is down stay inside the peer's
  120 s timestamp window (with up to 90 s of clock skew). The backoff goes on.
* Our own timestamps strictly increase (max(wall, last + 1 µs)), so a wall clock that
  steps back does not get our HELLOs refused by a responder that saw the earlier ones.
* HELLOs always go to the address given to start() (the --connect address, resolved
  once); sessions go to the address their REPLY/HELLO came from (roaming is the engine's).
* Both sides with --connect: anyone answers an acceptable HELLO. A side whose own HELLO
  is out compares the two: the HELLO with the lower (timestamp, sender_index) wins. If
  the peer's wins, we drop ours and answer theirs; if ours wins, theirs is ignored (no
  effect, not a refusal: the peer drops it when ours arrives). Both sides see the same
  two HELLOs, so they agree; a lost HELLO only costs a retry.
* The 120 s rekey is done by the side that initiated the current session (as in
  WireGuard), so two --connect sides do not both rekey; an initiator whose pending
  session (a HELLO it answered) was promoted is then the responder of that session.
  promoted() also drops our outstanding HELLO: the peer's fresh session is up.
* unknown_index(): only a side without --connect sends REKEY (an initiator restarts
  handshakes by itself). An initiator with a current session answers with a keepalive
  on it instead: the likely cause is a peer still sending on the session ours replaced
  because the keepalive that confirms ours was lost (after PREVIOUS's 10 s its DATA
  would be lost until our next keepalive). Either answer at most once a second per
  address, and to at most 256 addresses a second (spoofed sources do not grow the
  table).
* A REKEY that reaches a side without --connect is checked and then has no effect.
* An authentic HELLO or REPLY with a sender index of 0 is accepted (only a peer with the
  key can make one; the spec asks ours to be nonzero, and they are).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

VERSION = 1
HELLO, REPLY, DATA, REKEY = 0x01, 0x02, 0x03, 0x05
KEY_SIZE = 32
NONCE_SIZE = 24
MAC_SIZE = 16
KDF_LABEL = b"pyvde-cable v1 keys"

TIMESTAMP_WINDOW = 120.0    # s: |timestamp - wall| allowed in HELLO and REKEY
REKEY_AFTER = 120.0         # s: the initiator of a session replaces it this often
RETRY_FIRST = 1.0           # s: HELLO retries after 1, 2, 4, 8, 8, ... s
RETRY_MAX = 8.0
HELLO_REUSE = 30.0          # s: a HELLO is resent unchanged while younger than this
REKEY_INTERVAL = 1.0        # s: REKEY sent per address, REKEY acted upon, at most this often
_REKEY_TABLE = 256          # addresses remembered for the REKEY rate limit

REASONS = ("bad MAC", "replayed handshake", "stale timestamp", "unexpected REPLY",
           "truncated", "unknown type", "bad version")

_HELLO = struct.Struct("<BBIQ24s")      # + MAC: 54 bytes
_REPLY = struct.Struct("<BBII24s")      # + MAC: 50 bytes
_REKEY = struct.Struct("<BBIQ")         # + MAC: 30 bytes
_LAYOUTS = {HELLO: _HELLO, REPLY: _REPLY, REKEY: _REKEY}
HELLO_SIZE = _HELLO.size + MAC_SIZE
REPLY_SIZE = _REPLY.size + MAC_SIZE
REKEY_SIZE = _REKEY.size + MAC_SIZE


class PacketRefused(ValueError):
    """A control datagram that is not accepted; str() and .reason are one of REASONS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Hello:
    index: int
    timestamp: int          # µs since the epoch
    nonce: bytes


@dataclass(frozen=True)
class Reply:
    sender_index: int
    receiver_index: int
    nonce: bytes


@dataclass(frozen=True)
class Rekey:
    unknown_index: int
    timestamp: int          # µs since the epoch


def mac(psk: bytes, message: bytes) -> bytes:
    return hashlib.blake2b(message, key=psk, digest_size=MAC_SIZE).digest()


def _seal(psk: bytes, body: bytes) -> bytes:
    return body + mac(psk, body)


def _nonce(nonce: bytes) -> bytes:
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"a nonce is {NONCE_SIZE} bytes, not {len(nonce)}")
    return nonce


def build_hello(psk: bytes, index: int, timestamp: int, nonce: bytes) -> bytes:
    return _seal(psk, _HELLO.pack(HELLO, VERSION, index, timestamp, _nonce(nonce)))


def build_reply(psk: bytes, sender_index: int, receiver_index: int, nonce: bytes) -> bytes:
    return _seal(psk, _REPLY.pack(REPLY, VERSION, sender_index, receiver_index,
                                  _nonce(nonce)))


def build_rekey(psk: bytes, unknown_index: int, timestamp: int) -> bytes:
    return _seal(psk, _REKEY.pack(REKEY, VERSION, unknown_index, timestamp))


def parse(psk: bytes, data: bytes) -> Hello | Reply | Rekey:
    """An authentic control datagram, or PacketRefused (never anything else)."""
    data = bytes(data)
    if not data:
        raise PacketRefused("truncated")
    layout = _LAYOUTS.get(data[0])
    if layout is None:
        raise PacketRefused("unknown type")
    if len(data) < 2:
        raise PacketRefused("truncated")
    if data[1] != VERSION:
        raise PacketRefused("bad version")
    if len(data) != layout.size + MAC_SIZE:
        raise PacketRefused("truncated")
    if not hmac.compare_digest(mac(psk, data[:-MAC_SIZE]), data[-MAC_SIZE:]):
        raise PacketRefused("bad MAC")
    kind, _version, *fields = layout.unpack_from(data)
    return {HELLO: Hello, REPLY: Reply, REKEY: Rekey}[kind](*fields)


def _parse_as(psk: bytes, data: bytes, cls: type) -> Hello | Reply | Rekey:
    msg = parse(psk, data)
    if not isinstance(msg, cls):
        raise PacketRefused("unknown type")
    return msg


def parse_hello(psk: bytes, data: bytes) -> Hello:
    return _parse_as(psk, data, Hello)


def parse_reply(psk: bytes, data: bytes) -> Reply:
    return _parse_as(psk, data, Reply)


def parse_rekey(psk: bytes, data: bytes) -> Rekey:
    return _parse_as(psk, data, Rekey)


def derive_keys(psk: bytes, nonce_i: bytes, nonce_r: bytes, index_i: int,
                index_r: int) -> tuple[bytes, bytes]:
    """(key_i2r, key_r2i): the initiator sends with the first, the responder with the
    second."""
    okm = hashlib.blake2b(KDF_LABEL + nonce_i + nonce_r + struct.pack("<II", index_i, index_r),
                          key=psk, digest_size=64).digest()
    return okm[:32], okm[32:]


# --- effects ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SendDatagram:
    data: bytes
    addr: object


@dataclass(frozen=True)
class InstallSession:
    slot: str               # "current" (initiator, after REPLY) or "pending" (responder)
    my_index: int           # DATA to us carries this receiver_index
    peer_index: int         # our DATA carries this receiver_index
    send_key: bytes
    recv_key: bytes
    addr: object            # where the session's DATA goes (until the engine roams)


@dataclass(frozen=True)
class SendKeepalive:
    """An empty DATA on the current session."""


@dataclass(frozen=True)
class Refused:
    reason: str             # one of REASONS


# --- the state machine -----------------------------------------------------------------

@dataclass
class _Outgoing:
    """Our HELLO waiting for its REPLY."""
    index: int
    timestamp: int
    nonce: bytes
    packet: bytes
    made_at: float
    retry_at: float
    interval: float


@dataclass(frozen=True)
class _Answered:
    """The HELLO answered last, where it came from, and the REPLY it got."""
    hello: bytes
    addr: object
    reply: bytes


class Handshake:
    """One side's handshake. `initiator`: this side has --connect (it starts handshakes
    with start() and re-handshakes); otherwise it only answers and sends REKEY hints."""

    def __init__(self, psk: bytes, initiator: bool, keepalive: float,
                 rand: Callable[[int], bytes] = os.urandom) -> None:
        if len(psk) != KEY_SIZE:
            raise ValueError(f"the key is {len(psk)} bytes, not {KEY_SIZE}")
        if not keepalive >= 0:
            raise ValueError(f"keepalive {keepalive} is not >= 0 seconds")
        self.psk = bytes(psk)
        self.initiator = initiator
        self.keepalive = keepalive
        self._rand = rand
        self._addr: object = None               # where HELLOs go; set by start()
        self._hello: _Outgoing | None = None
        self._answered: _Answered | None = None
        self._last_stamp = 0                    # our last timestamp (µs)
        self._seen_hello = -1                   # greatest HELLO timestamp accepted
        self._seen_rekey = -1                   # greatest REKEY timestamp accepted
        self._mine: deque[int] = deque(maxlen=4)    # our recent indexes (not reused)
        self._has_current = False
        self._initiated_current = False
        self._session_at = 0.0                  # the last handshake event (or start())
        self._rx = float("-inf")                # last authentic packet received
        self._tx = float("-inf")                # last DATA sent
        self._rekey_acted = float("-inf")
        self._peer_index: int | None = None     # the index our DATA goes to (current)
        self._answers: dict[object, float] = {}    # unknown_index(): addr -> when

    @property
    def established(self) -> bool:
        """There is a current session (the initiator got a REPLY, or a pending session
        was promoted)."""
        return self._has_current

    @property
    def handshaking(self) -> bool:
        """Our HELLO is out, waiting for its REPLY."""
        return self._hello is not None

    # -- events ---------------------------------------------------------------------

    def start(self, now: float, wall: float, addr: object) -> list:
        """The initiator's first HELLO, to `addr` (and every later HELLO too)."""
        if not self.initiator:
            raise ValueError("only an initiator (--connect) starts handshakes")
        self._addr = addr
        self._session_at = now
        return self._new_hello(now, wall, RETRY_FIRST)

    def datagram(self, data: bytes, addr: object, now: float, wall: float) -> list:
        """A HELLO, REPLY or REKEY from `addr`."""
        try:
            msg = parse(self.psk, data)
        except PacketRefused as e:
            return [Refused(e.reason)]
        if isinstance(msg, Hello):
            return self._on_hello(msg, bytes(data), addr, now, wall)
        if isinstance(msg, Reply):
            return self._on_reply(msg, addr, now)
        return self._on_rekey(msg, now, wall)

    def unknown_index(self, index: int, addr: object, now: float, wall: float) -> list:
        """The engine got DATA for an index it does not know from `addr` (at most one
        answer a second per address). A responder hints with REKEY, so that the peer
        re-handshakes at once; an initiator with a session sends a keepalive on it, which
        confirms it to a peer still sending on the session it replaced."""
        if self.initiator and not self._has_current:
            return []
        if not self._may_answer(addr, now):
            return []
        if self.initiator:
            self._tx = now
            return [SendKeepalive()]
        return [SendDatagram(build_rekey(self.psk, index, self._stamp(wall)), addr)]

    def promoted(self, now: float) -> list:
        """The engine promoted the pending session (a HELLO we answered) to current."""
        self._has_current = True
        self._initiated_current = False
        self._hello = None
        self._session_at = now
        self._rx = max(self._rx, now)
        self._tx = max(self._tx, now)       # the keepalive interval starts now
        return []

    def tick(self, now: float, wall: float, last_authentic_rx: float,
             last_tx: float) -> list:
        """Timers: HELLO retries, re-handshakes, keepalives. `last_authentic_rx`: when
        the last authentic packet arrived; `last_tx`: when the last DATA went out."""
        self._rx = max(self._rx, last_authentic_rx)
        self._tx = max(self._tx, last_tx)
        out: list = []
        if self._hello is not None:
            if now >= self._hello.retry_at:
                out += self._retry(now, wall)
        else:
            due = self._handshake_deadline()
            if due is not None and now >= due:
                out += self._new_hello(now, wall, RETRY_FIRST)
        due = self._keepalive_deadline()
        if due is not None and now >= due:
            self._tx = now
            out.append(SendKeepalive())
        return out

    def next_deadline(self) -> float | None:
        """When tick() should run next (from the times the last tick() was given; ticking
        early is harmless)."""
        deadlines = [d for d in (self._handshake_deadline(), self._keepalive_deadline())
                     if d is not None]
        return min(deadlines) if deadlines else None

    # -- messages -------------------------------------------------------------------

    def _on_hello(self, hello: Hello, data: bytes, addr: object, now: float,
                  wall: float) -> list:
        answered = self._answered
        if answered is not None and answered.hello == data:
            # the REPLY was lost (or a copy raced the original from elsewhere): the same
            # REPLY again, to wherever this copy came from; the session is unchanged
            return [SendDatagram(answered.reply, addr)]
        reason = _freshness(hello.timestamp, wall, self._seen_hello)
        if reason is not None:
            return [Refused(reason)]
        ours = self._hello
        if ours is not None and (ours.timestamp, ours.index) < (hello.timestamp, hello.index):
            return []                           # both initiating: ours wins
        self._hello = None
        self._seen_hello = hello.timestamp
        my_index, nonce_r = self._new_index(), self._rand(NONCE_SIZE)
        key_i2r, key_r2i = derive_keys(self.psk, hello.nonce, nonce_r, hello.index, my_index)
        reply = build_reply(self.psk, my_index, hello.index, nonce_r)
        self._answered = _Answered(data, addr, reply)
        self._peer_index = hello.index
        self._initiated_current = False
        self._session_at = now
        self._rx = max(self._rx, now)
        return [InstallSession("pending", my_index, hello.index, key_r2i, key_i2r, addr),
                SendDatagram(reply, addr)]

    def _on_reply(self, reply: Reply, addr: object, now: float) -> list:
        ours = self._hello
        if ours is None or reply.receiver_index != ours.index:
            return [Refused("unexpected REPLY")]
        self._hello = None
        key_i2r, key_r2i = derive_keys(self.psk, ours.nonce, reply.nonce, ours.index,
                                       reply.sender_index)
        self._has_current = self._initiated_current = True
        self._peer_index = reply.sender_index
        self._session_at = now
        self._rx = max(self._rx, now)
        self._tx = now
        return [InstallSession("current", ours.index, reply.sender_index, key_i2r, key_r2i,
                               addr), SendKeepalive()]

    def _on_rekey(self, rekey: Rekey, now: float, wall: float) -> list:
        reason = _freshness(rekey.timestamp, wall, self._seen_rekey)
        if reason is not None:
            return [Refused(reason)]
        self._seen_rekey = rekey.timestamp
        # Only a REKEY naming the index our DATA goes to means "I lost your session":
        # the peer's engine reports only indexes it does not have, so a REKEY for any
        # other (an attacker's junk DATA answered by the peer) must not cost a handshake.
        if (not self.initiator or self._addr is None or rekey.unknown_index != self._peer_index
                or now - self._rekey_acted < REKEY_INTERVAL):
            return []
        self._rekey_acted = now
        return self._new_hello(now, wall, RETRY_FIRST)

    # -- helpers --------------------------------------------------------------------

    def _may_answer(self, addr: object, now: float) -> bool:
        """The rate limit of unknown_index(): once a second per address, and at most
        _REKEY_TABLE addresses a second."""
        last = self._answers.get(addr)
        if last is not None and now - last < REKEY_INTERVAL:
            return False
        if len(self._answers) >= _REKEY_TABLE:
            self._answers = {a: t for a, t in self._answers.items()
                             if now - t < REKEY_INTERVAL}
            if len(self._answers) >= _REKEY_TABLE:
                return False                # a flood of addresses: no more answers now
        self._answers[addr] = now
        return True

    def _new_hello(self, now: float, wall: float, interval: float) -> list:
        index, nonce, timestamp = self._new_index(), self._rand(NONCE_SIZE), self._stamp(wall)
        packet = build_hello(self.psk, index, timestamp, nonce)
        self._hello = _Outgoing(index, timestamp, nonce, packet, made_at=now,
                                retry_at=now + interval, interval=interval)
        return [SendDatagram(packet, self._addr)]

    def _retry(self, now: float, wall: float) -> list:
        hello = self._hello
        assert hello is not None
        interval = min(hello.interval * 2, RETRY_MAX)
        if now - hello.made_at >= HELLO_REUSE:
            return self._new_hello(now, wall, interval)
        hello.retry_at, hello.interval = now + interval, interval
        return [SendDatagram(hello.packet, self._addr)]

    def _handshake_deadline(self) -> float | None:
        if self._hello is not None:
            return self._hello.retry_at
        if not self.initiator or self._addr is None:
            return None
        deadlines = []
        if self.keepalive:
            deadlines.append(max(self._rx, self._session_at) + 3 * self.keepalive + 1)
        if self._initiated_current or not self._has_current:
            deadlines.append(self._session_at + REKEY_AFTER)
        return min(deadlines, default=None)

    def _keepalive_deadline(self) -> float | None:
        if not self.keepalive or not self._has_current:
            return None
        return self._tx + self.keepalive

    def _new_index(self) -> int:
        for _ in range(64):
            index = int.from_bytes(self._rand(4), "little")
            if index and index not in self._mine:
                self._mine.append(index)
                return index
        raise RuntimeError("the random source gives no fresh nonzero index")

    def _stamp(self, wall: float) -> int:
        self._last_stamp = max(int(wall * 1e6), self._last_stamp + 1)
        return self._last_stamp


def _freshness(timestamp: int, wall: float, greatest: int) -> str | None:
    """Why a HELLO/REKEY timestamp is not acceptable, or None."""
    if abs(timestamp - int(wall * 1e6)) > TIMESTAMP_WINDOW * 1e6:
        return "stale timestamp"
    if timestamp <= greatest:
        return "replayed handshake"
    return None


__all__ = [
    "HELLO_SIZE", "REASONS", "REKEY_SIZE", "REPLY_SIZE", "Handshake", "Hello",
    "InstallSession", "PacketRefused", "Refused", "Rekey", "Reply", "SendDatagram",
    "SendKeepalive", "build_hello", "build_rekey", "build_reply", "derive_keys", "parse",
    "parse_hello", "parse_rekey", "parse_reply",
]
