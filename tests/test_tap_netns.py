"""Hosts on the switch: Debian's vde_plug2tap and vde_plug tap:// in network namespaces."""
import subprocess

import pytest
from vdetest import need_tool, wait_data_sockets, wait_for

pytestmark = pytest.mark.netns


def plug2tap(ns, switch_dir, tap: str, addr: str, *args: str) -> subprocess.Popen:
    need_tool("vde_plug2tap")
    p = ns.popen("vde_plug2tap", "-s", str(switch_dir), *args, tap, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
    wait_for(lambda: ns.exec("ip", "link", "show", tap, check=False).returncode == 0 or p.poll() is not None,
             what=f"{tap} in {ns.name}")
    assert p.poll() is None, p.stderr.read()
    ns.exec("ip", "addr", "add", addr, "dev", tap)
    ns.exec("ip", "link", "set", tap, "up")
    return p


def test_ping_between_namespaces_through_vde_plug2tap(switch, netns):
    ns1, ns2 = netns(), netns()
    p1 = plug2tap(ns1, switch.dir, "tap0", "10.11.0.1/24")
    p2 = plug2tap(ns2, switch.dir, "tap0", "10.11.0.2/24", "-p", "5")
    try:
        wait_data_sockets(switch.dir, 2)
        r = ns2.ping("10.11.0.1", count=5)
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr
        ports = [l for l in switch.command("port/print") if l.startswith("Port ")]
        assert [p.split()[1] for p in ports] == ["0001", "0005"]
        assert len(switch.command("hash/print")) == 2     # both tap MACs learned
    finally:
        p1.terminate(), p2.terminate()
        p1.wait(), p2.wait()


def test_tcp_transfer_through_the_switch(switch, netns):
    need_tool("iperf3")
    ns1, ns2 = netns(), netns()
    p1 = plug2tap(ns1, switch.dir, "tap0", "10.12.0.1/24")
    p2 = plug2tap(ns2, switch.dir, "tap0", "10.12.0.2/24")
    server = ns1.popen("iperf3", "-s", "-1", "-B", "10.12.0.1", stdout=subprocess.DEVNULL)
    try:
        wait_data_sockets(switch.dir, 2)
        assert ns2.ping("10.12.0.1", count=1).returncode == 0
        r = ns2.exec("iperf3", "-c", "10.12.0.1", "-t", "2", "-J", check=False, timeout=30)
        assert r.returncode == 0, r.stderr
        import json
        result = json.loads(r.stdout)
        received = result["end"]["sum_received"]["bytes"]
        assert received > 1_000_000
    finally:
        server.kill(), p1.terminate(), p2.terminate()
        server.wait(), p1.wait(), p2.wait()
