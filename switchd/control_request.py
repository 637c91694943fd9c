"""The VDE control request and reply (vde-protocol.md §1.3, §1.4, §1.8, §1.13): pure parse/build.

Never does I/O. RequestReader accumulates what a control connection sent and either
yields a Request or raises RequestError whose message names what is wrong, so the
switch can close that one connection with one precise log line.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

MAGIC = 0xFEEDFACE
REQUEST_MAX = 256              # vde_switch reads the request with one read of 256 bytes
V3_HEADER = 122                # magic, version, type, sockaddr_un
V1_HEADER = 124                # magic, type, mac[6], sockaddr_un
SOCKADDR_UN = 110              # sa_family (2) + sun_path (108)
REPLY_SIZE = SOCKADDR_UN
REQ_NEW_CONTROL = 0
REQ_NEW_PORT0 = 1
MAX_DESCRIPTION = 128


class RequestError(Exception):
    """The client's request is not valid; str() says why, for the log."""


@dataclass(frozen=True)
class Request:
    version: int          # 1 or 3
    port: int | None      # None: any free port; 0: port 0; N: port N
    path: bytes           # the client's data socket (sun_path up to its first NUL)
    description: str


def _sockaddr(data: bytes, offset: int) -> bytes:
    family = struct.unpack_from("<H", data, offset)[0]
    if family != socket.AF_UNIX:
        raise RequestError(f"client address family {family} is not AF_UNIX ({socket.AF_UNIX})")
    path = data[offset + 2: offset + SOCKADDR_UN].split(b"\0", 1)[0]
    if not path:
        raise RequestError("empty client socket path")
    return path


def _description(data: bytes, offset: int) -> str:
    return data[offset:].split(b"\0", 1)[0].decode("utf-8", "replace")


def missing(data: bytes) -> int:
    """How many more bytes a request that starts with data needs (0: enough to parse).

    Raises RequestError as soon as the bytes already seen cannot start a valid request."""
    if len(data) > REQUEST_MAX:
        raise RequestError(f"oversize request: {len(data)} bytes (at most {REQUEST_MAX})")
    if len(data) >= 4:
        magic = struct.unpack_from("<I", data)[0]
        if magic != MAGIC:
            raise RequestError(f"bad magic 0x{magic:08x} (a VDE request starts with 0x{MAGIC:08x});"
                               " v0 requests and non-VDE clients are not supported")
    if len(data) < 8:
        return V3_HEADER - len(data)
    version = struct.unpack_from("<I", data, 4)[0]
    if version == 3:
        return max(0, V3_HEADER - len(data))
    if version in (0, 1):           # v1 requests carry their type in this word
        return max(0, V1_HEADER - len(data))
    raise RequestError(f"unsupported request version {version} (supported: 1 and 3)")


def parse(data: bytes) -> Request:
    need = missing(data)
    if need:
        raise RequestError(f"truncated request: {len(data)} bytes, {need} more needed")
    word = struct.unpack_from("<I", data, 4)[0]
    if word == 3:
        rtype = struct.unpack_from("<I", data, 8)[0]
        kind, port_request = rtype & 0xFF, rtype >> 8
        path, descr, version = _sockaddr(data, 12), _description(data, V3_HEADER), 3
    else:
        kind, port_request = word, 0
        path, descr, version = _sockaddr(data, 14), _description(data, V1_HEADER), 1
    if kind == REQ_NEW_PORT0:
        port = 0
    elif kind == REQ_NEW_CONTROL:
        port = port_request or None
    else:
        raise RequestError(f"bad request type {kind} (0 = a port, 1 = port 0)")
    return Request(version, port, path, descr)


class RequestReader:
    """Collects a control connection's first bytes until they form a request."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> Request | None:
        self._buf += data
        if missing(self._buf):
            return None
        return parse(self._buf)

    def eof(self) -> RequestError:
        if not self._buf:
            return RequestError("connection closed before any request was sent")
        return RequestError(f"truncated request: connection closed after {len(self._buf)} bytes")


def build(path: bytes | str, port: int | None = None, description: str | bytes = b"",
          version: int = 3) -> bytes:
    """A request as vde's client libraries send it (tests and pyvde's own plugs use this)."""
    if isinstance(path, str):
        path = path.encode()
    if isinstance(description, str):
        description = description.encode()
    sockaddr = struct.pack("<H108s", socket.AF_UNIX, path)
    if version == 1:
        kind = REQ_NEW_PORT0 if port == 0 else REQ_NEW_CONTROL
        return struct.pack("<II6s", MAGIC, kind, b"\0" * 6) + sockaddr + description
    rtype = REQ_NEW_PORT0 if port == 0 else ((port or 0) << 8)
    return struct.pack("<III", MAGIC, version, rtype) + sockaddr + description


def build_reply(path: str) -> bytes:
    data = path.encode()
    if len(data) > 107:
        raise ValueError(f"socket path too long for sockaddr_un: {path}")
    return struct.pack("<H108s", socket.AF_UNIX, data)


def parse_reply(data: bytes) -> str:
    if len(data) != REPLY_SIZE:
        raise RequestError(f"reply of {len(data)} bytes (expected {REPLY_SIZE})")
    return _sockaddr(data, 0).decode()
