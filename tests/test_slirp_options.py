"""pyvde-slirp's command line: slirpvde's options and spellings (research §1.1), ours
(--mtu, --resolv-conf), and one-line errors naming the option."""
from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network

import pytest

from plugs.slirp.options import (
    USAGE,
    Forward,
    SlirpOptions,
    SlirpUsageError,
    parse_args,
)


def test_defaults():
    o = parse_args([])
    assert o == SlirpOptions()
    assert (o.sock, o.host, o.dns, o.dhcp, o.dhcp_start) == (None, "10.0.2.2/24", None,
                                                             False, None)
    assert (o.tcp_forwards, o.udp_forwards, o.tftp, o.pidfile) == ([], [], None, None)
    assert (o.daemon, o.quiet, o.port, o.group, o.mode) == (False, False, None, None, None)
    assert (o.mtu, o.resolv_conf) == (1500, "/etc/resolv.conf")
    n = o.network()
    assert (n.host, n.dns, n.dhcp_start, n.mtu) == (
        A("10.0.2.2"), A("10.0.2.3"), A("10.0.2.15"), 1500)


@pytest.mark.parametrize("argv", [
    ["-s", "/tmp/sw"], ["-s/tmp/sw"], ["--sock", "/tmp/sw"], ["--socket=/tmp/sw"],
    ["--vdesock", "/tmp/sw"], ["--unix", "/tmp/sw"], ["/tmp/sw"], ["-D", "/tmp/sw", "-q"],
])
def test_every_spelling_of_the_switch(argv):
    assert parse_args(argv).sock == "/tmp/sw"


def test_a_tap_instead_of_a_switch():
    o = parse_args(["-s", "tap://tap0", "--netns", "/proc/7/ns/net", "--userns",
                    "/proc/7/ns/user", "-D"])
    assert (o.tap, o.netns, o.userns, o.dhcp) == ("tap0", "/proc/7/ns/net", "/proc/7/ns/user",
                                                  True)
    assert parse_args(["tap://tap1"]).tap == "tap1"
    assert (parse_args(["-s", "tap://t", "--netns=/run/netns/x"]).netns) == "/run/netns/x"
    assert parse_args(["/tmp/sw"]).tap is None


@pytest.mark.parametrize("argv", [["-s", "-"], ["-s-"], ["-"], ["--sock=-"], ["-q", "-"]])
def test_the_record_stream_on_stdin_stdout(argv):
    assert parse_args(argv).sock == "-"


@pytest.mark.parametrize("opt", ["-H", "--host", "-n", "--network"])
def test_host_spellings(opt):
    o = parse_args([opt, "10.1.0.0/16"])
    assert o.host == "10.1.0.0/16" and o.network().host == A("10.1.0.2")


def test_the_last_host_wins_and_forwards_follow_it():
    o = parse_args(["-L", "80:10.1.0.15:80", "-H", "10.0.2.2/24", "-n", "10.1.0.0/16"])
    assert o.host == "10.1.0.0/16"
    assert o.tcp_forwards == [Forward(80, A("10.1.0.15"), 80)]


@pytest.mark.parametrize("opt", ["-N", "--dns", "--nameserver"])
def test_dns_spellings(opt):
    o = parse_args([opt, "10.0.2.53"])
    assert o.dns == "10.0.2.53" and o.network().dns == A("10.0.2.53")


def test_dhcp_spellings_are_getopt_s():
    assert parse_args(["-D"]).dhcp and parse_args(["--dhcp"]).dhcp
    o = parse_args(["--dhcp=10.0.2.40"])
    assert (o.dhcp, o.dhcp_start, o.network().dhcp_start) == (True, "10.0.2.40", A("10.0.2.40"))
    # getopt's optional argument: only after '='; otherwise it is the switch
    o = parse_args(["--dhcp", "/tmp/sw"])
    assert (o.dhcp, o.dhcp_start, o.sock) == (True, None, "/tmp/sw")
    # -D takes no argument: -Dq is -D -q
    o = parse_args(["-Dq"])
    assert o.dhcp and o.quiet
    # slirpvde's example (research §1.1)
    n = parse_args(["-H", "10.1.0.0/16", "--dhcp=10.1.1.44", "-N", "10.1.0.53"]).network()
    assert (n.host, n.network, n.dns, n.dhcp_start) == (
        A("10.1.0.2"), IPv4Network("10.1.0.0/16"), A("10.1.0.53"), A("10.1.1.44"))


def test_forwards():
    o = parse_args(["-L", "8080:10.0.2.15:80", "-L2222:10.0.2.16:22", "-U", "5353:10.0.2.15:53",
                    "-U", "69:10.0.2.200:69"])
    assert o.tcp_forwards == [Forward(8080, A("10.0.2.15"), 80), Forward(2222, A("10.0.2.16"), 22)]
    assert o.udp_forwards == [Forward(5353, A("10.0.2.15"), 53), Forward(69, A("10.0.2.200"), 69)]
    # the same host port for TCP and for UDP is two different sockets
    o = parse_args(["-L", "53:10.0.2.15:53", "-U", "53:10.0.2.15:53"])
    assert len(o.tcp_forwards) == len(o.udp_forwards) == 1


def test_every_other_option():
    o = parse_args(["-t", "/srv/tftp", "-p", "/run/slirp.pid", "-d", "-q", "--port", "5",
                    "-g", "vde", "-m", "0660", "--mtu", "65520", "--resolv-conf",
                    "/tmp/resolv.conf", "/tmp/sw"])
    assert (o.tftp, o.pidfile, o.daemon, o.quiet, o.port, o.group, o.mode, o.mtu,
            o.resolv_conf, o.sock) == ("/srv/tftp", "/run/slirp.pid", True, True, 5, "vde",
                                       0o660, 65520, "/tmp/resolv.conf", "/tmp/sw")
    o = parse_args(["--tftp", "/srv", "--pidfile", "p", "--daemon", "--quiet", "-P", "0",
                    "--group", "g", "--mod", "777", "--mtu=576"])
    assert (o.tftp, o.pidfile, o.daemon, o.quiet, o.port, o.group, o.mode, o.mtu) == (
        "/srv", "p", True, True, 0, "g", 0o777, 576)
    assert parse_args(["-dq"]).daemon and parse_args(["-dq"]).quiet
    assert parse_args(["-P5"]).port == 5
    assert parse_args(["-p", "-odd-name.pid", "-t", ""]).pidfile == "-odd-name.pid"
    assert parse_args(["--pidfile", "-x.pid", "--", "-"]).pidfile == "-x.pid"


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["-q", "-h", "/tmp/sw"]])
def test_help(argv):
    with pytest.raises(SlirpUsageError) as e:
        parse_args(argv)
    assert str(e.value) == "help"
    assert "--dhcp[=START]" in USAGE and "hostport:guestaddr:guestport" in USAGE


@pytest.mark.parametrize("argv,message", [
    (["-L", "80:x:80"], "option -L: '80:x:80' is not hostport:guestaddr:guestport"),
    (["-L", "80:10.0.2.15"], "option -L: '80:10.0.2.15' is not hostport:guestaddr:guestport"),
    (["-L", "80:10.0.2.15:80:1"], "is not hostport:guestaddr:guestport"),
    (["-L", "-1:10.0.2.15:80"], "option -L: '-1:10.0.2.15:80' is not hostport"),
    (["-U", "http:10.0.2.15:80"], "option -U: 'http:10.0.2.15:80' is not hostport"),
    (["-L", "0:10.0.2.15:80"], "option -L: port 0 in '0:10.0.2.15:80' is not 1..65535"),
    (["-U", "53:10.0.2.15:65536"], "option -U: port 65536 in '53:10.0.2.15:65536' is not"),
    (["-L", "80:10.0.3.15:80"], ("option -L: 10.0.3.15 in '80:10.0.3.15:80' is not a guest"
                                " address in 10.0.2.0/24")),
    (["-L", "80:0.0.0.0:80"], "option -L: 0.0.0.0 in '80:0.0.0.0:80' is not a guest address"),
    (["-L", "80:10.0.2.255:80"], "option -L: 10.0.2.255"),
    (["-L", "80:10.0.2.2:80"], "option -L: 10.0.2.2"),
    (["-L", "80:10.0.2.15:80", "-L", "80:10.0.2.16:80"], ("option -L: host port 80 is"
                                                         " forwarded twice")),
    (["-m", "999"], "option -m: '999' is not an octal mode like 0660"),
    (["--mod", "rw"], "option -m: 'rw' is not an octal mode"),
    (["--port", "x"], "option --port: 'x' is not a port number"),
    (["-P", "65536"], "option --port: '65536' is not a port number"),
    (["--mtu", "575"], "option --mtu: '575' is not 576..65520"),
    (["--mtu", "65521"], "option --mtu: '65521' is not 576..65520"),
    (["--mtu", "1500.0"], "option --mtu: '1500.0' is not 576..65520"),
    (["-H", "10.0.2.300"], "option -H: host '10.0.2.300' is not an IPv4 address"),
    (["-H", "10.0.2.2/31"], "option -H: host '10.0.2.2/31': network 10.0.2.2/31 is too small"),
    (["--host", "10.0.2.3"], "option -H: DNS address 10.0.2.3 is the router address"),
    (["-N", "8.8.8.8"], "option -N: DNS address 8.8.8.8 is not a host address in 10.0.2.0/24"),
    (["--dhcp=10.0.3.15"], "option --dhcp: DHCP start 10.0.3.15 is not a host address in"),
    (["--dhcp=x"], "option --dhcp: DHCP start 'x' is not an IPv4 address"),
    (["-D", "-H", "10.0.0.2/28"], ("option -D: the DHCP pool would start at 10.0.0.15,"
                                  " outside 10.0.0.0/28; give --dhcp=START")),
    (["-X", "10.0.2.15:0"], "option -X: X11 redirection is not supported"),
    (["-x", "6000:/tmp/.X11-unix/X0"], "option -x: redirection to UNIX sockets is not"),
    (["/tmp/a", "/tmp/b"], "more than one switch given: /tmp/a /tmp/b"),
    (["-s", "/tmp/a", "/tmp/b"], "give the switch either with -s or as an argument, not both"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--dh"], "unrecognized arguments: --dh"),        # getopt would abbreviate; we do not
    (["-s"], "option -s/--sock/--socket/--vdesock/--unix: expected one argument"),
    (["-L"], "option -L: expected one argument"),
    (["-s", "tap://"], "option -s: '' is not a tap name (1..15 bytes, no '/' or spaces)"),
    (["-s", "tap://a/b"], "option -s: 'a/b' is not a tap name"),
    (["tap://sixteen-bytes-nm"], "option -s: 'sixteen-bytes-nm' is not a tap name"),
    (["-s", "tap://t0", "--port", "3"], "option --port: only for a switch, not a tap"),
    (["-s", "tap://t0", "-g", "kvm"], "option -g: only for a switch, not a tap"),
    (["-s", "/tmp/sw", "--netns", "/run/netns/a"], "option --netns: only with -s tap://NAME"),
    (["--userns", "/proc/1/ns/user"], "option --userns: only with -s tap://NAME"),
    (["-s", "tap://t0", "--userns", "/proc/1/ns/user"], "option --userns: only with --netns"),
])
def test_errors_are_one_line_naming_the_option(argv, message):
    with pytest.raises(SlirpUsageError) as e:
        parse_args(argv)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_without_dhcp_a_small_network_is_fine():
    o = parse_args(["-H", "10.0.0.2/28", "-L", "22:10.0.0.9:22"])
    assert o.network().host == A("10.0.0.2") and not o.dhcp
