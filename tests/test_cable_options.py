"""pyvde-cable's command line (cable-spec.md, "Command line", "Sizes and the MTU"): every
spelling, every rule, one-line errors naming the option, the frame sizes, the key file."""
from __future__ import annotations

import pytest

from plugs.cable.options import (
    PROG,
    USAGE,
    CableOptions,
    CableUsageError,
    max_frame,
    parse_args,
    read_key,
)

SEALED = ["--key", "/etc/cable.key", "--connect", "192.0.2.1:4000"]


def test_sealed_defaults():
    o = parse_args(SEALED)
    assert o == CableOptions(mode="sealed", key_file="/etc/cable.key",
                             connect=("192.0.2.1", 4000))
    assert (o.sock, o.port, o.descr, o.listen, o.vni, o.peers, o.group) == (
        None, None, PROG, None, None, [], None)
    assert (o.udp_port, o.local, o.ttl, o.path_mtu, o.keepalive) == (None, None, 1, 1500, 5.0)
    assert (o.daemon, o.pidfile, o.quiet, o.genkey) == (False, None, False, None)


@pytest.mark.parametrize("argv,listen,connect", [
    (["--key", "k", "--listen", "51820"], ("", 51820), None),
    (["--key=k", "--listen=10.0.0.1:51820"], ("10.0.0.1", 51820), None),
    (["--key", "k", "--listen", "0.0.0.0:1"], ("0.0.0.0", 1), None),
    (["--key", "k", "--connect", "peer.example.org:65535"], None, ("peer.example.org", 65535)),
    (["--key", "k", "--connect", "peer:7"], None, ("peer", 7)),
    (["--key", "k", "--connect", "my_host.lan.:7"], None, ("my_host.lan.", 7)),
    (["--connect", "203.0.113.9:4000", "--listen", "4000", "--key", "k"], ("", 4000),
     ("203.0.113.9", 4000)),
])
def test_listen_and_connect(argv, listen, connect):
    o = parse_args(argv)
    assert (o.mode, o.key_file, o.listen, o.connect) == ("sealed", "k", listen, connect)


@pytest.mark.parametrize("argv", [
    ["--plain", "--listen", "5000"], ["--plain", "--connect", "h:5000"],
    ["--listen", "5000", "--connect", "h:5001", "--plain"],
])
def test_plain(argv):
    o = parse_args(argv)
    assert (o.mode, o.key_file, o.keepalive, o.udp_port) == ("plain", None, 5.0, None)


def test_vxlan():
    o = parse_args(["--vxlan", "42", "--peer", "10.0.0.2", "--peer", "vtep3.lan"])
    assert (o.mode, o.vni, o.peers, o.group, o.udp_port, o.ttl, o.local) == (
        "vxlan", 42, ["10.0.0.2", "vtep3.lan"], None, 4789, 1, None)
    o = parse_args(["--vxlan=16777215", "--group", "239.1.2.3", "--udp-port", "8472",
                    "--local", "10.0.0.1", "--ttl", "4"])
    assert (o.vni, o.peers, o.group, o.udp_port, o.local, o.ttl) == (
        16777215, [], "239.1.2.3", 8472, "10.0.0.1", 4)
    assert parse_args(["--vxlan", "0", "--group", "224.0.0.1", "--ttl", "0"]).vni == 0


@pytest.mark.parametrize("argv,vni", [
    (["--vxvde"], 1), (["--vxvde", "7"], 7), (["--vxvde=0"], 0), (["--vxvde", "-q"], 1),
    (["-q", "--vxvde", "16777215"], 16777215),
])
def test_vxvde(argv, vni):
    o = parse_args(argv)
    assert (o.mode, o.vni, o.group, o.udp_port, o.ttl) == ("vxvde", vni, "239.0.0.1", 14789, 1)


def test_vxvde_group_port_local_ttl():
    o = parse_args(["--vxvde", "--group", "239.9.9.9", "--udp-port", "1", "--local",
                    "192.168.1.5", "--ttl", "255"])
    assert (o.group, o.udp_port, o.local, o.ttl) == ("239.9.9.9", 1, "192.168.1.5", 255)


@pytest.mark.parametrize("argv", [
    ["-s", "/tmp/sw"], ["-s/tmp/sw"], ["--sock", "/tmp/sw"], ["--sock=/tmp/sw"],
])
def test_switch_spellings(argv):
    assert parse_args(argv + SEALED).sock == "/tmp/sw"
    assert parse_args(argv + ["--vxvde"]).sock == "/tmp/sw"


def test_a_vnl_as_the_switch():
    assert parse_args(["-s", "vde:///tmp/sw[3]", "--vxvde"]).sock == "vde:///tmp/sw[3]"


def test_every_common_option():
    o = parse_args(SEALED + ["-p", "5", "-D", "to the lab", "--path-mtu", "9000",
                             "--keepalive", "2.5", "-d", "-P", "/run/cable.pid", "-q"])
    assert (o.port, o.descr, o.path_mtu, o.keepalive, o.daemon, o.pidfile, o.quiet) == (
        5, "to the lab", 9000, 2.5, True, "/run/cable.pid", True)
    o = parse_args(SEALED + ["--port", "0", "--descr=x", "--path-mtu=576", "--keepalive=0",
                             "--daemon", "--pidfile", "p", "--quiet"])
    assert (o.port, o.descr, o.path_mtu, o.keepalive, o.daemon, o.pidfile, o.quiet) == (
        0, "x", 576, 0.0, True, "p", True)
    o = parse_args(["-dq", "-p7", "--vxvde", "--path-mtu", "65535"])
    assert (o.daemon, o.quiet, o.port, o.path_mtu) == (True, True, 7, 65535)


@pytest.mark.parametrize("text,seconds", [("5", 5.0), ("0", 0.0), ("0.5", 0.5), (".25", 0.25),
                                          ("10.", 10.0), ("65535", 65535.0)])
def test_keepalive_values(text, seconds):
    assert parse_args(SEALED + ["--keepalive", text]).keepalive == seconds


def test_values_may_start_with_a_dash():
    o = parse_args(["--key", "-odd.key", "--connect", "h:1", "-D", "-x-", "-P", "-p.pid"])
    assert (o.key_file, o.descr, o.pidfile) == ("-odd.key", "-x-", "-p.pid")


def test_the_last_one_wins():
    o = parse_args(SEALED + ["--connect", "b:2", "-D", "one", "-D", "two"])
    assert (o.connect, o.descr) == (("b", 2), "two")


@pytest.mark.parametrize("argv", [["genkey", "/tmp/k"], ["genkey", "-k"], ["genkey", "--"]])
def test_genkey(argv):
    o = parse_args(argv)
    assert o == CableOptions(genkey=argv[1])
    assert (o.mode, o.genkey) == ("genkey", argv[1])


@pytest.mark.parametrize("argv", [["-h"], ["--help"], SEALED + ["-h"], ["-q", "--help"],
                                  ["genkey", "-h"], ["genkey", "--help"]])
def test_help(argv):
    with pytest.raises(CableUsageError) as e:
        parse_args(argv)
    assert str(e.value) == "help"
    for text in ("genkey FILE", "--listen [ADDR:]PORT", "--connect HOST:PORT", "--key FILE",
                 "--plain", "--vxlan VNI", "--vxvde [VNI]", "--peer HOST", "--group MADDR",
                 "--udp-port N", "--local ADDR", "--ttl N", "--path-mtu N",
                 "--keepalive SECONDS", "--sock", "--port", "--descr", "--daemon",
                 "--pidfile", "--quiet"):
        assert text in USAGE


@pytest.mark.parametrize("argv,message", [
    # the mode
    ([], "no mode: give --key FILE, --plain, --vxlan VNI or --vxvde"),
    (["-s", "/tmp/sw", "--listen", "5"], "no mode: give --key FILE, --plain, --vxlan VNI or"),
    (["--key", "k", "--plain", "--listen", "1"], ("option --plain: only one mode, and --key"
                                                 " is given too")),
    (["--plain", "--vxvde"], "option --vxvde: only one mode, and --plain is given too"),
    (["--vxlan", "1", "--vxvde", "--group", "239.0.0.2"], "option --vxvde: only one mode"),
    (["--key", "", "--listen", "1"], "option --key: the key FILE is empty"),
    (["--key"], "option --key: expected one argument"),
    (["--vxlan"], "option --vxlan: expected one argument"),
    # sealed and plain
    (["--key", "k"], "option --key: needs --listen or --connect (or both)"),
    (["--plain"], "option --plain: needs --listen or --connect (or both)"),
    (["--plain", "--listen", "5000", "--keepalive", "3"], ("option --keepalive: only with"
                                                          " --key (sealed mode)")),
    (SEALED + ["--peer", "10.0.0.1"], "option --peer: only with --vxlan"),
    (SEALED + ["--group", "239.0.0.1"], "option --group: only with --vxlan or --vxvde"),
    (SEALED + ["--udp-port", "4789"], "option --udp-port: only with --vxlan or --vxvde"),
    (["--plain", "--listen", "1", "--local", "10.0.0.1"], ("option --local: only with"
                                                          " --vxlan or --vxvde")),
    (SEALED + ["--ttl", "2"], "option --ttl: only with --vxlan or --vxvde"),
    # vxlan and vxvde
    (["--vxlan", "5"], "option --vxlan: needs --peer or --group (or both)"),
    (["--vxlan", "5", "--connect", "h:1", "--peer", "h"], ("option --connect: only with --key"
                                                          " or --plain")),
    (["--vxvde", "--listen", "5"], "option --listen: only with --key or --plain"),
    (["--vxvde", "--keepalive", "5"], "option --keepalive: only with --key (sealed mode)"),
    (["--vxvde", "--peer", "10.0.0.1"], "option --peer: only with --vxlan"),
    (["--vxlan", "16777216", "--peer", "h"], ("option --vxlan: '16777216' is not a VNI"
                                             " (0..16777215)")),
    (["--vxlan", "-1", "--peer", "h"], "option --vxlan: '-1' is not a VNI (0..16777215)"),
    (["--vxlan", "0x10", "--peer", "h"], "option --vxlan: '0x10' is not a VNI"),
    (["--vxvde", "abc"], "option --vxvde: 'abc' is not a VNI (0..16777215)"),
    (["--vxvde="], "option --vxvde: '' is not a VNI (0..16777215)"),
    (["--vxvde", "16777216"], "option --vxvde: '16777216' is not a VNI"),
    (["--vxlan", "1", "--peer", "a", "--peer", "a"], "option --peer: 'a' is given twice"),
    (["--vxlan", "1", "--peer", "300.1.1.1"], ("option --peer: '300.1.1.1' is not an IPv4"
                                              " address or a host name")),
    (["--vxlan", "1", "--peer", "1.2.3"], "option --peer: '1.2.3' is not an IPv4 address"),
    (["--vxlan", "1", "--peer", "-bad-"], "option --peer: '-bad-' is not an IPv4 address"),
    (["--vxlan", "1", "--peer", "a b"], "option --peer: 'a b' is not an IPv4 address"),
    (["--vxlan", "1", "--peer", "h:4789"], "option --peer: 'h:4789' is not an IPv4 address"),
    (["--vxlan", "1", "--peer", ""], "option --peer: '' is not an IPv4 address"),
    (["--vxlan", "1", "--group", "10.0.0.1"], ("option --group: '10.0.0.1' is not an IPv4"
                                              " multicast address (224.0.0.0/4)")),
    (["--vxvde", "--group", "lan"], "option --group: 'lan' is not an IPv4 multicast address"),
    (["--vxvde", "--udp-port", "0"], "option --udp-port: '0' is not 1..65535"),
    (["--vxvde", "--udp-port", "65536"], "option --udp-port: '65536' is not 1..65535"),
    (["--vxvde", "--local", "eth0"], "option --local: 'eth0' is not an IPv4 address"),
    (["--vxvde", "--ttl", "256"], "option --ttl: '256' is not 0..255"),
    (["--vxvde", "--ttl", "-1"], "option --ttl: '-1' is not 0..255"),
    # --listen [ADDR:]PORT and --connect HOST:PORT
    (["--key", "k", "--listen", "0"], "option --listen: port '0' in '0' is not 1..65535"),
    (["--key", "k", "--listen", "65536"], ("option --listen: port '65536' in '65536' is not"
                                          " 1..65535")),
    (["--key", "k", "--listen", "http"], "option --listen: port 'http' in 'http' is not"),
    (["--key", "k", "--listen", ":5000"], "option --listen: ':5000' is not [ADDR:]PORT"),
    (["--key", "k", "--listen", "host.lan:5000"], ("option --listen: 'host.lan' in"
                                                  " 'host.lan:5000' is not an IPv4 address")),
    (["--key", "k", "--listen", "10.0.0.1:"], ("option --listen: port '' in '10.0.0.1:' is"
                                              " not 1..65535")),
    (["--key", "k", "--connect", "peer"], "option --connect: 'peer' is not HOST:PORT"),
    (["--key", "k", "--connect", ":4000"], "option --connect: ':4000' is not HOST:PORT"),
    (["--key", "k", "--connect", "peer:0"], ("option --connect: port '0' in 'peer:0' is not"
                                            " 1..65535")),
    (["--key", "k", "--connect", "peer:x"], "option --connect: port 'x' in 'peer:x' is not"),
    (["--key", "k", "--connect", "::1:5"], ("option --connect: '::1' in '::1:5' is not an"
                                           " IPv4 address or a host name")),
    (["--key", "k", "--connect", "10.0.0.256:5"], ("option --connect: '10.0.0.256' in"
                                                  " '10.0.0.256:5' is not an IPv4 address")),
    # common options
    (SEALED + ["-p", "x"], "option --port: 'x' is not a port number (0..65535)"),
    (SEALED + ["--port", "65536"], "option --port: '65536' is not a port number"),
    (SEALED + ["--path-mtu", "575"], "option --path-mtu: '575' is not 576..65535"),
    (SEALED + ["--path-mtu", "65536"], "option --path-mtu: '65536' is not 576..65535"),
    (SEALED + ["--path-mtu", "1500.0"], "option --path-mtu: '1500.0' is not 576..65535"),
    (SEALED + ["--keepalive", "-1"], ("option --keepalive: '-1' is not a number of seconds"
                                     " (0..65535)")),
    (SEALED + ["--keepalive", "nan"], "option --keepalive: 'nan' is not a number of seconds"),
    (SEALED + ["--keepalive", "inf"], "option --keepalive: 'inf' is not a number of seconds"),
    (SEALED + ["--keepalive", "1e3"], "option --keepalive: '1e3' is not a number of seconds"),
    (SEALED + ["--keepalive", "65536"], "option --keepalive: '65536' is not a number"),
    (SEALED + ["-s"], "option -s/--sock: expected one argument"),
    # arguments and genkey
    (SEALED + ["/tmp/sw"], "unexpected argument '/tmp/sw' (the switch is given with -s)"),
    (SEALED + ["genkey", "k"], "genkey: comes first and alone: pyvde-cable genkey FILE"),
    (["genkey"], "genkey: give exactly one FILE to write the key to: pyvde-cable genkey FILE"),
    (["genkey", "a", "b"], "genkey: give exactly one FILE to write the key to"),
    (["genkey", ""], "genkey: give exactly one FILE to write the key to"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--keep", "5"], "unrecognized arguments: --keep"),      # no abbreviations
])
def test_errors_are_one_line_naming_the_option(argv, message):
    with pytest.raises(CableUsageError) as e:
        parse_args(argv)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("mode,path_mtu,size", [
    ("plain", 1500, 1472), ("sealed", 1500, 1443), ("vxlan", 1500, 1464),
    ("vxvde", 1500, 1464), ("plain", 576, 548), ("sealed", 576, 519), ("vxlan", 9000, 8964),
    ("sealed", 65535, 65478),
])
def test_max_frame(mode, path_mtu, size):
    assert max_frame(mode, path_mtu) == size


def test_the_usual_vxlan_guest_mtu_is_1450():
    assert max_frame("vxlan", 1500) - 14 == 1450


def test_max_frame_of_genkey_is_an_error():
    with pytest.raises(ValueError):
        max_frame("genkey", 1500)


@pytest.mark.parametrize("mode_bits", [0o100600, 0o100400, 0o600, 0o700])
def test_a_private_key_file(mode_bits):
    key = bytes(range(32))
    assert read_key(key, mode_bits) == (key, None)


@pytest.mark.parametrize("mode_bits,shown", [
    (0o100644, "0644"), (0o100640, "0640"), (0o100604, "0604"), (0o100620, "0620"),
    (0o100666, "0666"),
])
def test_a_key_file_open_to_others_works_with_a_warning(mode_bits, shown):
    key, warning = read_key(b"\x07" * 32, mode_bits)
    assert key == b"\x07" * 32
    assert warning == (f"the key file's permissions {shown} are too open (group/others have"
                       " access); chmod 600 it")


@pytest.mark.parametrize("data", [b"", b"x" * 31, b"x" * 33, b"x" * 64 + b"\n"])
def test_a_key_of_the_wrong_length(data):
    with pytest.raises(ValueError) as e:
        read_key(data, 0o600)
    assert str(e.value) == (f"the key file holds {len(data)} bytes, not 32 (make one with:"
                            " pyvde-cable genkey FILE)")


def test_at_most_32_peers():
    peers = [x for i in range(33) for x in ("--peer", f"10.0.0.{i + 1}")]
    with pytest.raises(CableUsageError) as e:
        parse_args(["--vxlan", "5", *peers])
    assert str(e.value) == "option --peer: at most 32 peers (use --group for more)"
    assert len(parse_args(["--vxlan", "5", *peers[:64]]).peers) == 32
