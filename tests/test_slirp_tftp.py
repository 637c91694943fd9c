"""pyvde-slirp's read-only TFTP server (tftp.py), pure: RFC 1350, blksize/timeout/tsize."""
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugs.slirp.tftp import (
    DATA,
    ERROR,
    OACK,
    RRQ,
    WRQ,
    TftpError,
    TftpServer,
    ack_packet,
    clean_path,
    request_packet,
)

CLIENT = (IPv4Address("10.0.2.15"), 2049)
FILE2000 = bytes(i * 7 % 251 for i in range(2000))
FILES = {
    "boot/pxelinux.0": FILE2000,
    "k1024": b"k" * 1024,
    "empty": b"",
    "text": b"a\nb\rc\r\n",
}


def read_file(path):
    if path == "secret":
        raise PermissionError(13, "Permission denied")
    if path == "dir":
        raise IsADirectoryError(21, "Is a directory")
    if path == "io":
        raise OSError(5, "Input/output error")
    try:
        return FILES[path]
    except KeyError:
        raise FileNotFoundError(2, "No such file or directory", path) from None


def server(**kw):
    return TftpServer(read_file, **kw)


def parse(packet):
    opcode = struct.unpack_from("!H", packet)[0]
    if opcode == DATA:
        return "DATA", struct.unpack_from("!H", packet, 2)[0], packet[4:]
    if opcode == ERROR:
        return "ERROR", struct.unpack_from("!H", packet, 2)[0], packet[4:-1].decode()
    if opcode == OACK:
        f = packet[2:].split(b"\0")[:-1]
        return "OACK", dict(zip((x.decode() for x in f[0::2]), (x.decode() for x in f[1::2])))
    return opcode, packet


def download(s, name, now=0.0, **options):
    """A well-behaved client: the file's blocks as received."""
    (first,) = s.handle(CLIENT, request_packet(RRQ, name, **options), now)
    blocks = []
    if options:
        assert parse(first)[0] == "OACK"
        out = s.handle(CLIENT, ack_packet(0), now)
    else:
        out = [first]
    while out:
        (pkt,) = out
        kind, block, data = parse(pkt)
        assert kind == "DATA" and block == len(blocks) + 1
        blocks.append(data)
        out = s.handle(CLIENT, ack_packet(block), now)
    return blocks


def test_transfer_of_2000_bytes_is_4_blocks_the_last_short():
    s = server()
    blocks = download(s, "boot/pxelinux.0")
    assert [len(b) for b in blocks] == [512, 512, 512, 464]
    assert b"".join(blocks) == FILE2000
    assert s.sessions == {} and s.counters["tftp_completed"] == 1
    assert s.next_deadline() is None


def test_leading_slash_is_relative():
    assert b"".join(download(server(), "/boot/pxelinux.0")) == FILE2000


def test_exact_multiple_of_512_ends_with_an_empty_block():
    blocks = download(server(), "k1024")
    assert [len(b) for b in blocks] == [512, 512, 0]
    assert [len(b) for b in download(server(), "empty")] == [0]


def test_blksize_option():
    s = server()
    (oack,) = s.handle(CLIENT, request_packet(RRQ, "boot/pxelinux.0", blksize=1024), 0.0)
    assert parse(oack) == ("OACK", {"blksize": "1024"})
    assert [len(b) for b in download(s, "boot/pxelinux.0", blksize=1024)] == [1024, 976]
    assert [len(b) for b in download(s, "k1024", blksize=1024)] == [1024, 0]
    # larger than one Ethernet frame can carry: the server's maximum, 1468
    (oack,) = s.handle(CLIENT, request_packet(RRQ, "k1024", blksize=65464), 0.0)
    assert parse(oack) == ("OACK", {"blksize": "1468"})


def test_tsize_timeout_and_unknown_options():
    s = server()
    pkt = request_packet(RRQ, "boot/pxelinux.0", TSIZE="0", timeout="5", windowsize="4")
    (oack,) = s.handle(CLIENT, pkt, 0.0)
    assert parse(oack) == ("OACK", {"tsize": "2000", "timeout": "5"})
    assert s.handle(CLIENT, ack_packet(0), 1.0)[0][:4] == b"\0\3\0\1"
    assert s.next_deadline() == 6.0
    # only unknown or bad options: no OACK, DATA 1 right away
    (first,) = s.handle(CLIENT, request_packet(RRQ, "k1024", blksize="x", foo="1"), 0.0)
    assert parse(first)[:2] == ("DATA", 1)


def test_netascii():
    s = server()
    (first,) = s.handle(CLIENT, request_packet(RRQ, "text", mode="NetASCII"), 0.0)
    assert parse(first) == ("DATA", 1, b"a\r\nb\r\0c\r\0\r\n")


def test_lost_ack_retransmits_after_timeout_then_gives_up():
    s = server(timeout=2.0, retries=5)
    (d1,) = s.handle(CLIENT, request_packet(RRQ, "boot/pxelinux.0"), 0.0)
    (d2,) = s.handle(CLIENT, ack_packet(1), 0.5)
    assert s.next_deadline() == 2.5
    assert s.timer(2.4) == []
    assert s.timer(2.5) == [(CLIENT, d2)]           # the ACK of block 2 was lost
    assert s.handle(CLIENT, ack_packet(1), 2.6) == []   # a duplicate ACK: nothing
    (d3,) = s.handle(CLIENT, ack_packet(2), 2.7)      # progress resets the count
    assert parse(d3)[:2] == ("DATA", 3)
    now, resent = 2.7, []
    while s.next_deadline() is not None:
        now = s.next_deadline()
        resent += s.timer(now)
    assert resent == [(CLIENT, d3)] * 5
    assert s.sessions == {} and s.counters["tftp_timeouts"] == 1
    assert s.counters["tftp_retransmits"] == 6
    assert s.handle(CLIENT, ack_packet(3), now + 1) == []    # too late: ignored
    assert s.counters["tftp_stray"] == 1
    assert parse(d1)[:2] == ("DATA", 1)


def test_the_oack_is_retransmitted_too():
    s = server(timeout=1.0, retries=1)
    (oack,) = s.handle(CLIENT, request_packet(RRQ, "k1024", blksize=512), 0.0)
    assert s.timer(1.0) == [(CLIENT, oack)]
    assert s.timer(2.0) == [] and s.sessions == {}


@pytest.mark.parametrize("name,code", [
    ("missing", 1),
    ("boot/missing", 1),
    ("../etc/passwd", 2),
    ("/../etc/passwd", 2),
    ("boot/../../etc/passwd", 2),
    ("..\\windows\\win.ini", 2),
    ("boot/", 2),
    ("/", 2),
    ("", 2),
    ("secret", 2),
    ("dir", 2),
    ("io", 0),
])
def test_errors(name, code):
    s = server()
    (err,) = s.handle(CLIENT, request_packet(RRQ, name), 0.0)
    assert parse(err)[:2] == ("ERROR", code)
    assert s.sessions == {}


def test_clean_path():
    assert clean_path("/boot//./pxelinux.0") == "boot/pxelinux.0"
    assert clean_path("a\\b") == "a/b"
    assert clean_path("a/..b") == "a/..b"
    assert clean_path("a/../b") is None


def test_write_request_refused():
    s = server()
    (err,) = s.handle(CLIENT, request_packet(WRQ, "upload"), 0.0)
    assert parse(err) == ("ERROR", 2, "read-only")


def test_illegal_operations_and_modes():
    s = server()
    for pkt in (struct.pack("!HH", DATA, 1) + b"x", struct.pack("!H", OACK) + b"a\0b\0",
                struct.pack("!H", 99)):
        (err,) = s.handle(CLIENT, pkt, 0.0)
        assert parse(err)[:2] == ("ERROR", 4)
    (err,) = s.handle(CLIENT, request_packet(RRQ, "k1024", mode="mail"), 0.0)
    assert parse(err)[:2] == ("ERROR", 4)


def test_error_from_client_ends_the_transfer():
    s = server()
    s.handle(CLIENT, request_packet(RRQ, "k1024"), 0.0)
    assert s.handle(CLIENT, struct.pack("!HH", ERROR, 0) + b"bye\0", 0.1) == []
    assert s.sessions == {} and s.timer(100.0) == []


def test_malformed_packets_raise_tftp_error_and_are_counted():
    s = server()
    for pkt, reply in ((b"", False), (b"\0", False), (b"\0\4\0", False),
                       (b"\0\1file", True), (b"\0\1file\0octet", True),
                       (b"\0\1file\0octet\0blksize\0", True), (b"\0\1\xff\0octet\0", True)):
        with pytest.raises(TftpError) as e:
            s.handle(CLIENT, pkt, 0.0)
        assert (e.value.reply is not None) == reply, pkt
        if reply:
            assert parse(e.value.reply)[:2] == ("ERROR", 4)
    assert s.counters["tftp_malformed"] == 7
    assert isinstance(TftpError("x"), ValueError)


def test_sessions_are_per_client_and_limited():
    s = server(max_sessions=2)
    other = (CLIENT[0], 2050)
    third = (IPv4Address("10.0.2.16"), 2049)
    s.handle(CLIENT, request_packet(RRQ, "k1024"), 0.0)
    s.handle(other, request_packet(RRQ, "boot/pxelinux.0"), 0.0)
    (err,) = s.handle(third, request_packet(RRQ, "k1024"), 0.0)
    assert parse(err)[:2] == ("ERROR", 0) and s.counters["tftp_sessions_full"] == 1
    (d2,) = s.handle(other, ack_packet(1), 0.0)
    assert parse(d2)[2] == FILE2000[512:1024]
    # a new request from the same client restarts its transfer
    (d1,) = s.handle(CLIENT, request_packet(RRQ, "boot/pxelinux.0"), 0.0)
    assert parse(d1)[2] == FILE2000[:512] and len(s.sessions) == 2


def test_block_numbers_wrap():
    big = bytes(range(256)) * 2050 + b"end"     # 65600 blocks of 8, then a short one
    s = TftpServer(lambda p: big)
    s.handle(CLIENT, request_packet(RRQ, "f", blksize=8), 0.0)
    blocks, out = [], s.handle(CLIENT, ack_packet(0), 0.0)
    while out:
        _, block, data = parse(out[0])
        assert block == (len(blocks) + 1) & 0xFFFF
        blocks.append(data)
        out = s.handle(CLIENT, ack_packet(block), 0.0)
    assert b"".join(blocks) == big and len(blocks) == 65601


@settings(max_examples=300)
@given(st.lists(st.one_of(
    st.binary(max_size=40),
    st.builds(lambda op, rest: struct.pack("!H", op) + rest,
              st.integers(0, 7), st.binary(max_size=30)),
    st.builds(lambda name, opts: request_packet(RRQ, name, **opts),
              st.sampled_from(["k1024", "empty", "missing", "../x", "text", "secret"]),
              st.dictionaries(st.sampled_from(["blksize", "timeout", "tsize", "x"]),
                              st.text("0123456789x-", max_size=12), max_size=3)),
    st.builds(ack_packet, st.integers(0, 6)),
), max_size=20), st.floats(0, 5))
def test_fuzz_only_tftp_error(packets, dt):
    s = server(max_sessions=2)
    clients = [CLIENT, (CLIENT[0], 7)]
    now = 0.0
    for i, pkt in enumerate(packets):
        now += dt
        try:
            out = s.handle(clients[i % 2], pkt, now)
        except TftpError as e:
            assert e.reply is None or e.reply[:2] == b"\0\5"
            continue
        assert all(isinstance(p, bytes) and len(p) >= 2 for p in out)
        s.timer(now)
        deadline = s.next_deadline()
        assert deadline is None or deadline > now
    assert len(s.sessions) <= 2
