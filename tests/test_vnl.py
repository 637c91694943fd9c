"""plugs/vnl.py: virtual network locators, text in, a dataclass or VnlError out."""
import hypothesis.strategies as st
import pytest
from hypothesis import example, given, settings

from plugs.vnl import Null, Ptp, Tap, Udp, Vde, VnlError, parse

VNL_TYPES = (Vde, Tap, Udp, Ptp, Null)


def error(text: str) -> str:
    with pytest.raises(VnlError) as e:
        parse(text)
    return str(e.value)


# ------------------------------------------------------------------ vde

@pytest.mark.parametrize("text, want", [
    ("/tmp/sw", Vde("/tmp/sw")),
    ("vde:///tmp/sw", Vde("/tmp/sw")),
    ("sw", Vde("sw")),
    ("", Vde("")),
    ("vde://", Vde("")),
    ("/tmp/sw[5]", Vde("/tmp/sw", 5)),
    ("vde:///tmp/sw[5]", Vde("/tmp/sw", 5)),
    ("/tmp/sw[0]", Vde("/tmp/sw", 0)),
    ("/tmp/sw[65535]", Vde("/tmp/sw", 65535)),
    ("/tmp/sw[]", Vde("/tmp/sw")),
    ("vde:///tmp/sw[port=5/group=vde/mode=0660]", Vde("/tmp/sw", 5, "vde", 0o660)),
    ("/tmp/sw[p=5/g=x/m=600]", Vde("/tmp/sw", 5, "x", 0o600)),
    ("/tmp/sw[po=7]", Vde("/tmp/sw", 7)),
    ("/tmp/sw[gr=net/mo=7]", Vde("/tmp/sw", None, "net", 0o7)),
    ("/tmp/sw[/5/]", Vde("/tmp/sw", 5)),
    ("/tmp/sw[group='vde']", Vde("/tmp/sw", None, "vde")),
    ('/tmp/sw[group="vde"/mode="0640"]', Vde("/tmp/sw", None, "vde", 0o640)),
    ("/tmp/sw['5']", Vde("/tmp/sw", 5)),
    ("/tmp/sw[g=]", Vde("/tmp/sw")),
    ("/tmp/sw[mode=0]", Vde("/tmp/sw", mode=0)),
    ("/tmp/sw[mode=7777]", Vde("/tmp/sw", mode=0o7777)),
    ("/tmp/sw[5][6]", Vde("/tmp/sw[5]", 6)),     # only the last [...] holds arguments
    ("/tmp/a[b]c", Vde("/tmp/a[b]c")),           # not at the end: part of the path
])
def test_vde(text, want):
    assert parse(text) == want


@pytest.mark.parametrize("text, words", [
    ("/tmp/sw[x]", ["port 'x'", "not a number"]),
    ("/tmp/sw[-1]", ["port '-1'"]),
    ("/tmp/sw[port=]", ["port ''"]),
    ("/tmp/sw[70000]", ["port 70000", "out of range"]),
    ("/tmp/sw[65536]", ["65536"]),
    ("/tmp/sw[mode=999]", ["mode '999'", "octal"]),
    ("/tmp/sw[mode=8]", ["mode '8'"]),
    ("/tmp/sw[mode=01234]", ["mode '01234'"]),
    ("/tmp/sw[m=rw]", ["mode 'rw'"]),
    ("/tmp/sw[m=]", ["mode ''"]),
    ("/tmp/sw[foo=1]", ["unknown parameter 'foo'"]),
    ("/tmp/sw[ports=1]", ["unknown parameter 'ports'"]),
    ("/tmp/sw[=5]", ["unknown parameter ''"]),
])
def test_vde_errors(text, words):
    msg = error(text)
    assert msg.startswith(text + ":")
    for w in words:
        assert w in msg


# ------------------------------------------------------------------ tap

def test_tap():
    assert parse("tap://tap0") == Tap("tap0")
    assert parse("tap://" + "t" * 15) == Tap("t" * 15)
    assert parse("tap://" + "é" * 7 + "x") == Tap("é" * 7 + "x")   # 15 bytes


@pytest.mark.parametrize("name", ["", "t" * 16, "é" * 8, "a/b", ".", ".."])
def test_tap_bad_names(name):
    assert "1..15 bytes" in error("tap://" + name)


# ------------------------------------------------------------------ udp

@pytest.mark.parametrize("text, want", [
    ("udp://5000->127.0.0.1:5001", Udp("", 5000, "127.0.0.1", 5001)),
    ("udp://127.0.0.1:5000->127.0.0.1:5001", Udp("127.0.0.1", 5000, "127.0.0.1", 5001)),
    ("udp://1->host.example:65535", Udp("", 1, "host.example", 65535)),
    ("udp://[::1]:5000->[::1]:5001", Udp("::1", 5000, "::1", 5001)),
    ("udp://5000->[fe80::1%eth0]:5001", Udp("", 5000, "fe80::1%eth0", 5001)),
    ("udp://[::]:5000->127.0.0.1:5001", Udp("::", 5000, "127.0.0.1", 5001)),
    ("udp://:5000->h:5001", Udp("", 5000, "h", 5001)),
])
def test_udp(text, want):
    assert parse(text) == want


@pytest.mark.parametrize("text", [
    "udp://",
    "udp://5000",
    "udp://5000 127.0.0.1:5001",          # missing arrow
    "udp://5000-127.0.0.1:5001",
    "udp://5000->127.0.0.1",              # missing port
    "udp://5000->:5001",                  # missing address
    "udp://x->127.0.0.1:5001",
    "udp://5000->::1:5001",               # IPv6 needs brackets
    "udp://::1:5000->[::1]:5001",
    "udp://5000->127.0.0.1:5001x",
])
def test_udp_bad_forms(text):
    assert "expected udp://[src_addr:]src_port->dst_addr:dst_port" in error(text)


@pytest.mark.parametrize("text", [
    "udp://0->127.0.0.1:5001",
    "udp://5000->127.0.0.1:0",
    "udp://70000->127.0.0.1:5001",
    "udp://5000->127.0.0.1:70000",
    "udp://127.0.0.1:65536->127.0.0.1:1",
])
def test_udp_bad_ports(text):
    assert "UDP ports are 1..65535" in error(text)


# ------------------------------------------------------------------ ptp, null, schemes

def test_ptp_and_null():
    assert parse("ptp:///tmp/x") == Ptp("/tmp/x")
    assert parse("ptp://rel/x") == Ptp("rel/x")
    assert "ptp:// needs a path" in error("ptp://")
    assert parse("null://") == Null()
    assert parse("null://whatever") == Null()


@pytest.mark.parametrize("scheme", ["foo", "VDE", "http", "vxvde", ""])
def test_unknown_scheme_is_named(scheme):
    msg = error(f"{scheme}://x")
    assert f"unknown scheme '{scheme}://'" in msg


# ------------------------------------------------------------------ any text

def _outcome(text: str):
    try:
        got = parse(text)
    except VnlError as e:
        assert str(e).startswith(text + ":")     # names the locator it refuses
        return
    assert isinstance(got, VNL_TYPES)


# Characters str.isdigit() accepts but int() refuses (superscripts, circled digits...):
# left out of the passing property, exercised by the xfails below.
ODD_DIGITS = "".join(c for c in map(chr, range(0x110000)) if c.isdigit() and not c.isdecimal())
CHARS = st.characters(exclude_characters=ODD_DIGITS)   # and, by default, no surrogates
TEXT = st.text(CHARS, max_size=60)

# Pieces that steer random text into the parser's corners.
PIECES = st.sampled_from([
    "vde://", "tap://", "udp://", "ptp://", "null://", "://", "/tmp/sw", "[", "]", "/",
    "=", "port", "p", "group", "g", "mode", "m", "'", '"', "->", ":", "[::1]", "127.0.0.1",
    "0", "5", "65535", "65536", "0660", "999", "x",
])
VNL_LIKE = st.lists(st.one_of(PIECES, st.text(CHARS, max_size=4)), max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(TEXT, VNL_LIKE))
def test_any_text_gives_a_locator_or_a_vnl_error(text):
    """Any text but lone surrogates, ODD_DIGITS and digit runs of thousands (the xfails)."""
    _outcome(text)


@pytest.mark.parametrize("text", [
    "/tmp/sw[²]",
    "/tmp/sw[port=¹²]",
    "/tmp/sw[" + "1" * 5000 + "]",
    "udp://" + "1" * 5000 + "->127.0.0.1:5001",
    "tap://tap\udcff",                   # sys.argv's spelling of the byte 0xff
])
def test_odd_text_gives_a_vnl_error(text):
    _outcome(text)


@settings(max_examples=50, deadline=None)
@given(st.text(st.characters(categories=["No", "Cs"]), min_size=1, max_size=3))
@example("²")
def test_any_text_in_brackets_or_tap_gives_a_locator_or_a_vnl_error(odd):
    _outcome(f"/tmp/sw[{odd}]")
    _outcome(f"tap://{odd}")
