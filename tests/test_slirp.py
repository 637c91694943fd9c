"""pyvde-slirp with real guests: namespaces behind taps, a QEMU guest, host services on
loopback. pyvde-slirp itself always runs without privileges."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from guest import build_initramfs, run_guest
from test_tap_netns import plug2tap
from vdetest import need_tool, wait_data_sockets, wait_for

pytestmark = pytest.mark.netns
PYVDE_SLIRP = str(Path(sys.executable).parent / "pyvde-slirp")
NOBODY = 65534

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev $interface; ip link set $interface up ;;
  bound|renew)
    ip addr flush dev $interface
    ip addr add $ip/${mask:-24} dev $interface
    [ -n "$router" ] && ip route add default via ${router%% *} dev $interface
    echo "nameserver ${dns%% *}" > /etc/resolv.conf
    echo "LEASE ip=$ip router=$router dns=$dns lease=$lease mtu=$mtu serverid=$serverid" ;;
esac
"""


def unprivileged() -> list[str]:
    """How to run pyvde-slirp without privileges: as nobody when nobody can run this
    interpreter and read the project, else as root with every capability dropped (no
    CAP_NET_ADMIN, CAP_NET_RAW, CAP_DAC_OVERRIDE, CAP_NET_BIND_SERVICE...)."""
    need_tool("setpriv")
    drop = ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                        *drop, sys.executable, "-c", "import plugs.slirp"],
                       capture_output=True, timeout=20, check=False)
    if r.returncode == 0:
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *drop]
    return ["setpriv", *drop]


# what a QEMU guest's script starts with: the lease script in place, eth0 up, a lease
GUEST_LEASE = f"""
mkdir -p /etc/udhcpc
cat > /etc/udhcpc/default.script <<'EOF'
{UDHCPC_SCRIPT}
EOF
chmod +x /etc/udhcpc/default.script
ip link set eth0 up
udhcpc -i eth0 -f -q -n -t 10 -T 1
"""


class Slirp:
    def __init__(self, switch_dir, tmp: Path, *args: str, resolver: str | None = None,
                 netns=None):
        conf = tmp / "resolv.conf"
        conf.write_text(f"# test resolver\nnameserver {resolver or '127.0.0.77'}\n")
        conf.chmod(0o644)
        self.log = tmp / "slirp.log"
        with open(self.log, "w") as log:
            where = ["ip", "netns", "exec", netns.name] if netns is not None else []
            self.proc = subprocess.Popen(
                [*where, *unprivileged(), PYVDE_SLIRP, "-s", str(switch_dir), "--resolv-conf",
                 str(conf), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log)
        wait_for(lambda: "Starting pyvde-slirp" in self.log.read_text()
                 or self.proc.poll() is not None, what="pyvde-slirp")
        assert self.proc.poll() is None, self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def slirp(switches, sockdir):
    made = []
    sw = switches("-m", "0777", name="slirpsw")     # nobody may connect
    os.chmod(sockdir, 0o755)

    def start(*args: str, **kw) -> Slirp:
        s = Slirp(sw.dir, sockdir, *args, **kw)
        made.append(s)
        return s
    start.switch = sw
    yield start
    for s in made:
        s.stop()


def dhcp_in(ns, sockdir, tap="tap0") -> dict[str, str]:
    script = sockdir / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    r = ns.exec("busybox", "udhcpc", "-i", tap, "-f", "-q", "-n", "-t", "5", "-T", "1", "-s",
                str(script), check=False, timeout=30)
    lease = [ln for ln in r.stdout.splitlines() if ln.startswith("LEASE ")]
    assert lease, r.stdout + r.stderr
    return dict(kv.split("=", 1) for kv in lease[0].split()[1:])


def tap_in(ns, switch_dir, tap="tap0"):
    """A namespace host on the switch (Debian's vde_plug2tap), with no address yet."""
    return plug2tap(ns, switch_dir, tap, "0.0.0.0/32")


class HttpServer:
    """A file server on the host's loopback."""

    def __init__(self, size: int = 1 << 20):
        self.body = os.urandom(size)
        body = self.body

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class DnsServer:
    """Answers every A query with 192.0.2.55, on 127.0.0.77:53 (a host resolver on
    loopback, as systemd-resolved or dnsmasq would be)."""

    def __init__(self, addr: str = "127.0.0.77"):
        from scapy.layers.dns import DNS, DNSRR
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 53))
        self.queries = []

        def serve():
            while True:
                try:
                    data, peer = self.sock.recvfrom(2048)
                except OSError:
                    return
                if peer is None:            # shut down by close()
                    return
                q = DNS(data)
                qd = q.qd[0]
                self.queries.append(qd.qname.decode())
                a = DNS(id=q.id, qr=1, aa=1, rd=q.rd, ra=1, qd=[qd],
                        an=[DNSRR(rrname=qd.qname, type="A", ttl=60, rdata="192.0.2.55")])
                self.sock.sendto(bytes(a), peer)
        threading.Thread(target=serve, daemon=True).start()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes the thread in recvfrom
        except OSError:
            pass
        self.sock.close()


def test_namespace_gets_a_lease_resolves_pings_and_fetches(slirp, netns, sockdir):
    need_tool("busybox")
    slirp("-D")
    ns = netns()
    tap = tap_in(ns, slirp.switch.dir)
    http = HttpServer()
    dns = DnsServer()
    try:
        lease = dhcp_in(ns, sockdir)
        assert lease["ip"] == "10.0.2.15" and lease["router"] == "10.0.2.2"
        assert lease["dns"] == "10.0.2.3" and lease["serverid"] == "10.0.2.2"
        assert ns.ping("10.0.2.2", count=2).returncode == 0
        assert ns.ping("10.0.2.3", count=1).returncode == 0
        r = ns.exec("busybox", "nslookup", "files.example.test", "10.0.2.3", check=False)
        assert "192.0.2.55" in r.stdout, r.stdout + r.stderr
        assert "files.example.test." in dns.queries
        r = subprocess.run(["ip", "netns", "exec", ns.name, "busybox", "wget", "-q", "-O", "-",
                            f"http://10.0.2.2:{http.port}/file"], capture_output=True,
                           timeout=60, check=False)
        assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(http.body).hexdigest()
    finally:
        http.close(), dns.close()
        tap.terminate(), tap.wait()


def test_iperf3_through_the_router_to_host_loopback(slirp, netns, sockdir):
    need_tool("iperf3")
    s = slirp("-D")
    ns = netns()
    tap = tap_in(ns, slirp.switch.dir)
    server = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", "5399"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        dhcp_in(ns, sockdir)
        time.sleep(0.3)
        r = ns.exec("iperf3", "-c", "10.0.2.2", "-p", "5399", "-t", "3", "-J", check=False,
                    timeout=60)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        result = json.loads(r.stdout)
        got = result["end"]["sum_received"]["bytes"]
        sent = result["end"]["sum_sent"]["bytes"]
        # what iperf3 sent was written to sockets: what its server read may lag at the end
        assert got > 1_000_000 and got <= sent
    finally:
        server.kill(), server.wait()
        tap.terminate(), tap.wait()
        s.stop()


def test_upload_arrives_intact(slirp, netns, sockdir):
    """4 MB from a namespace to a host server on loopback through 10.0.2.2: every byte,
    in order (the router joins consecutive segments and writes them at once)."""
    slirp("-D")
    ns = netns()
    tap = tap_in(ns, slirp.switch.dir)
    body = os.urandom(4 << 20)
    (sockdir / "upload.bin").write_bytes(body)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    got = []

    def accept():
        c, _ = server.accept()
        data = bytearray()
        while chunk := c.recv(1 << 16):
            data += chunk
        got.append(bytes(data))
        c.close()
    t = threading.Thread(target=accept)
    t.start()
    try:
        dhcp_in(ns, sockdir)
        r = ns.exec(sys.executable, "-c", f"""
import socket
s = socket.create_connection(("10.0.2.2", {server.getsockname()[1]}), timeout=30)
s.sendall(open({str(sockdir / "upload.bin")!r}, "rb").read())
s.shutdown(socket.SHUT_WR)
s.recv(1)
""", check=False, timeout=60)
        assert r.returncode == 0, r.stderr
        t.join(30)
        assert got and hashlib.sha256(got[0]).hexdigest() == hashlib.sha256(body).hexdigest()
    finally:
        server.close()
        tap.terminate(), tap.wait()


def test_tcp_and_udp_forwards_reach_the_namespace(slirp, netns, sockdir):
    slirp("-D", "-L", "18080:10.0.2.15:8080", "-U", "18081:10.0.2.15:8081")
    ns = netns()
    tap = tap_in(ns, slirp.switch.dir)
    try:
        dhcp_in(ns, sockdir)
        server = ns.popen(sys.executable, "-c", """
import socket, threading
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 8081))
def echo():
    while True:
        d, p = u.recvfrom(2048); u.sendto(b"udp:" + d, p)
threading.Thread(target=echo, daemon=True).start()
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 8080)); t.listen()
while True:
    c, _ = t.accept(); d = b""
    while not d.endswith(b"\\n"):
        x = c.recv(100)
        if not x: break
        d += x
    c.sendall(b"tcp:" + d); c.close()
""")
        time.sleep(0.5)
        for attempt in range(3):          # the guest's server may still be starting
            try:
                with socket.create_connection(("127.0.0.1", 18080), timeout=5) as c:
                    c.sendall(b"hello\n")
                    reply = b""
                    while True:
                        x = c.recv(100)
                        if not x:
                            break
                        reply += x
                break
            except OSError:
                time.sleep(0.5)
        assert reply == b"tcp:hello\n"
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(3)
        u.sendto(b"ping", ("127.0.0.1", 18081))
        assert u.recvfrom(100)[0] == b"udp:ping"
        server.kill(), server.wait()
    finally:
        tap.terminate(), tap.wait()


def test_two_namespaces_get_two_leases_and_both_reach_the_host(slirp, netns, sockdir):
    s = slirp("-D")
    http = HttpServer(size=100_000)
    ns1, ns2 = netns(), netns()
    t1, t2 = tap_in(ns1, slirp.switch.dir), tap_in(ns2, slirp.switch.dir)
    try:
        leases = {dhcp_in(ns1, sockdir)["ip"], dhcp_in(ns2, sockdir)["ip"]}
        assert leases == {"10.0.2.15", "10.0.2.16"}
        for ns in (ns1, ns2):
            r = subprocess.run(["ip", "netns", "exec", ns.name, "busybox", "wget", "-q", "-O",
                                "-", f"http://10.0.2.2:{http.port}/"], capture_output=True,
                               timeout=60, check=False)
            assert r.stdout == http.body
    finally:
        http.close()
        for t in (t1, t2):
            t.terminate(), t.wait()
        s.stop()


def test_malformed_frames_are_counted_and_service_goes_on(slirp, netns, sockdir):
    """Truncated, bad-checksum, fragmented and random frames from a raw client; then a
    namespace still gets its lease and its pings answered."""
    from scapy.all import ARP, BOOTP, DHCP, ICMP, IP, TCP, UDP, Ether, fragment
    from vdetest import RawClient
    s = slirp("-D")
    raw = RawClient(slirp.switch.dir, sockdir, "fuzz")
    raw.handshake()
    mac = "02:00:00:00:0f:01"
    frames = [bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.2.2"))[:20],
              bytes(Ether(src=mac, dst="52:55:0a:00:02:02") / IP(src="10.0.2.99", dst="10.0.2.2",
                                                                 chksum=1) / ICMP()),
              bytes(Ether(src=mac, dst="52:55:0a:00:02:02") / IP(src="10.0.2.99", dst="10.0.2.2")
                    / TCP(dport=80, chksum=7)),
              bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0",
                                                                 dst="255.255.255.255")
                    / UDP(sport=68, dport=67) / BOOTP(chaddr=b"\x02" * 6) / DHCP(
                        options=[("message-type", "discover"), "end"]))[:120],
              os.urandom(60), b"\xff" * 14]
    frames += [bytes(Ether(src=mac, dst="52:55:0a:00:02:02") / f) for f in
               fragment(IP(src="10.0.2.99", dst="10.0.2.2") / ICMP() / (b"x" * 3000), 1000)]
    for _ in range(20):
        for f in frames:
            raw.send(f)
    for i in range(200):                 # a flood of DHCP discovers from many MACs
        m = f"02:00:00:01:{i // 256:02x}:{i % 256:02x}"
        raw.send(bytes(Ether(src=m, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0",
                                                                   dst="255.255.255.255")
                       / UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex(m.replace(":", "")),
                                                         xid=i)
                       / DHCP(options=[("message-type", "discover"), "end"])))
    for i in range(1500):                # a SYN flood: closed ports on the host's loopback
        raw.send(bytes(Ether(src=mac, dst="52:55:0a:00:02:02")
                       / IP(src="10.0.2.99", dst="10.0.2.2")
                       / TCP(sport=10000 + i, dport=9, flags="S", seq=i)))
    raw.close()
    ns = netns()
    tap = tap_in(ns, slirp.switch.dir)
    http = HttpServer(size=50_000)
    try:
        time.sleep(0.5)
        assert s.proc.poll() is None, s.log.read_text()
        lease = dhcp_in(ns, sockdir)     # the flood's offers are taken back for a real client
        assert lease["ip"].startswith("10.0.2.")
        assert ns.ping("10.0.2.2", count=2).returncode == 0
        r = subprocess.run(["ip", "netns", "exec", ns.name, "busybox", "wget", "-q", "-O", "-",
                            f"http://10.0.2.2:{http.port}/"], capture_output=True,
                           timeout=60, check=False)
        assert r.stdout == http.body
        s.proc.send_signal(signal.SIGUSR1)   # the report counts what was dropped, and why
        wait_for(lambda: "bad TCP checksum: " in s.log.read_text(), what="the report")
        report = s.log.read_text()
        # counted by reason (a switch may drop a few frames of a flood: counts, not exact)
        counts = {k: int(v) for k, v in re.findall(r"([A-Za-z][\w :]*?): (\d+)", report)}
        for reason in ("IPv4 fragment", "bad IPv4 checksum", "bad TCP checksum",
                       "truncated ARP packet", "DHCP offer taken back"):
            assert counts.get(reason, 0) > 0, report
        assert counts.get("TCP connect: Connection refused", 0) >= 1000, report
    finally:
        http.close()
        tap.terminate(), tap.wait()


@pytest.mark.qemu
def test_qemu_guest_lease_dns_wget_ping(slirp, sockdir):
    """A QEMU guest (TCG, busybox): udhcpc, nslookup through the forwarder, wget of a file
    from a host server on loopback (hash checked), ping of the router."""
    s = slirp("-D")
    http = HttpServer(size=200_000)
    dns = DnsServer()
    digest = hashlib.sha256(http.body).hexdigest()
    script = GUEST_LEASE + f"""
nslookup files.example.test 10.0.2.3
wget -q -O /tmp/f http://10.0.2.2:{http.port}/f && sha256sum /tmp/f
if ping -c 2 -W 3 10.0.2.2; then echo PING-OK; fi
"""
    initrd = build_initramfs(script, sockdir / "slirp-initrd.cpio")
    try:
        wait_data_sockets(slirp.switch.dir, 1)
        out = run_guest(initrd, ["-nic", (f"vde,sock={slirp.switch.dir},model=virtio-net-pci,"
                                          "mac=52:54:00:12:34:77")])
        assert "LEASE ip=10.0.2.15 router=10.0.2.2 dns=10.0.2.3" in out, out[-3000:]
        assert "192.0.2.55" in out, out[-3000:]
        assert digest in out, out[-3000:]
        assert "PING-OK" in out, out[-3000:]
    finally:
        http.close(), dns.close()
        s.stop()


@pytest.mark.qemu
def test_two_qemu_guests_at_once(slirp, sockdir):
    """Two QEMU guests on the switch at the same time: two different leases; each waits
    until it can ping the other (so both are up together), then fetches its own 2 MB file
    from a host server on loopback (the transfers overlap), hash checked, and pings the
    router."""
    s = slirp("-D")
    macs = ["52:54:00:12:34:77", "52:54:00:12:34:78"]
    https = [HttpServer(size=2 << 20) for _ in macs]
    digests = [hashlib.sha256(h.body).hexdigest() for h in https]
    initrds = []
    for i, server in enumerate(https):
        script = GUEST_LEASE + f"""
peer=10.0.2.15
ip addr show eth0 | grep -q 'inet 10.0.2.15/' && peer=10.0.2.16
for i in $(seq 30); do ping -c 1 -W 1 $peer >/dev/null && echo PEER-OK && break; done
wget -q -O /tmp/f http://10.0.2.2:{server.port}/f && sha256sum /tmp/f
if ping -c 2 -W 3 10.0.2.2; then echo PING-OK; fi
"""
        initrds.append(build_initramfs(script, sockdir / f"slirp-initrd-{i}.cpio"))
    try:
        wait_data_sockets(slirp.switch.dir, 1)
        with ThreadPoolExecutor(len(macs)) as pool:     # both QEMUs run at the same time
            runs = [pool.submit(run_guest, initrd, [
                "-nic", f"vde,sock={slirp.switch.dir},model=virtio-net-pci,mac={mac}"])
                for initrd, mac in zip(initrds, macs)]
            outs = [r.result() for r in runs]
        leases = []
        for out, digest in zip(outs, digests):
            lease = re.search(r"LEASE ip=(\S+) router=10\.0\.2\.2 dns=10\.0\.2\.3", out)
            assert lease, out[-3000:]
            leases.append(lease.group(1))
            assert "PEER-OK" in out, out[-3000:]
            assert digest in out, out[-3000:]
            assert "PING-OK" in out, out[-3000:]
        assert sorted(leases) == ["10.0.2.15", "10.0.2.16"], leases
    finally:
        for http in https:
            http.close()
        s.stop()


def test_ping_to_an_outside_address_through_ping_sockets(slirp, netns, sockdir):
    """The router runs in a namespace of its own ("the host") that allows unprivileged
    ping sockets and has an address 198.18.0.1: a guest's echo requests to it go through a
    ping socket and the replies come back with the guest's own id."""
    host = netns()
    host.exec("ip", "link", "add", "out0", "type", "veth", "peer", "name", "out1")
    host.exec("ip", "addr", "add", "198.18.0.1/24", "dev", "out0")
    host.exec("ip", "link", "set", "out0", "up")
    host.exec("ip", "link", "set", "out1", "up")
    host.exec("sh", "-c", "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range")
    slirp("-D", netns=host)
    ns = netns()
    tap = tap_in(ns, slirp.switch.dir)
    try:
        dhcp_in(ns, sockdir)
        r = ns.ping("198.18.0.1", count=3)
        assert r.returncode == 0 and "3 received" in r.stdout, r.stdout + r.stderr
    finally:
        tap.terminate(), tap.wait()


def test_tftp_reads_files_and_refuses_writes(slirp, netns, sockdir):
    root = sockdir / "tftproot"
    root.mkdir()
    (root / "boot.img").write_bytes(os.urandom(3000))
    root.chmod(0o755)
    (root / "boot.img").chmod(0o644)
    slirp("-D", "-t", str(root))
    ns = netns()
    tap = tap_in(ns, slirp.switch.dir)
    try:
        dhcp_in(ns, sockdir)
        out = sockdir / "got.img"
        r = ns.exec("busybox", "tftp", "-g", "-r", "boot.img", "-l", str(out), "10.0.2.2",
                    check=False, timeout=30)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == (root / "boot.img").read_bytes()
        r = ns.exec("busybox", "tftp", "-p", "-r", "new.img", "-l", str(out), "10.0.2.2",
                    check=False, timeout=30)
        assert r.returncode != 0 and not (root / "new.img").exists()
    finally:
        tap.terminate(), tap.wait()


def test_stream_mode_through_pyvde_plug(switches, netns, sockdir):
    """`pyvde-plug SWITCH = pyvde-slirp -s -`: the router on the plug's stdin/stdout."""
    sw = switches("-m", "0777", name="streamsw")
    conf = sockdir / "resolv.conf"
    conf.write_text("nameserver 127.0.0.77\n")
    plug = subprocess.Popen([str(Path(sys.executable).parent / "pyvde-plug"), str(sw.dir), "=",
                             *unprivileged(), PYVDE_SLIRP, "-s", "-", "-D", "-q",
                             "--resolv-conf", str(conf)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    ns = netns()
    tap = tap_in(ns, sw.dir)
    try:
        wait_data_sockets(sw.dir, 2)
        lease = dhcp_in(ns, sockdir)
        assert lease["ip"] == "10.0.2.15"
        assert ns.ping("10.0.2.2", count=2).returncode == 0
    finally:
        tap.terminate(), tap.wait()
        plug.terminate(), plug.wait(10)


def test_bad_options_one_line():
    r = subprocess.run([PYVDE_SLIRP, "-L", "80:nowhere:80"], capture_output=True, text=True,
                       timeout=10, check=False)
    assert r.returncode == 2 and "option -L" in r.stderr.splitlines()[0]
