"""The control request parser: the examples of vde-protocol.md §1 and a fuzz property."""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchd import control_request as cr


def test_captured_vde_plug_request_parses():
    # §1.6: 149 bytes from `vde_plug /tmp/vdesw1`, pid 1834
    path = b"/tmp/vdesw1/.01834-00000"
    data = (bytes.fromhex("cefaedfe 03000000 00000000 0100") + path.ljust(108, b"\0")
            + b"vdeplug: user=root pid=1834")
    assert len(data) == 149
    req = cr.parse(data)
    assert req == cr.Request(3, None, path, "vdeplug: user=root pid=1834")


@pytest.mark.parametrize("rtype,port", [(0x00000300, 3), (0x00000001, 0), (0, None),
                                        (0x00000600, 6), (0x00FFFF00, 0xFFFF)])
def test_port_requests(rtype, port):
    data = struct.pack("<III", cr.MAGIC, 3, rtype) + struct.pack("<H108s", 1, b"/x")
    assert cr.parse(data).port == port


def test_v1_request():
    data = cr.build("/tmp/c", None, "v1client", version=1)
    assert len(data) == 124 + 8
    assert cr.parse(data) == cr.Request(1, None, b"/tmp/c", "v1client")
    assert cr.parse(cr.build("/tmp/c", 0, "", version=1)).port == 0


def test_build_round_trip():
    data = cr.build("/tmp/sw/.00001-00000", 5, "QEMU user=root pid=1")
    assert len(data) == 122 + len("QEMU user=root pid=1")
    assert cr.parse(data) == cr.Request(3, 5, b"/tmp/sw/.00001-00000", "QEMU user=root pid=1")


@pytest.mark.parametrize("data,message", [
    (b"GET / HTTP/1.1\r\n\r\n", "bad magic"),
    (struct.pack("<II", cr.MAGIC, 2) + bytes(200), "unsupported request version 2"),
    (struct.pack("<II", cr.MAGIC, 7) + bytes(200), "unsupported request version 7"),
    (struct.pack("<III", cr.MAGIC, 3, 2) + struct.pack("<H108s", 1, b"/x"), "bad request type 2"),
    (struct.pack("<III", cr.MAGIC, 3, 0) + struct.pack("<H108s", 2, b"/x"), "not AF_UNIX"),
    (struct.pack("<III", cr.MAGIC, 3, 0) + struct.pack("<H108s", 1, b""), "empty client socket"),
    (struct.pack("<III", cr.MAGIC, 3, 0) + bytes(300), "oversize request: 312 bytes"),
    (struct.pack("<III", cr.MAGIC, 3, 0) + bytes(50), "truncated request"),
])
def test_bad_requests_are_named(data, message):
    with pytest.raises(cr.RequestError, match=message):
        cr.parse(data)


def test_reader_accumulates_split_request_and_reports_truncation():
    data = cr.build("/tmp/c", 4, "split")
    r = cr.RequestReader()
    assert r.feed(data[:10]) is None
    assert r.feed(data[10:121]) is None
    assert r.feed(data[121:]).port == 4
    r = cr.RequestReader()
    r.feed(data[:60])
    assert "after 60 bytes" in str(r.eof())
    assert "before any request" in str(cr.RequestReader().eof())


def test_reply():
    reply = cr.build_reply("/tmp/vdesw1/001.6")
    assert len(reply) == 110 and reply[:2] == b"\x01\x00"
    assert cr.parse_reply(reply) == "/tmp/vdesw1/001.6"


@settings(max_examples=2000)
@given(st.binary(max_size=400))
def test_garbage_parses_or_is_refused_by_name(data):
    """h11's property: any bytes either form a request or raise RequestError, nothing else."""
    try:
        req = cr.parse(data)
    except cr.RequestError as e:
        assert str(e)
        return
    assert req.version in (1, 3) and req.path


@given(st.builds(lambda path, port, descr: cr.build(path, port, descr),
                 st.binary(min_size=1, max_size=107).filter(lambda p: b"\0" not in p),
                 st.one_of(st.none(), st.integers(0, 0xFFFFFF)),
                 st.text(max_size=40).filter(lambda s: "\0" not in s)))
def test_any_well_formed_request_parses(data):
    req = cr.parse(data)
    assert req.version == 3
