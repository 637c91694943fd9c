"""pyvde-wirefilter's command line: wirefilter's options and value syntax (§8.2)."""
import pytest

from plugs.wire_options import LR, RL, WireUsageError, parse_args


def test_both_directions_and_per_direction_values():
    o = parse_args(["-v", "/tmp/s1:/tmp/s2", "-l", "LR20.5", "-l", "RL10", "-d", "100+20N",
                    "-b", "128K", "-m", "1500"])
    assert (o.left, o.right, o.dpipe) == ("/tmp/s1", "/tmp/s2", False)
    assert o.value("loss", LR).value == 20.5 and o.value("loss", RL).value == 10
    assert o.value("delay", LR).text() == "100+20N" == o.value("delay", RL).text()
    assert o.value("band", RL).value == 131072 and o.value("mtu", LR).value == 1500
    assert o.value("dup", LR) is None and o.fifo


def test_long_options_positional_vnls_and_schemes():
    o = parse_args(["--loss", "5", "--delay", "20+5N", "vde:///tmp/s1", "vde:///tmp/s2",
                    "--nofifo", "--seed", "42", "--capacity", "64K"])
    assert (o.left, o.right) == ("vde:///tmp/s1", "vde:///tmp/s2")
    assert o.value("loss", RL).value == 5 and o.value("capacity", LR).value == 65536
    assert not o.fifo and o.seed == 42
    assert parse_args(["-v", "vde:///tmp/s1:vde:///tmp/s2[3]"]).right == "vde:///tmp/s2[3]"
    assert parse_args(["-v", "-:/tmp/s2"]).left == "-"


def test_dpipe_chain_when_no_sides_are_given():
    o = parse_args(["-l", "10"])
    assert o.dpipe and o.left == o.right == ""


def test_mgmt_and_daemon_options():
    o = parse_args(["-v", "a:b", "-M", "/tmp/wf.mgmt", "--mgmtmode", "0660", "--daemon",
                    "--pidfile", "/tmp/wf.pid", "-f", "/tmp/wf.rc", "--blink", "/tmp/bl",
                    "--blinkid", "w1"])
    assert (o.mgmt, o.mgmtmode, o.daemon, o.pidfile, o.rcfile, o.blink, o.blinkid) == (
        "/tmp/wf.mgmt", 0o660, True, "/tmp/wf.pid", "/tmp/wf.rc", "/tmp/bl", "w1")


@pytest.mark.parametrize("argv,message", [
    (["-l", "x"], "option --loss: 'x' is not a value"),
    (["-l", "150"], "option --loss: 150 is more than 100 percent"),
    (["--mtu", "1500.5"], "option --mtu: '1500.5' must be a whole number"),
    (["--mgmtmode", "999", "a", "b"], "option --mgmtmode: '999' is not an octal mode"),
    (["--seed", "-1", "a", "b"], "option --seed"),
    (["-v", "onlyone"], "option -v: 'onlyone' is not LEFT:RIGHT"),
    (["-v", "a:b", "c", "d"], "not both"),
    (["a"], "expected two sides"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_values_give_one_line_naming_the_option(argv, message):
    with pytest.raises(WireUsageError) as e:
        parse_args(argv)
    assert message in str(e.value) and "\n" not in str(e.value)
