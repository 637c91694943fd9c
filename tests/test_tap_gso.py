"""pyvde-plug2tap writes runs of TCP segments to its tap as one packet (GSO, what GRO
would make of them: cffi_build/tap_gso.c), and only runs it may merge: what tcpdump on
the tap sees, read back by tshark, and what the namespace's TCP counts.

The frames come from a raw VDE client while pyvde-plug2tap is stopped (SIGSTOP), so that
it reads them in one batch when it goes on."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from test_plugs import plug2tap_in
from vdetest import RawClient, need_tool, wait_data_sockets, wait_for

pytestmark = pytest.mark.netns
NS_ADDR, PEER = "10.41.0.1", "10.41.0.9"
MSS = 1000


def in_csum_errors(ns) -> int:
    """The namespace's TCP InCsumErrors (/proc/net/snmp)."""
    lines = [ln.split() for ln in ns.exec("cat", "/proc/net/snmp").stdout.splitlines()
             if ln.startswith("Tcp:")]
    return int(lines[1][lines[0].index("InCsumErrors")])


def segment(dst_mac: str, seq: int, payload: bytes, flags: str = "A", bad: bool = False,
            sport: int = 40000) -> bytes:
    tcp = TCP(sport=sport, dport=9, flags=flags, seq=seq, ack=1, window=1024)
    if bad:
        tcp.chksum = 0x1234
    return bytes(Ether(dst=dst_mac, src="02:00:00:00:41:09") / IP(src=PEER, dst=NS_ADDR)
                 / tcp / payload)


def captured(ns, pcap) -> list[tuple[int, int, str]]:
    """(TCP sequence number, TCP payload length, payload hex) of each captured packet."""
    r = subprocess.run(["tshark", "-r", str(pcap), "-o", "tcp.relative_sequence_numbers:FALSE",
                        "-o", "tcp.desegment_tcp_streams:FALSE", "-Y", f"ip.src=={PEER}",
                        "-T", "fields", "-e", "tcp.seq", "-e", "tcp.len", "-e", "tcp.payload"],
                       capture_output=True, text=True, timeout=30, check=True)
    return [(int(f[0]), int(f[1]), f[2] if len(f) > 2 else "")
            for f in (ln.split("\t") for ln in r.stdout.splitlines())]


def test_runs_are_merged_and_nothing_else(switch, netns, sockdir, cleanup):
    need_tool("tcpdump", "tshark")
    ns = netns()
    plug = plug2tap_in(ns, switch.dir, f"{NS_ADDR}/24", cleanup=cleanup)
    tap_mac = ns.exec("cat", "/sys/class/net/tap0/address").stdout.strip()
    pcap = sockdir / "tap0.pcap"
    dump = ns.popen("tcpdump", "-i", "tap0", "-U", "-n", "-s", "0", "-w", str(pcap), "tcp",
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cleanup(lambda: (dump.kill(), dump.wait()))
    wait_for(lambda: pcap.exists() and pcap.stat().st_size > 0 or dump.poll() is not None,
             10, what="tcpdump")
    raw = RawClient(switch.dir, sockdir)
    cleanup(raw.close)
    raw.handshake()
    wait_data_sockets(switch.dir, 2)
    errors_before = in_csum_errors(ns)

    payloads = [bytes([i]) * MSS for i in range(1, 11)]
    base = 1_000_000
    frames = []
    for i in range(6):                                  # 1-3 merge; 4 is bad; 5-6 merge
        frames.append(segment(tap_mac, base + i * MSS, payloads[i], bad=(i == 3)))
    gap = base + 8 * MSS                                # a hole: 7-8 start a new run
    frames.append(segment(tap_mac, gap, payloads[6]))
    frames.append(segment(tap_mac, gap + MSS, payloads[7], flags="PA"))   # PSH ends it
    frames.append(segment(tap_mac, gap + 2 * MSS, payloads[8]))           # alone after PSH
    frames.append(segment(tap_mac, gap + 3 * MSS, payloads[9], flags="SA"))   # a SYN: alone

    plug.send_signal(signal.SIGSTOP)
    try:
        for f in frames:
            raw.send(f)
        time.sleep(0.3)                                 # all queued at the plug's socket
    finally:
        plug.send_signal(signal.SIGCONT)

    want = [(base, 3 * MSS, (payloads[0] + payloads[1] + payloads[2]).hex()),
            (base + 3 * MSS, MSS, payloads[3].hex()),
            (base + 4 * MSS, 2 * MSS, (payloads[4] + payloads[5]).hex()),
            (gap, 2 * MSS, (payloads[6] + payloads[7]).hex()),
            (gap + 2 * MSS, MSS, payloads[8].hex()),
            (gap + 3 * MSS, MSS, payloads[9].hex())]
    wait_for(lambda: len(captured(ns, pcap)) >= len(want), 10, interval=0.2,
             what="the packets on tap0")
    assert captured(ns, pcap) == want
    # the bad segment reached the namespace's TCP as it was, and was refused there
    assert in_csum_errors(ns) == errors_before + 1


TUNSETIFF, TUNSETOFFLOAD = 0x400454CA, 0x400454D0
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4 = 0x01, 0x02
LEAVE_OFFLOADS = f"""
import fcntl, os, struct
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, {TUNSETIFF}, struct.pack("16sH22x", b"tap0", {IFF_TAP | IFF_NO_PI | IFF_VNET_HDR}))
fcntl.ioctl(fd, {TUNSETOFFLOAD}, {TUN_F_CSUM | TUN_F_TSO4})
"""


def test_offloads_a_previous_user_left_on_a_persistent_tap_are_turned_off(
        switch, netns, sockdir, cleanup):
    """QEMU turns a tap's offloads on (checksum, TSO); a persistent tap keeps them. The
    plug must turn them off, or the host's TCP hands it 64 KB segments with partial
    checksums that no switch port can take: a transfer from that host would stall."""
    need_tool("socat")
    ns1, ns2 = netns(), netns()
    ns1.exec("ip", "tuntap", "add", "dev", "tap0", "mode", "tap")
    ns1.exec(sys.executable, "-c", LEAVE_OFFLOADS)
    features = ns1.exec("cat", "/sys/class/net/tap0/features", check=False).stdout
    plug2tap_in(ns1, switch.dir, "10.42.0.1/24", cleanup=cleanup)
    plug2tap_in(ns2, switch.dir, "10.42.0.2/24", cleanup=cleanup)
    wait_data_sockets(switch.dir, 2)
    data = os.urandom(4 << 20)
    src, dst = sockdir / "send.bin", sockdir / "recv.bin"
    src.write_bytes(data)
    sink = ns2.popen("socat", "-u", "TCP-LISTEN:5005,bind=10.42.0.2,reuseaddr",
                     f"CREATE:{dst}", stderr=subprocess.PIPE)
    cleanup(lambda: (sink.kill(), sink.wait()))
    wait_for(lambda: ":5005 " in ns2.exec("ss", "-Hltn", check=False).stdout, 10,
             what="socat listener")
    r = ns1.exec("socat", "-u", f"OPEN:{src}", "TCP:10.42.0.2:5005", check=False, timeout=30)
    assert r.returncode == 0, r.stderr
    assert sink.wait(30) == 0
    assert dst.read_bytes() == data, features
