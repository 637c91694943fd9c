"""The router's I/O shell: frames in and out of the virtual network, host sockets, timers.

Every decision is made by the pure cores (arp, dhcp, udp, icmp, tcp, tftp); this module
parses frames, hands them to the right core with the time, and carries out what the cores
answer: frames to the guests and operations on host sockets. Bad frames are counted by
reason and dropped; nothing a guest sends stops the router.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import signal
import socket
import struct
import termios
from collections import Counter, deque
from ipaddress import IPv4Address

import trio

from .._slirp import ffi as _ffi
from .._slirp import lib as _lib
from . import packets as pk
from .arp import Neighbours, arp_reply, arp_request
from .dhcp import DhcpServer
from .dns import Resolvers
from .fastpath import FastPath
from .icmp import PingFlows, local_echo_reply
from .net import Network
from .tcp import (
    Close,
    Connect,
    Consume,
    Peek,
    Segment,
    Send,
    ShutdownWrite,
    TcpConnection,
    ToGuest,
    ToGuestData,
    WantReadable,
    advertised_mss,
)
from .tftp import TftpError, TftpServer
from .udp import UdpFlows

log = logging.getLogger("pyvde-slirp")
TICK = 0.005                    # seconds between timer checks
PENDING_LIMIT = 64              # packets held per address while its MAC is asked for
PENDING_TIME = 1.0              # seconds they are held
MAX_TCP = 1024                  # connections at once
OUT_LIMIT = 1 << 20             # guest data a connection holds for a full socket
BACKLOG_LIMIT = 8192            # frames waiting for room at the switch
KEEPS_UP = 64 << 10             # bytes unsent in a host socket: the reader keeps up
RTO_FIRST = 0.2                 # seconds before the first retransmission to a guest
REPORT_EVERY = 60.0             # seconds between reports of what was dropped, if it changed
LOOPBACK = IPv4Address("127.0.0.1")
SO_RCVLOWAT = socket.SO_RCVLOWAT
SO_PEEK_OFF = 42                # Linux's; Python has no name for it
_DISCARD = memoryview(bytearray(1 << 20))     # where consumed bytes go (never written)
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
LINK_SLOT = 65550 + 1           # the largest frame, and a byte to tell a longer one


class Link:
    """The virtual network side: a switch's data socket (one frame per datagram), a tap
    opened with IFF_VNET_HDR (-s tap://NAME: one frame per read, runs of TCP segments
    written as one packet), or the record stream of vde_plug on stdin/stdout (-s -)."""

    def __init__(self, sock: socket.socket | None, tap_fd: int | None = None):
        self.sock = sock
        self.tap_fd = tap_fd
        # what trio waits on, and what C reads and writes (None: the stream)
        self.fd = tap_fd if tap_fd is not None else sock.fileno() if sock is not None else None
        self.kind = _lib.SLIRP_LINK_TAP if tap_fd is not None else _lib.SLIRP_LINK_DGRAM
        self.buf = bytearray()
        self.dropped = 0
        self.holding = 0
        self.queue: list[bytes] = []    # frames waiting for the end of a hold, or for room
        self.waiting = False            # a task waits for the switch to take frames again
        self.nursery: trio.Nursery | None = None
        self.fast: FastPath | None = None   # frames are received in C (switch, tap)
        if sock is not None:
            sock.setblocking(False)
        os.set_blocking(self.fd if self.fd is not None else 0, False)

    async def frames(self):
        slots = lens = None
        while True:
            if self.fast is not None:
                await trio.lowlevel.wait_readable(self.fd)
                if self.fast.receive(trio.current_time()) < 0:
                    return                  # the switch went away
                yield self.fast.for_python()    # the router calls fast_changes() first
            elif self.fd is not None:
                await trio.lowlevel.wait_readable(self.fd)
                if slots is None:
                    slots = _ffi.new("uint8_t[]", 64 * LINK_SLOT)
                    lens = _ffi.new("uint32_t[]", 64)
                n = _lib.slirp_link_recv(self.fd, self.kind, slots, LINK_SLOT, lens, 64)
                if n < 0:
                    return                  # the switch or the tap went away
                yield [_ffi.buffer(slots + i * LINK_SLOT, lens[i])[:] for i in range(n)]
            else:
                await trio.lowlevel.wait_readable(0)
                try:
                    data = os.read(0, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    return
                self.buf += data
                batch = []
                while len(self.buf) >= 2:
                    n = (self.buf[0] << 8) | self.buf[1]
                    if len(self.buf) < 2 + n:
                        break
                    batch.append(bytes(self.buf[2:2 + n]))
                    del self.buf[:2 + n]
                yield batch

    def hold(self) -> None:
        """From now until flush(), frames wait to leave together (one sendmmsg)."""
        self.holding += 1

    def flush(self) -> None:
        self.holding -= 1
        if not self.holding:
            self._push()

    def send(self, frame: bytes) -> None:
        if len(self.queue) >= BACKLOG_LIMIT:
            self.dropped += 1
            return
        self.queue.append(frame)
        if not self.holding and not self.waiting:
            self._push()

    def take_unsent(self, frames: list[bytes]) -> None:
        """Frames C built that the switch could not take now: they wait their turn."""
        if frames:
            self.hold()
            for f in frames:
                self.send(f)
            self.flush()

    def _push(self) -> None:
        """Sends the queue; what the switch cannot take now waits for room, in order
        (a frame dropped here would cost a TCP retransmission timeout)."""
        if not self.queue or self.waiting:
            return
        frames, self.queue = self.queue, []
        if self.fd is None:
            try:
                os.write(1, b"".join(struct.pack("!H", len(f)) + f for f in frames))
            except OSError:
                self.dropped += len(frames)
            return
        lens = _ffi.new("uint32_t[]", [len(f) for f in frames])
        sent = _lib.slirp_link_send(self.fd, self.kind, b"".join(frames), lens, len(frames), 0)
        if sent < len(frames):
            self.queue = frames[sent:] + self.queue
            if self.nursery is not None:
                self.waiting = True
                self.nursery.start_soon(self._wait_room)
            else:
                self.dropped += len(self.queue)
                self.queue = []

    async def _wait_room(self) -> None:
        try:
            await trio.lowlevel.wait_writable(self.fd)
        except (trio.ClosedResourceError, OSError):
            return
        finally:
            self.waiting = False
        self._push()

class Router:
    def __init__(self, opts, net: Network, link: Link, resolvers: Resolvers):
        self.opts = opts
        self.net = net
        self.link = link
        self.counters: Counter[str] = Counter()
        self.neighbours = Neighbours()
        self.pending: dict[IPv4Address, deque] = {}
        self.dhcp = DhcpServer(net) if opts.dhcp else None
        self.resolvers = resolvers
        self.udp = UdpFlows(net, resolvers)
        self.udp_forward_socks: dict[int, socket.socket] = {}   # -U host port -> its socket
        self.tcp_listeners: list[tuple] = []    # (-L forward, listening socket)
        self.udp_listeners: list[tuple] = []    # (-U forward, its socket)
        self.pings = PingFlows()
        self.tftp = TftpServer(self._tftp_read) if opts.tftp else None
        self.tcp: dict[tuple, TcpShell] = {}
        self.nursery: trio.Nursery | None = None
        self.isn = int.from_bytes(os.urandom(4), "big")
        self.our_macs = (net.router_mac, net.mac_for(net.dns))
        self.held_acks: dict[tuple, Segment] | None = None    # see send_tcp
        self.run_of: list | None = None         # see _tcp_in_batch
        self.dirty: set[TcpShell] = set()       # connections with guest data to write
        self.fast: FastPath | None = None       # established connections carried in C
        self.candidates: set[TcpShell] = set()  # connections that may go to C

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        if self.link.fd is not None and not self.opts.no_fast_path:
            self.fast = self.link.fast = FastPath(self.link.fd, self.link.kind,
                                                  self.net.router_mac)
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.link.nursery = nursery
            nursery.start_soon(self._timers)
            nursery.start_soon(self._report)
            for fwd, lsock in self.tcp_listeners:
                nursery.start_soon(self._accept_loop, fwd, lsock)
            for fwd, lsock in self.udp_listeners:
                nursery.start_soon(self._udp_forward_loop, fwd, lsock)
            async for batch in self.link.frames():
                now = trio.current_time()
                self.held_acks = {}
                self.link.hold()
                self.fast_changes(now)
                self.run_of = []
                for frame in batch:
                    self.handle_frame(frame, now)
                self._end_run(now)
                self.run_of = None
                dirty, self.dirty = self.dirty, set()
                for shell in dirty:         # guest data of the batch: one send per socket
                    shell.flush()
                held, self.held_acks = self.held_acks, None
                for key, seg in held.items():
                    self._send_tcp_now(key, seg)
                self.promote(now)
                self.link.flush()
            nursery.cancel_scope.cancel()

    def open_forwards(self) -> None:
        """-L and -U: listening sockets on every host address, before the router runs."""
        for fwd in self.opts.tcp_forwards:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", fwd.host_port))
            s.listen(64)
            s.setblocking(False)
            self.tcp_listeners.append((fwd, s))
        for fwd in self.opts.udp_forwards:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", fwd.host_port))
            s.setblocking(False)
            self.udp.forward(fwd.host_port, IPv4Address(fwd.guest_addr), fwd.guest_port)
            self.udp_forward_socks[fwd.host_port] = s
            self.udp_listeners.append((fwd, s))

    def report(self) -> str:
        """What was dropped and why, and how many flows there are (SIGUSR1, and once a
        minute in the log when it changed)."""
        counts = Counter(self.counters)
        for core in (self.udp, self.pings):
            counts.update(core.counters)
        if self.dhcp is not None:
            counts.update(self.dhcp.counts)
        counts["neighbour table evictions"] = self.neighbours.evictions
        counts["frames the switch could not take"] = self.link.dropped
        counts = {k: v for k, v in counts.items() if v}
        in_c = ("" if self.fast is None else f" ({len(self.fast)} in C; handed to C "
                f"{self.fast.promoted} times, taken back {self.fast.taken_back})")
        return (f"{len(self.tcp)} TCP{in_c}, {len(self.udp)} UDP, {len(self.pings)} ICMP flows; "
                + ("; ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing dropped"))

    async def _report(self) -> None:
        last = None
        with trio.open_signal_receiver(signal.SIGUSR1) as sigs:
            async def every_minute():
                nonlocal last
                while True:
                    await trio.sleep(REPORT_EVERY)
                    text = self.report()
                    if text != last:
                        log.info("%s", text)
                        last = text
            self.nursery.start_soon(every_minute)
            async for _ in sigs:
                log.info("%s", self.report())

    async def _timers(self) -> None:
        while True:
            await trio.sleep(TICK)
            now = trio.current_time()
            self.link.hold()
            for shell in list(self.tcp.values()):
                c = shell.fast
                if c is not None:
                    if not ((c.rto_at and c.rto_at <= now)
                            or c.last_activity + shell.conn.IDLE_TIMEOUT <= now):
                        continue
                    shell.apply(self.fast.take_back(shell, now))
                d = shell.conn.next_deadline()
                if d is not None and d <= now:
                    shell.apply(shell.conn.timer(now))
            for flow in self.udp.expire(now):
                self._close_udp(flow)
            for flow in self.pings.expire(now):
                self._close_ping(flow)
            if self.tftp is not None:
                for client, payload in self.tftp.timer(now):
                    self._send_udp(self.net.host, 69, client[0], client[1], payload)
            for ip in [ip for ip, q in self.pending.items() if q and q[0][0] + PENDING_TIME < now]:
                self.counters["no MAC for guest address"] += len(self.pending.pop(ip))
            self.promote(now)
            self.link.flush()

    # ------------------------------------------------------------------ the C data path
    def fast_changes(self, now: float) -> None:
        """After C ran: connections it gave back take their state back (before the
        router sees their frames); readers it wants watching wake up."""
        if self.fast is None:
            return
        self.link.take_unsent(self.fast.unsent())
        for shell in self.fast.changed():
            c = shell.fast
            if c is not None and not c.in_table:
                shell.apply(self.fast.take_back(shell, now))
            shell.wake.set()

    def promote(self, now: float) -> None:
        """Connections that tcp.py says are steady go to C."""
        if self.fast is None or not self.candidates:
            return
        shells, self.candidates = self.candidates, set()
        for shell in shells:
            if shell.closed or shell.fast is not None or not shell.may_go_fast():
                continue
            mac = self.neighbours.lookup(shell.key[0])
            if mac is None or not self.fast.promote(shell, mac):
                continue
            shell.wake.set()
            self.fast.pump(shell, now)
            self.fast_changes(now)

    # ------------------------------------------------------------------ frames in
    def handle_frame(self, frame: bytes, now: float) -> None:
        try:
            eth = pk.parse_ethernet(frame)
            if eth.ethertype == pk.ETH_ARP:
                self._end_run(now)
                self._arp(eth, now)
            elif eth.ethertype == pk.ETH_IP and (eth.dst[0] & 1 or eth.dst in self.our_macs):
                self._ip(eth, pk.parse_ipv4(eth.payload), now)
            # other ethertypes (IPv6, LLDP...) and frames for other guests are not for us
        except pk.PacketError as e:
            self.counters[str(e)] += 1
        except TftpError as e:
            self.counters[f"tftp: {e}"] += 1

    def _arp(self, eth: pk.Ethernet, now: float) -> None:
        arp = pk.parse_arp(eth.payload)
        if arp.spa in self.net.network and arp.spa != IPv4Address(0) and not self.net.is_ours(arp.spa):
            self._learn(arp.spa, arp.sha, now)
        reply = arp_reply(self.net, arp)
        if reply is not None:
            self.link.send(reply)

    def _learn(self, ip: IPv4Address, mac: bytes, now: float) -> None:
        self.neighbours.learn(ip, mac, now)
        waiting = self.pending.pop(ip, None)
        for _, packet in waiting or ():
            self.link.send(pk.ip_frame(mac, self.net.router_mac, packet))

    def _ip(self, eth: pk.Ethernet, ip: pk.IPv4, now: float) -> None:
        if ip.src in self.net.network and not self.net.is_ours(ip.src):
            self._learn(ip.src, eth.src, now)
        if ip.proto == pk.PROTO_TCP and self.run_of is not None:
            self._tcp_in_batch(ip, pk.parse_tcp(ip), now)
            return
        self._end_run(now)
        if ip.proto == pk.PROTO_UDP:
            self._udp(eth, ip, pk.parse_udp(ip), now)
        elif ip.proto == pk.PROTO_TCP:
            self._tcp(ip, pk.parse_tcp(ip), now)
        elif ip.proto == pk.PROTO_ICMP:
            self._icmp(ip, pk.parse_icmp(ip), now)
        else:
            self.counters["IP protocol not handled"] += 1

    # ------------------------------------------------------------------ frames out
    def to_guest(self, dst: IPv4Address, packet: bytes, now: float | None = None) -> None:
        """An IPv4 packet for a guest: framed to its MAC, or held while its MAC is asked."""
        mac = self.neighbours.lookup(dst)
        if mac is not None:
            self.link.send(pk.ip_frame(mac, self.net.router_mac, packet))
            return
        if dst == IPv4Address("255.255.255.255"):
            self.link.send(pk.ip_frame(pk.BROADCAST_MAC, self.net.router_mac, packet))
            return
        q = self.pending.setdefault(dst, deque())
        if len(q) >= PENDING_LIMIT:
            self.counters["held for ARP: limit"] += 1
            return
        q.append((trio.current_time() if now is None else now, packet))
        if len(q) == 1:
            self.link.send(arp_request(self.net, dst))

    def _send_udp(self, src: IPv4Address, sport: int, dst: IPv4Address, dport: int,
                  payload: bytes) -> None:
        self.to_guest(dst, pk.build_ipv4(src, dst, pk.PROTO_UDP,
                                         pk.build_udp(src, dst, sport, dport, payload)))

    def send_tcp(self, key: tuple, seg: Segment) -> None:
        """While a batch of frames from the guests is handled, a pure ACK waits until the
        end of the batch: a later cumulative ACK of the same connection replaces it (one
        ACK per batch instead of one per segment). Duplicate ACKs all go out."""
        held = self.held_acks
        if held is None:
            self._send_tcp_now(key, seg)
            return
        old = held.pop(key, None)
        if seg.flags == pk.ACK and not seg.payload:
            if old is not None and old.ack == seg.ack:
                self._send_tcp_now(key, old)        # a duplicate ACK means something
            held[key] = seg
            return
        if old is not None:
            self._send_tcp_now(key, old)
        self._send_tcp_now(key, seg)

    def send_tcp_run(self, key: tuple, run: ToGuestData) -> None:
        """A run of data segments: built in C and sent with the frames around them."""
        if self.held_acks is not None:
            old = self.held_acks.pop(key, None)
            if old is not None:
                self._send_tcp_now(key, old)
        guest_ip, guest_port, remote_ip, remote_port = key
        mac = self.neighbours.lookup(guest_ip)
        payload, mss, n = run.payload, run.mss, len(run.payload)
        if mac is None:         # the guest's MAC is being asked: segment by segment, held
            for pos in range(0, n, mss):
                last = pos + mss >= n
                flags = pk.ACK | (pk.PSH | (pk.FIN if run.fin else 0) if last else 0)
                self._send_tcp_now(key, Segment((run.seq + pos) & 0xFFFFFFFF, run.ack, flags,
                                                run.window, payload[pos:pos + mss]))
            return
        count = -(-n // mss)
        out = _ffi.new("uint8_t[]", count * 54 + n)
        lens = _ffi.new("uint32_t[]", count)
        k = _lib.slirp_build_tcp_run(mac + self.net.router_mac + b"\x08\x00", remote_ip.packed,
                                     guest_ip.packed, remote_port, guest_port, run.seq, run.ack,
                                     run.window, payload, n, mss, run.fin, out, count * 54 + n,
                                     lens, count)
        buf = _ffi.buffer(out)
        self.link.hold()
        off = 0
        for i in range(k):
            self.link.send(buf[off:off + lens[i]])
            off += lens[i]
        self.link.flush()

    def _send_tcp_now(self, key: tuple, seg: Segment) -> None:
        guest_ip, guest_port, remote_ip, remote_port = key
        tcp = pk.build_tcp(remote_ip, guest_ip, remote_port, guest_port, seg.seq, seg.ack,
                           seg.flags, seg.window, seg.payload, mss=seg.mss, wscale=seg.wscale)
        self.to_guest(guest_ip, pk.build_ipv4(remote_ip, guest_ip, pk.PROTO_TCP, tcp))

    # ------------------------------------------------------------------ UDP
    def _udp(self, eth: pk.Ethernet, ip: pk.IPv4, udp: pk.Udp, now: float) -> None:
        if udp.dport == 67 and self.dhcp is not None:
            for frame in self.dhcp.handle(eth.src, udp.payload, now):
                self.link.send(frame)
            return
        if self.tftp is not None and ip.dst == self.net.host and udp.dport == 69:
            for payload in self.tftp.handle((ip.src, udp.sport), udp.payload, now):
                self._send_udp(self.net.host, 69, ip.src, udp.sport, payload)
            return
        got = self.udp.outbound(ip.src, udp.sport, ip.dst, udp.dport, now)
        for old in self.udp.evicted():
            self._close_udp(old)
        if got is None:
            self.counters["UDP destination refused"] += 1
            return
        flow, _ = got
        if flow.inbound:                # a reply through a -U forward: back to the sender
            try:
                self.udp_forward_socks[flow.forward_port].sendto(
                    udp.payload, (str(flow.host_ip), flow.host_port))
            except OSError:
                self.counters["UDP forward reply failed"] += 1
            return
        sock = flow.handle
        if sock is None:
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.connect((str(flow.host_ip), flow.host_port))
            except OSError as e:
                self.counters[f"UDP socket: {os.strerror(e.errno or errno.EIO)}"] += 1
                return
            flow.handle = sock
            self.nursery.start_soon(self._udp_replies, flow, sock)
        try:
            sock.send(udp.payload)
        except OSError:
            self.counters["UDP send to host failed"] += 1

    async def _udp_replies(self, flow, sock: socket.socket) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(sock)
                try:
                    payload = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    continue        # ICMP errors on a connected UDP socket
                now = trio.current_time()
                self.udp.touch(flow, now)
                src, sport = self.udp.inbound_source(flow)
                self._send_udp(src, sport, flow.guest_ip, flow.guest_port, payload)
        except (trio.ClosedResourceError, OSError):
            return

    def _close_udp(self, flow) -> None:
        sock, flow.handle = flow.handle, None
        if sock is not None:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    async def _udp_forward_loop(self, fwd, lsock: socket.socket) -> None:
        """-U: datagrams to the host port go to the guest's port (from the router address
        if they came from the host's loopback); the guest's replies leave through the same
        socket, back to whoever sent them (udp.py keeps the flow)."""
        while True:
            await trio.lowlevel.wait_readable(lsock)
            try:
                payload, peer = lsock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                continue
            now = trio.current_time()
            got = self.udp.inbound(fwd.host_port, IPv4Address(peer[0]), peer[1], now)
            for old in self.udp.evicted():
                self._close_udp(old)
            if got is None:
                self.counters["UDP forward refused"] += 1
                continue
            flow, _ = got
            src, sport = self.udp.inbound_source(flow)
            self._send_udp(src, sport, flow.guest_ip, flow.guest_port, payload)

    # ------------------------------------------------------------------ ICMP
    def _icmp(self, ip: pk.IPv4, icmp: pk.Icmp, now: float) -> None:
        if icmp.type != 8:
            self.counters["ICMP other than echo request"] += 1
            return
        if self.net.is_ours(ip.dst):
            reply = local_echo_reply(self.net, ip.src, ip.dst, ip.payload)
            if reply is not None:
                self.to_guest(ip.src, reply, now)
            return
        if ip.dst in self.net.network or ip.dst.is_multicast or ip.dst == IPv4Address(
                "255.255.255.255"):
            return
        flow, _ = self.pings.outbound(ip.src, icmp.ident, ip.dst, now)
        for old in self.pings.evicted():
            self._close_ping(old)
        sock = flow.handle
        if sock is None:
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
                sock.setblocking(False)
            except OSError:
                self.counters["ICMP: no ping sockets (net.ipv4.ping_group_range)"] += 1
                return
            flow.handle = sock
            self.nursery.start_soon(self._ping_replies, flow, sock)
        try:
            sock.sendto(pk.build_icmp(8, 0, icmp.ident, icmp.seq, icmp.payload),
                        (str(ip.dst), 0))
        except OSError:
            self.counters["ICMP send failed"] += 1

    def _close_ping(self, flow) -> None:
        sock, flow.handle = flow.handle, None
        if sock is not None:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    async def _ping_replies(self, flow, sock: socket.socket) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(sock)
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                packet = self.pings.reply_from_host(flow, data)
                if packet is not None:
                    self.pings.touch(flow, trio.current_time())
                    self.to_guest(flow.guest_ip, packet)
        except (trio.ClosedResourceError, OSError):
            return

    # ------------------------------------------------------------------ TCP
    def _tcp_in_batch(self, ip: pk.IPv4, tcp: pk.Tcp, now: float) -> None:
        """Consecutive data segments of one connection in a batch of frames become one
        segment for the core (their payloads joined, the last one's ACK and window): one
        decision and one write to the host socket instead of one per frame."""
        key = (ip.src, tcp.sport, ip.dst, tcp.dport)
        mergeable = tcp.payload and tcp.flags & ~pk.PSH == pk.ACK and key in self.tcp
        run = self.run_of
        if run and mergeable and run[0] == key and (run[1] + run[2]) & 0xFFFFFFFF == tcp.seq:
            run[2] += len(tcp.payload)
            run[3].append(tcp)
            return
        self._end_run(now)
        if mergeable:
            self.run_of[:] = [key, tcp.seq, len(tcp.payload), [tcp], ip]
        else:
            self._tcp(ip, tcp, now)

    def _end_run(self, now: float) -> None:
        run = self.run_of
        if not run:
            return
        key, seq, _, segs, ip = run
        run.clear()
        last = segs[-1]
        payload = segs[0].payload if len(segs) == 1 else b"".join(t.payload for t in segs)
        self._tcp(ip, pk.Tcp(last.sport, last.dport, seq, last.ack, last.flags, last.window,
                             payload), now, key)

    def _tcp(self, ip: pk.IPv4, tcp: pk.Tcp, now: float, key: tuple | None = None) -> None:
        key = key or (ip.src, tcp.sport, ip.dst, tcp.dport)
        seg = Segment(tcp.seq, tcp.ack, tcp.flags, tcp.window, tcp.payload, tcp.mss, tcp.wscale)
        shell = self.tcp.get(key)
        if shell is not None:
            if shell.fast is not None:      # C has it: its state first
                shell.apply(self.fast.take_back(shell, now))
            shell.apply(shell.conn.from_guest(seg, now))
            return
        if tcp.flags & (pk.SYN | pk.ACK | pk.RST) != pk.SYN:
            if not tcp.flags & pk.RST:      # no such connection: RFC 793's reset
                rst = (Segment(tcp.ack, 0, pk.RST, 0) if tcp.flags & pk.ACK else
                       Segment(0, (tcp.seq + len(tcp.payload) + (tcp.flags & pk.SYN and 1)
                                   + (tcp.flags & pk.FIN and 1)) & 0xFFFFFFFF,
                               pk.RST | pk.ACK, 0))
                self.send_tcp(key, rst)
            return
        target = self._tcp_target(ip.dst, tcp.dport)
        if target is None or len(self.tcp) >= MAX_TCP:
            self.counters["TCP connection refused" if target is None else "TCP: too many"] += 1
            self.send_tcp(key, Segment(0, (tcp.seq + 1) & 0xFFFFFFFF, pk.RST | pk.ACK, 0))
            return
        isn = self._next_isn(now)
        conn, effects = TcpConnection.from_guest_syn(seg, self.net.mtu, now, isn)
        self._tune(conn)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        shell = TcpShell(self, key, sock, conn, target)
        self.tcp[key] = shell
        shell.apply(effects)

    def _tcp_target(self, dst: IPv4Address, port: int) -> tuple[str, int] | None:
        if dst == self.net.host:
            return str(LOOPBACK), port
        if dst == self.net.dns:
            if port != 53:
                return None
            r = self.resolvers.current(trio.current_time())
            return (str(r), 53) if r is not None else None
        if dst in self.net.network or dst.is_multicast or dst.is_unspecified:
            return None
        return str(dst), port

    async def _accept_loop(self, fwd, lsock: socket.socket) -> None:
        """-L: a host connection becomes a connection to the guest's port."""
        guest = IPv4Address(fwd.guest_addr)
        while True:
            await trio.lowlevel.wait_readable(lsock)
            try:
                sock, peer = lsock.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                log.warning("-L %d: accept: %s", fwd.host_port, e.strerror)
                await trio.sleep(0.1)
                continue
            sock.setblocking(False)
            now = trio.current_time()
            src = IPv4Address(peer[0])
            src = self.net.host if src.is_loopback else src
            key = (guest, fwd.guest_port, src, peer[1])
            if key in self.tcp or len(self.tcp) >= MAX_TCP:
                sock.close()
                self.counters["TCP forward: refused"] += 1
                continue
            isn = self._next_isn(now)
            conn, effects = TcpConnection.from_host_accept(self.net.mtu, now, isn)
            self._tune(conn)
            shell = TcpShell(self, key, sock, conn, None)
            self.tcp[key] = shell
            shell.start_reader()
            shell.apply(effects)

    def _next_isn(self, now: float) -> int:
        """Initial sequence numbers: a random start, moving on with every connection and
        with time, so a new connection on the same ports is not mistaken for an old one."""
        self.isn = (self.isn + 64000 + int(now * 250000)) & 0xFFFFFFFF
        return self.isn

    def _tune(self, conn: TcpConnection) -> None:
        """What suits a virtual network behind a switch: runs of data segments built in C;
        a congestion window (a switch drops what a slow guest cannot take: without one, a
        burst the size of the guest's window loses its tail); bursts of at most 64 KiB (or
        four segments at a large MTU); a 200 ms first retransmission timeout (Linux's minimum: the guest is a
        sub-millisecond round trip away, and a lost burst tail would otherwise stall the
        connection for a second)."""
        conn.COALESCE = conn.CONGESTION = True
        conn.PEEK_MAX = max(64 << 10, 4 * advertised_mss(self.net.mtu))
        conn.RTO_INITIAL = conn.rto = RTO_FIRST

    def forget(self, key: tuple) -> None:
        self.tcp.pop(key, None)

    # ------------------------------------------------------------------ TFTP
    def _tftp_read(self, name: str) -> bytes:
        root = os.path.realpath(self.opts.tftp)
        path = os.path.realpath(os.path.join(root, name.lstrip("/")))
        if not path.startswith(root + os.sep):
            raise PermissionError(name)
        with open(path, "rb") as f:
            return f.read()


class TcpShell:
    """One TCP connection's host socket, driven by the core's effects."""

    def __init__(self, router: Router, key: tuple, sock: socket.socket, conn: TcpConnection,
                 target: tuple[str, int] | None):
        self.router = router
        self.key = key
        self.sock = sock
        self.conn = conn
        self.target = target
        self.want_readable = True
        self.wake = trio.Event()
        self.sent_unconsumed = 0        # bytes peeked and sent to the guest, not yet consumed
        self.closed = False
        self.reader_started = False
        self.writable_waiting = False
        self.outbuf = bytearray()       # guest data taken, not yet written to the socket
        self.shut_after_flush = False
        self.closing = False            # closed by the core, the out buffer still draining
        self.refused = False            # a Send was not taken whole
        self.peek_off = True            # SO_PEEK_OFF works here, until it fails once
        self.fast = None                # its struct fast_conn while C carries it

    def now(self) -> float:
        return trio.current_time()

    def apply(self, effects) -> None:
        if self.router.fast is not None:
            self.router.candidates.add(self)
        for e in effects:
            if self.closed:
                return
            if isinstance(e, ToGuest):
                self.router.send_tcp(self.key, e.segment)
            elif isinstance(e, ToGuestData):
                self.router.send_tcp_run(self.key, e)
            elif isinstance(e, Peek):
                self._peek(e)
            elif isinstance(e, Consume):
                self._consume(e.count)
            elif isinstance(e, Send):
                self._send(e.data)
            elif isinstance(e, WantReadable):
                self.want_readable = e.on
                if e.on:
                    self.wake.set()
            elif isinstance(e, Connect):
                self._start_connect()
            elif isinstance(e, ShutdownWrite):
                self._shutdown_write()
            elif isinstance(e, Close):
                self._close(e.reset)

    def may_go_fast(self) -> bool:
        """Nothing of the shell's own under way, and the core steady."""
        return (self.reader_started and self.peek_off and not self.closed
                and not self.outbuf and not self.writable_waiting and not self.refused
                and self.conn.steady() and self._host_keeps_up())

    def _host_keeps_up(self) -> bool:
        """The host application reads what the guest sends: little waits in the socket's
        send queue. (C writes straight to the socket and gives the connection back when it
        is full; a slow reader is better served by the out buffer here.)"""
        try:
            queued = struct.unpack("i", fcntl.ioctl(self.sock, termios.TIOCOUTQ, b"\0" * 4))[0]
        except OSError:
            return False
        return queued < KEEPS_UP

    def _start_connect(self) -> None:
        """A connect to the host's loopback is usually complete, or refused, by the time
        connect() returns: then the guest gets its SYN-ACK (or RST) at once, without a
        round through the event loop."""
        err = self.sock.connect_ex(self.target)
        if err == errno.EINPROGRESS:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not err:
                try:
                    self.sock.getpeername()
                except OSError:         # not connected yet: wait for it
                    self.router.nursery.start_soon(self._connect)
                    return
        self._connect_done(err)

    async def _connect(self) -> None:
        await trio.lowlevel.wait_writable(self.sock)
        self._connect_done(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def _connect_done(self, err: int) -> None:
        if self.closed:
            return
        if err:
            self.router.counters[f"TCP connect: {os.strerror(err)}"] += 1
        self.apply(self.conn.connected(err == 0, self.now()))
        if err == 0:
            self.start_reader()

    def start_reader(self) -> None:
        if not self.reader_started:
            self.reader_started = True
            self.router.nursery.start_soon(self._reader)

    async def _reader(self) -> None:
        try:
            while not self.closed:
                if self.fast is not None:
                    await self._fast_reader_step()
                    continue
                if not self.want_readable:
                    self.wake = trio.Event()
                    await self.wake.wait()
                    continue
                # readable only when there is more than what the guest already has
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVLOWAT,
                                         min(self.sent_unconsumed + 1, 1 << 20))
                except OSError:
                    pass
                await trio.lowlevel.wait_readable(self.sock)
                if self.closed:
                    return
                if self.fast is not None:       # handed to C meanwhile: C reads it now
                    continue
                self.router.link.hold()         # the segments of one peek leave together
                try:
                    self.apply(self.conn.readable(self.now()))
                finally:
                    self.router.link.flush()
                await trio.lowlevel.checkpoint()
        except (trio.ClosedResourceError, OSError):
            return

    async def _fast_reader_step(self) -> None:
        """While C carries the connection: C keeps SO_RCVLOWAT at what is in flight + 1,
        so readable means new host data; C peeks and sends it."""
        if not self.fast.want_read:
            self.wake = trio.Event()
            await self.wake.wait()
            return
        await trio.lowlevel.wait_readable(self.sock)
        if self.closed or self.fast is None:
            return
        router = self.router
        now = self.now()
        router.link.hold()
        try:
            router.fast.pump(self, now)
            router.fast_changes(now)
        finally:
            router.link.flush()
        await trio.lowlevel.checkpoint()

    def _peek(self, e: Peek) -> None:
        """With SO_PEEK_OFF (TCP, Linux 6.9 and later) the kernel peeks from the offset;
        otherwise the bytes the guest already has are peeked again and thrown away."""
        offset = e.offset
        if self.peek_off:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, e.offset)
                offset = 0
            except OSError:
                self.peek_off = False
        try:
            raw = self.sock.recv(offset + e.length, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            raw = b""
        except OSError:
            self.apply(self.conn.host_error(self.now()))
            return
        data = raw[offset:] if offset else raw
        eof = len(raw) < offset + e.length and self._peer_closed()
        self.sent_unconsumed = max(self.sent_unconsumed, e.offset + len(data))
        self.apply(self.conn.peeked(bytes(data), eof, self.now()))

    def _peer_closed(self) -> bool:
        p = select.poll()
        p.register(self.sock, POLLRDHUP)
        return any(ev & (POLLRDHUP | select.POLLHUP) for _, ev in p.poll(0))

    def _consume(self, n: int) -> None:
        while n > 0:
            try:    # TCP with MSG_TRUNC: the kernel discards, nothing is copied
                got = self.sock.recv_into(_DISCARD, min(n, len(_DISCARD)),
                                          socket.MSG_TRUNC | socket.MSG_DONTWAIT)
            except OSError:
                break
            if got <= 0:
                break
            n -= got
            self.sent_unconsumed = max(0, self.sent_unconsumed - got)

    def _send(self, data: bytes) -> None:
        """Guest data: taken into the out buffer (up to OUT_LIMIT) and acknowledged for
        what was taken; written to the socket at the end of the batch of frames, in one
        send for the whole batch."""
        take = len(data) if len(self.outbuf) < OUT_LIMIT else 0    # whole segments only
        self.outbuf += data[:take]
        if take < len(data):
            self.refused = True         # the core closed its window: reopen it once written
        self.apply(self.conn.sent(take, self.now()))
        if self.router.held_acks is None:
            self.flush()
        else:
            self.router.dirty.add(self)

    def _write_out(self) -> None:
        """Writes what the socket takes of the out buffer now."""
        while self.outbuf:
            try:
                n = self.sock.send(self.outbuf, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.outbuf.clear()
                if not self.closed:
                    self.apply(self.conn.host_error(self.now()))
                return
            del self.outbuf[:n]

    def flush(self) -> None:
        self._write_out()
        if self.outbuf:
            if not self.writable_waiting:
                self.writable_waiting = True
                self.router.nursery.start_soon(self._writable)
            return
        if self.shut_after_flush:
            self.shut_after_flush = False
            self._shutdown_write()
        if self.refused and not self.closed:
            self.refused = False
            self.apply(self.conn.writable(self.now()))

    def _shutdown_write(self) -> None:
        if self.outbuf:
            self.shut_after_flush = True
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    async def _writable(self) -> None:
        """The socket was full: write the rest as it drains, then reopen the window (or
        finish the shutdown or the close that waited for the data)."""
        try:
            while self.outbuf:
                await trio.lowlevel.wait_writable(self.sock)
                self._write_out()
        except (trio.ClosedResourceError, OSError):
            return
        finally:
            self.writable_waiting = False
        if self.closing:
            self._really_close(False)
            return
        if self.shut_after_flush:
            self.shut_after_flush = False
            self._shutdown_write()
        if not self.closed:
            self.refused = False
            self.apply(self.conn.writable(self.now()))

    def _close(self, reset: bool) -> None:
        self.closed = True
        if self.fast is not None:       # C never writes to a closing socket
            self.router.fast.forget(self)
        self.wake.set()
        self.router.forget(self.key)
        if not reset and self.outbuf:   # the guest's last data first
            self.closing = True
            if not self.writable_waiting:
                self.writable_waiting = True
                self.router.nursery.start_soon(self._writable)
            return
        self._really_close(reset)

    def _really_close(self, reset: bool) -> None:
        if reset:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        elif self.shut_after_flush:
            self._shutdown_write()
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()
