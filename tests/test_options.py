"""vde_switch's command line as pyvde-switch parses it (vde-protocol.md §5.1)."""
import os

import pytest

from switchd import options


def test_defaults():
    o = options.parse([])
    assert o.numports == 32 and o.hashsize == 128 and o.maxframe == 9234
    assert o.sock == ("/var/run/vde.ctl" if os.geteuid() == 0 else "/tmp/vde.ctl")
    assert o.mode is None and o.mgmtmode == 0o600 and not o.hub


@pytest.mark.parametrize("argv", [
    ["-s", "/tmp/a", "-n", "8", "-x", "-m", "0660", "-M", "/tmp/m"],
    ["--sock", "/tmp/a", "--numports=8", "--hub", "--mode", "0660", "--mgmt", "/tmp/m"],
    ["-sock", "/tmp/a", "-numports", "8", "-hub", "-mod", "0660", "-mgmt", "/tmp/m"],
    ["-s/tmp/a", "-n8", "-xm0660", "-M/tmp/m"],
    ["--vdesock", "/tmp/a", "--num", "8", "-x", "--mode=0660", "-M", "/tmp/m"],
])
def test_spellings(argv):
    o = options.parse(argv)
    assert (o.sock, o.numports, o.hub, o.mode, o.mgmt) == ("/tmp/a", 8, True, 0o660, "/tmp/m")


def test_other_options():
    o = options.parse(["--dirmode", "02770", "-g", "users", "-d", "-p", "pid", "-f", "rc",
                       "--mgmtmode", "0640", "--mgmtgroup", "adm", "--hashsize", "1000",
                       "--macaddr", "02.11.22.33.44.55", "--maxframe", "65550", "-F",
                       "--priority", "0x1000", "-D", "3", "--nostdin"])
    assert o.dirmode == 0o2770 and o.group == "users" and o.daemon and o.pidfile == "pid"
    assert o.rcfile == "rc" and o.mgmtmode == 0o640 and o.mgmtgroup == "adm"
    assert o.hashsize == 1000 and o.macaddr == bytes.fromhex("021122334455")
    assert o.maxframe == 65550 and o.fstp and o.priority == 0x1000 and o.nostdin


@pytest.mark.parametrize("argv,message", [
    (["-n", "zero"], "option -n: 'zero' is not a number"),
    (["-n", "0"], "out of range"),
    (["-m", "999"], "not an octal mode"),
    (["--maxframe", "70000"], "out of range"),
    (["--bogus"], "unknown option '--bogus'"),
    (["-q"], "unknown option '-q'"),
    (["-s"], "option -s needs a value"),
    (["--hub=1"], "takes no value"),
    (["--m", "1"], "ambiguous"),
    (["--macaddr", "zz:00:00:00:00:00"], "not a MAC address"),
    (["extra"], "unexpected argument 'extra'"),
])
def test_errors_name_the_option(argv, message):
    with pytest.raises(options.UsageError, match=message):
        options.parse(argv)
