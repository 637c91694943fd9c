"""A read-only TFTP server (RFC 1350), pure; options blksize (RFC 2348), timeout and
tsize (RFC 2349) (RFC 2347 option negotiation).

The router answers TFTP on its own address, port 69 (slirpvde's -t DIR, QEMU's tftp=):
like libslirp, every packet of a transfer goes to and from port 69, so a transfer is
known by the client's (address, port). The shell hands each datagram to
handle(client, payload, now) and sends what it returns to that client from port 69; it
calls timer(now) at next_deadline() and sends what that returns.

read_file(path) gets a relative path: leading slashes removed, `.` and empty components
dropped, `/` between components (a `\\` counts as `/` too). Names with a `..` component
are refused here (ERROR 2); read_file must still keep symlinks from leaving its
directory. It raises FileNotFoundError (-> ERROR 1), PermissionError (-> ERROR 2) or
another OSError (-> ERROR 0 with its strerror).

Packets that cannot be parsed raise TftpError (counted in `tftp_malformed`); its `reply`
is the ERROR packet to send back, or None (too short to be anything: drop it). Nothing
else is raised for any payload. A well-formed request the server does not do gets an
ERROR back: WRQ (2, "read-only"), DATA or OACK or an unknown opcode (4). An ACK or ERROR
for no transfer is ignored (counted `tftp_stray`).

Transfers: the file is read whole at the RRQ. A block is sent, then sent again every
`timeout` seconds (the client's `timeout` option if it gave one) until it is
acknowledged, at most `retries` times; then the transfer is dropped (`tftp_timeouts`).
Duplicate ACKs are ignored (no Sorcerer's Apprentice). The block number wraps from 65535
to 0 for files of more than 65535 blocks. A file of an exact multiple of the block size
ends with an empty block. At most `max_sessions` transfers at once (ERROR 0 beyond).
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6

# RFC 1350 error codes
E_UNDEFINED, E_NOT_FOUND, E_ACCESS, E_DISK_FULL, E_ILLEGAL, E_UNKNOWN_TID = 0, 1, 2, 3, 4, 5
E_OPTIONS = 8   # RFC 2347

BLOCK_SIZE = 512
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464       # RFC 2348
DEFAULT_MAX_BLKSIZE = 1468                # 1500 - IPv4 20 - UDP 8 - TFTP 4

Client = tuple[IPv4Address, int]


class TftpError(ValueError):
    """A TFTP packet that cannot be parsed; `reply` is the ERROR to send back or None."""

    def __init__(self, reason: str, reply: bytes | None = None):
        super().__init__(reason)
        self.reply = reply


def error_packet(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode("ascii", "replace") + b"\0"


def data_packet(block: int, data: bytes) -> bytes:
    return struct.pack("!HH", DATA, block & 0xFFFF) + data


def ack_packet(block: int) -> bytes:
    return struct.pack("!HH", ACK, block & 0xFFFF)


def request_packet(opcode: int, filename: str, mode: str = "octet", **options) -> bytes:
    """An RRQ or WRQ (for tests and clients)."""
    fields = [filename, mode] + [s for k, v in options.items() for s in (k, str(v))]
    return struct.pack("!H", opcode) + b"".join(f.encode() + b"\0" for f in fields)


def oack_packet(options: dict[str, str]) -> bytes:
    return struct.pack("!H", OACK) + b"".join(
        k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())


def clean_path(filename: str) -> str | None:
    """The relative path read_file gets, or None if the name must be refused."""
    parts = filename.replace("\\", "/").split("/")
    kept = [p for p in parts if p not in ("", ".")]
    if not kept or ".." in kept or filename.endswith(("/", "\\")):
        return None
    return "/".join(kept)


def to_netascii(data: bytes) -> bytes:
    """RFC 764 line ends: LF -> CR LF, a lone CR -> CR NUL."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


@dataclass
class _Transfer:
    data: bytes
    blksize: int
    timeout: float
    block: int          # the block (counted from 1, not wrapped) last sent; 0 = the OACK
    packet: bytes       # what was last sent, sent again on timeout
    deadline: float
    tries: int = 0      # retransmissions of `packet`

    def last_block(self) -> int:
        return len(self.data) // self.blksize + 1

    def block_packet(self, block: int) -> bytes:
        start = (block - 1) * self.blksize
        return data_packet(block, self.data[start:start + self.blksize])


class TftpServer:
    def __init__(self, read_file: Callable[[str], bytes], timeout: float = 2.0,
                 retries: int = 5, max_sessions: int = 16,
                 max_blksize: int = DEFAULT_MAX_BLKSIZE):
        self.read_file = read_file
        self.timeout = timeout
        self.retries = retries
        self.max_sessions = max_sessions
        self.max_blksize = max(MIN_BLKSIZE, min(max_blksize, MAX_BLKSIZE))
        self.sessions: dict[Client, _Transfer] = {}
        self.counters = dict.fromkeys((
            "tftp_requests", "tftp_completed", "tftp_errors_sent", "tftp_malformed",
            "tftp_stray", "tftp_timeouts", "tftp_retransmits", "tftp_sessions_full"), 0)

    # ------------------------------------------------------------ packets in

    def handle(self, client: Client, payload: bytes, now: float) -> list[bytes]:
        """The UDP payloads to send back to `client` for this one; TftpError if it
        cannot be parsed."""
        payload = bytes(payload)
        if len(payload) < 2:
            raise self._malformed("truncated TFTP packet")
        opcode = struct.unpack_from("!H", payload)[0]
        if opcode == RRQ:
            return self._rrq(client, payload, now)
        if opcode == ACK:
            if len(payload) < 4:
                raise self._malformed("truncated TFTP ACK")
            return self._ack(client, struct.unpack_from("!H", payload, 2)[0], now)
        if opcode == ERROR:
            if self.sessions.pop(client, None) is None:
                self.counters["tftp_stray"] += 1
            return []
        if opcode == WRQ:
            self.sessions.pop(client, None)
            return [self._error(E_ACCESS, "read-only")]
        return [self._error(E_ILLEGAL, "illegal TFTP operation")]

    def _malformed(self, reason: str, reply: bytes | None = None) -> TftpError:
        self.counters["tftp_malformed"] += 1
        if reply is not None:
            self.counters["tftp_errors_sent"] += 1
        return TftpError(reason, reply)

    def _error(self, code: int, message: str) -> bytes:
        self.counters["tftp_errors_sent"] += 1
        return error_packet(code, message)

    def _rrq(self, client: Client, payload: bytes, now: float) -> list[bytes]:
        fields = payload[2:].split(b"\0")
        if len(fields) < 3 or fields[-1] != b"" or len(fields) % 2 == 0:
            raise self._malformed("malformed TFTP request",
                                  error_packet(E_ILLEGAL, "malformed request"))
        try:
            filename, mode, *opts = (f.decode("ascii") for f in fields[:-1])
        except UnicodeDecodeError:
            raise self._malformed("TFTP request not in ASCII",
                                  error_packet(E_ILLEGAL, "malformed request")) from None
        self.counters["tftp_requests"] += 1
        self.sessions.pop(client, None)      # a new request ends the old transfer
        mode = mode.lower()
        if mode not in ("octet", "netascii"):
            return [self._error(E_ILLEGAL, f"mode {mode[:20]!r} not supported")]
        path = clean_path(filename)
        if path is None:
            return [self._error(E_ACCESS, "access violation")]
        if len(self.sessions) >= self.max_sessions:
            self.counters["tftp_sessions_full"] += 1
            return [self._error(E_UNDEFINED, "too many transfers")]
        try:
            data = self.read_file(path)
        except (FileNotFoundError, NotADirectoryError):
            return [self._error(E_NOT_FOUND, "file not found")]
        except (PermissionError, IsADirectoryError):
            return [self._error(E_ACCESS, "access violation")]
        except OSError as e:
            return [self._error(E_UNDEFINED, e.strerror or "read error")]
        if mode == "netascii":
            data = to_netascii(data)
        accepted, blksize, timeout = self._options(opts, len(data))
        t = _Transfer(data, blksize, timeout, 0, b"", now + timeout)
        if accepted:
            t.packet = oack_packet(accepted)
        else:
            t.block = 1
            t.packet = t.block_packet(1)
        self.sessions[client] = t
        return [t.packet]

    def _options(self, opts: list[str], size: int) -> tuple[dict[str, str], int, float]:
        """The options accepted (name -> value for the OACK), block size, timeout.
        Unknown options and bad values are ignored (RFC 2347)."""
        accepted: dict[str, str] = {}
        blksize, timeout = BLOCK_SIZE, self.timeout
        for name, value in zip(opts[0::2], opts[1::2]):
            name = name.lower()
            if name in accepted or not value.isdigit() or len(value) > 10:
                continue
            n = int(value)
            if name == "blksize" and n >= MIN_BLKSIZE:
                blksize = min(n, self.max_blksize)
                accepted[name] = str(blksize)
            elif name == "timeout" and 1 <= n <= 255:
                timeout = float(n)
                accepted[name] = value.lstrip("0")
            elif name == "tsize":
                accepted[name] = str(size)
        return accepted, blksize, timeout

    def _ack(self, client: Client, block: int, now: float) -> list[bytes]:
        t = self.sessions.get(client)
        if t is None:
            self.counters["tftp_stray"] += 1
            return []
        if block != t.block & 0xFFFF:
            return []                      # a duplicate or stale ACK: wait for the timer
        if t.block == t.last_block():
            del self.sessions[client]
            self.counters["tftp_completed"] += 1
            return []
        t.block += 1
        t.packet = t.block_packet(t.block)
        t.tries = 0
        t.deadline = now + t.timeout
        return [t.packet]

    # ------------------------------------------------------------ timers

    def timer(self, now: float) -> list[tuple[Client, bytes]]:
        """Retransmissions due at `now`; transfers out of retries are dropped."""
        out = []
        for client, t in list(self.sessions.items()):
            if t.deadline > now:
                continue
            if t.tries >= self.retries:
                del self.sessions[client]
                self.counters["tftp_timeouts"] += 1
                continue
            t.tries += 1
            t.deadline = now + t.timeout
            self.counters["tftp_retransmits"] += 1
            out.append((client, t.packet))
        return out

    def next_deadline(self) -> float | None:
        return min((t.deadline for t in self.sessions.values()), default=None)
