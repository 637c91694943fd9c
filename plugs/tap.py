"""Linux tap devices: open (attach to an existing one or create it), MTU, link up.

Set-up only; frames move in C (pump.c) on the fd returned here.
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
IFF_UP = 0x1
MAX_MTU = 65521          # the largest MTU Linux gives a tap (frames of MTU + 14 bytes)


class TapError(Exception):
    """str() is one line naming the interface and what failed."""


def open_tap(name: str, vnet: bool = True) -> int:
    """The fd of tap `name`: a persistent tap owned by this user (or any, as root) is
    attached to; a missing one is created (root or CAP_NET_ADMIN needed). With `vnet`
    (IFF_VNET_HDR) every frame read or written carries a 10-byte virtio_net_hdr, which
    lets the pump write runs of TCP segments as one packet (cffi_build/tap_gso.c)."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise TapError(f"/dev/net/tun: {e.strerror}") from None
    try:
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet else 0)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
    except OSError as e:
        os.close(fd)
        why = {1: "not allowed (the tap belongs to another user, or creating one needs root)",
               16: "busy (another program has it open)",
               22: "exists and is not a tap"}.get(e.errno, e.strerror)
        raise TapError(f"tap {name}: {why}") from None
    if vnet:
        # No offloads towards us, whatever a previous user of a persistent tap (QEMU)
        # asked for: frames read are whole and checksummed, the header says nothing.
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
        except OSError as e:
            os.close(fd)
            raise TapError(f"tap {name}: cannot turn its offloads off: {e.strerror}") from None
    return fd


def _ifreq(name: str, fmt: str, *values) -> bytes:
    return struct.pack("16s" + fmt, name.encode(), *values).ljust(40, b"\0")


def get_mtu(name: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        r = fcntl.ioctl(s, SIOCGIFMTU, _ifreq(name, "i", 0))
    return struct.unpack_from("i", r, 16)[0]


def set_mtu(name: str, mtu: int) -> None:
    if not 68 <= mtu <= MAX_MTU:
        raise TapError(f"tap {name}: MTU {mtu} out of range (68..{MAX_MTU})")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, SIOCSIFMTU, _ifreq(name, "i", mtu))
    except OSError as e:
        raise TapError(f"tap {name}: cannot set MTU {mtu}: {e.strerror}") from None


def set_up(name: str) -> None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            r = fcntl.ioctl(s, SIOCGIFFLAGS, _ifreq(name, "H", 0))
            flags = struct.unpack_from("H", r, 16)[0]
            fcntl.ioctl(s, SIOCSIFFLAGS, _ifreq(name, "H", flags | IFF_UP))
    except OSError as e:
        raise TapError(f"tap {name}: cannot bring it up: {e.strerror}") from None
