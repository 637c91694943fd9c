"""Ports and their endpoints (vde-protocol.md §1.11): allocation, access control, printing.

PortTable is pure bookkeeping: which ports exist, which are allocatable, who may use
them and which endpoints are plugged in. It never touches sockets; the switch tells
the data plane what changed. Port numbers run 0..numports: port 0 plus numports
client ports, as in vde_switch since its 2026 off-by-one fix (Debian's 2.3.2 offered
one port less).
"""
from __future__ import annotations

import errno
import grp
import pwd
from dataclasses import dataclass, field

from . import debug
from .console import CommandError, Context
from .dataplane import NOVLAN

MAX_PORTS = 65535


class PortError(CommandError):
    """A port request that cannot be satisfied; str() says why."""


@dataclass
class Endpoint:
    id: int                 # "endpoint ID": the control connection's fd, as in vde_switch
    port: int
    uid: int
    description: str
    module: str = "unix prog"
    data_path: str = ""
    dp_id: int = -1         # the data plane's endpoint id


@dataclass
class Port:
    number: int
    allocatable: bool = True
    acl_user: int | None = None     # port/setuser
    acl_group: int | None = None    # port/setgroup
    user: int | None = None         # the current user, set by the first endpoint
    endpoints: list[Endpoint] = field(default_factory=list)   # newest first

    @property
    def active(self) -> bool:
        return bool(self.endpoints)


def _name(lookup, number: int | None) -> str:
    if number is None or number < 0:
        return "NONE"
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def user_name(uid: int | None) -> str:
    return _name(pwd.getpwuid, uid)


def group_name(gid: int | None) -> str:
    return _name(grp.getgrgid, gid)


class PortTable:
    def __init__(self, numports: int):
        self.numports = numports
        self.ports: dict[int, Port] = {}

    # --- queries
    def get(self, number: int) -> Port | None:
        return self.ports.get(number)

    def in_range(self, number: int) -> bool:
        return 0 <= number <= self.numports

    def endpoints(self) -> list[Endpoint]:
        return [ep for n in sorted(self.ports) for ep in self.ports[n].endpoints]

    def find_endpoint(self, port: int, endpoint_id: int) -> Endpoint | None:
        p = self.ports.get(port)
        return next((ep for ep in p.endpoints if ep.id == endpoint_id), None) if p else None

    # --- access control
    @staticmethod
    def may_use(port: Port, uid: int, gids: frozenset[int]) -> bool:
        if uid == 0:
            return True
        if port.active:
            return port.user == uid
        if port.acl_user is None and port.acl_group is None:
            return True
        return port.acl_user == uid or (port.acl_group is not None and port.acl_group in gids)

    # --- allocation
    def choose(self, requested: int | None, uid: int, gids: frozenset[int] = frozenset()) -> int:
        """The port a request gets; raises PortError naming the reason."""
        if requested is None:
            for n in range(1, self.numports + 1):
                p = self.ports.get(n)
                if p is None or (not p.active and p.allocatable and self.may_use(p, uid, gids)):
                    return n
            raise PortError(errno.ENOMEM, f"no free port (all {self.numports} ports are in use"
                                          " or reserved)")
        if not self.in_range(requested):
            raise PortError(errno.EINVAL, f"port {requested} out of range (0..{self.numports})")
        p = self.ports.get(requested)
        if p is not None and not self.may_use(p, uid, gids):
            if p.active:
                raise PortError(errno.EADDRINUSE, f"port {requested} is in use by user "
                                                  f"{user_name(p.user)}")
            raise PortError(errno.EPERM, f"port {requested} is reserved for user "
                            f"{user_name(p.acl_user)} / group {group_name(p.acl_group)}")
        return requested

    def attach(self, ep: Endpoint) -> bool:
        """Plugs ep into its port (created if needed); True if the port just became active."""
        p = self.ports.get(ep.port)
        if p is None:
            p = self.ports[ep.port] = Port(ep.port)
        became_active = not p.active
        if became_active:
            p.user = ep.uid
        p.endpoints.insert(0, ep)
        return became_active

    def detach(self, ep: Endpoint) -> bool:
        """Unplugs ep; True if its port has no endpoint left."""
        p = self.ports[ep.port]
        p.endpoints.remove(ep)
        if not p.active:
            p.user = None
            return True
        return False

    # --- console-driven changes
    def create(self, number: int, allocatable: bool = False) -> Port:
        if not 1 <= number <= self.numports:
            raise PortError(errno.EINVAL, f"port {number} out of range (1..{self.numports})")
        if number in self.ports:
            raise PortError(errno.EEXIST, f"port {number} exists")
        p = self.ports[number] = Port(number, allocatable=allocatable)
        return p

    def remove(self, number: int) -> None:
        p = self.ports.get(number)
        if p is None:
            raise PortError(errno.ENXIO, f"port {number} does not exist")
        if p.active:
            raise PortError(errno.EADDRINUSE, f"port {number} is active")
        del self.ports[number]

    def set_numports(self, n: int) -> None:
        if n <= 0:
            raise PortError(errno.EINVAL, "the number of ports must be positive")
        if any(num > n for num, p in self.ports.items() if p.active):
            raise PortError(errno.EADDRINUSE, "an active port is beyond the new size")
        for num in [num for num in self.ports if num > n]:
            del self.ports[num]
        self.numports = n


def format_port(p: Port, untagged_vlan: int, stats) -> list[str]:
    """port/print's lines for one port (vde-protocol.md §4.6)."""
    lines = [
        f"Port {p.number:04d} untagged_vlan={untagged_vlan:04d} {'' if p.active else 'IN'}ACTIVE"
        f" - {'' if p.allocatable else 'NOT '}Unnamed Allocatable",
        f" Current User: {user_name(p.user)} Access Control: (User: {user_name(p.acl_user)}"
        f" - Group: {group_name(p.acl_group)})",
        f" IN:  pkts {stats.in_frames:10d}          bytes {stats.in_bytes:20d}",
        f" OUT: pkts {stats.out_frames:10d}          bytes {stats.out_bytes:20d}",
    ]
    for ep in p.endpoints:
        lines.append(f"  -- endpoint ID {ep.id:04d} module {ep.module:<12}: {ep.description}")
    return lines


def parse_owner(text: str, lookup) -> int | None:
    """port/setuser / port/setgroup argument: a name, a number, NONE or ANY (no restriction)."""
    if text in ("NONE", "ANY"):
        return None
    if text.isdigit():
        return int(text)
    try:
        return lookup(text)[2]
    except KeyError:
        raise CommandError(errno.EINVAL, f"no such user or group '{text}'") from None


def register_commands(table, switch) -> None:
    """port/* console commands; they read this module's PortTable and the data plane."""
    ports: PortTable = switch.ports
    dp = switch.dataplane

    def existing(n: int) -> Port:
        if not ports.in_range(n):          # vde_switch: EINVAL out of range, ENXIO missing
            raise CommandError(errno.EINVAL, f"port {n} out of range (0..{ports.numports})")
        p = ports.get(n)
        if p is None:
            raise CommandError(errno.ENXIO, f"port {n} does not exist")
        return p

    def port_arg(word: str) -> int:
        try:
            return int(word, 10)
        except ValueError:
            raise CommandError(errno.EINVAL, f"'{word}' is not a port number") from None

    table.menu("port", "PORT STATUS MENU")

    @table.command("port/showinfo", "", "show port info", data=True)
    def showinfo(ctx: Context) -> None:
        ctx.out += [f"Numports={ports.numports}", f"HUB={'true' if dp.hub else 'false'}",
                    "counters=true"]

    @table.command("port/setnumports", "N", "set the number of ports")
    def setnumports(ctx: Context) -> None:
        n = ctx.int_arg()
        if not 0 < n <= MAX_PORTS:
            raise CommandError(errno.EINVAL)
        ports.set_numports(n)
        dp.set_nslots(n + 1)
        switch.ports_resized(n)

    @table.command("port/sethub", "0/1", "1=HUB 0=switch")
    def sethub(ctx: Context) -> None:
        dp.hub = ctx.int_arg() != 0

    @table.command("port/setvlan", "N VLAN", "set port VLAN (untagged)")
    def setvlan(ctx: Context) -> None:
        n, vlan = ctx.int_args(2)
        if not (0 <= vlan < NOVLAN or vlan == NOVLAN) or not ports.in_range(n):
            raise CommandError(errno.EINVAL)
        existing(n)
        if vlan != NOVLAN and not dp.vlan_exists(vlan):
            raise CommandError(errno.ENXIO, f"VLAN {vlan} does not exist")
        dp.set_untagged(n, vlan)

    @table.command("port/createauto", "",
                   "create a port with an automatically allocated id (inactive|notallocatable)",
                   data=True)
    def createauto(ctx: Context) -> None:
        free = next((n for n in range(1, ports.numports + 1) if n not in ports.ports), None)
        if free is None:
            raise CommandError(errno.ENOSPC)
        ports.create(free)
        switch.debug.emit("port/+", debug.port_message(free))
        ctx.out.append(f"Port {free:04d}")

    @table.command("port/create", "N", "create the port N (inactive|notallocatable)")
    def create(ctx: Context) -> None:
        n = ctx.int_arg()
        ports.create(n)
        switch.debug.emit("port/+", debug.port_message(n))

    @table.command("port/remove", "N", "remove the port N")
    def remove(ctx: Context) -> None:
        n = ctx.int_arg()
        if not ports.in_range(n):
            raise CommandError(errno.EINVAL)
        ports.remove(n)
        switch.vlans.forget_port(n)      # a port made later starts from the defaults

    @table.command("port/allocatable", "N 0/1", "Is the port allocatable as unnamed? 1=Y 0=N")
    def allocatable(ctx: Context) -> None:
        n, flag = ctx.int_args(2)
        existing(n).allocatable = flag != 0

    def set_owner(ctx: Context, attr: str, lookup) -> None:
        words = ctx.arg.split()
        if len(words) != 2:
            raise CommandError(errno.EINVAL)
        p = existing(port_arg(words[0]))
        setattr(p, attr, parse_owner(words[1], lookup))

    table.add("port/setuser", "N user", "access control: set user",
              lambda ctx: set_owner(ctx, "acl_user", pwd.getpwnam))
    table.add("port/setgroup", "N user", "access control: set group",
              lambda ctx: set_owner(ctx, "acl_group", grp.getgrnam))

    @table.command("port/epclose", "N ID", "remove the endpoint port N/id ID")
    def epclose(ctx: Context) -> None:
        port, ep_id = ctx.int_args(2)
        if not ports.in_range(port):
            raise CommandError(errno.EINVAL)
        if not switch.close_endpoint(port, ep_id):
            raise CommandError(errno.ENXIO)

    @table.command("port/resetcounter", "[N]", "reset the port (N) counters")
    def resetcounter(ctx: Context) -> None:
        if ctx.arg:
            n = ctx.int_arg()
            if not ports.in_range(n):
                raise CommandError(errno.EINVAL)
            dp.reset_stats(n)
        else:
            dp.reset_stats()

    def print_ports(ctx: Context, show_inactive: bool) -> None:
        if ctx.arg:
            n = ctx.int_arg()
            if not ports.in_range(n):
                raise CommandError(errno.EINVAL)
            p = ports.get(n)
            if p is None or (not show_inactive and not p.active):
                raise CommandError(errno.ENXIO)
            selected = [p]
        else:
            selected = [ports.ports[n] for n in sorted(ports.ports)
                        if show_inactive or ports.ports[n].active]
        for p in selected:
            ctx.out += format_port(p, dp.untagged(p.number), dp.port_stats(p.number))

    table.add("port/print", "[N]", "print the port/endpoint table",
              lambda ctx: print_ports(ctx, False), data=True)
    table.add("port/allprint", "[N]", "print the port/endpoint table (including inactive port)",
              lambda ctx: print_ports(ctx, True), data=True)

    # --- pyvde's additions (vde_switch has none of these)
    @table.command("port/counters", "[N]", "all counters of the active ports (or port N)",
                   data=True)
    def counters(ctx: Context) -> None:
        numbers = [ctx.int_arg()] if ctx.arg else [n for n in sorted(ports.ports)
                                                   if ports.ports[n].active]
        for n in numbers:
            if not ports.in_range(n):
                raise CommandError(errno.EINVAL)
            st = dp.port_stats(n)
            ctx.out.append(f"Port {n:04d} in {st.in_frames} {st.in_bytes} out {st.out_frames}"
                           f" {st.out_bytes} drop runt {st.drop_runt} oversize {st.drop_oversize}"
                           f" vlan {st.drop_vlan} tx {st.drop_tx} mirror {st.drop_mirror}")

    @table.command("port/mirror", "[SRC DST|off]",
                   "copy all traffic of port SRC to port DST (no arguments: list)", data=True)
    def mirror(ctx: Context) -> None:
        words = ctx.arg.split()
        if not words:
            for n in range(ports.numports + 1):
                dst = dp.mirror(n)
                if dst is not None:
                    ctx.out.append(f"Port {n:04d} mirrored to port {dst:04d}")
            return
        if len(words) != 2:
            raise CommandError(errno.EINVAL)
        src = port_arg(words[0])
        dst = None if words[1] == "off" else port_arg(words[1])
        if not ports.in_range(src) or (dst is not None and not ports.in_range(dst)):
            raise CommandError(errno.EINVAL)
        if dst is None and dp.mirror(src) is None:
            raise CommandError(errno.ENOENT)
        try:
            dp.set_mirror(src, dst)
        except OSError:    # src == dst, or a chain of mirrors
            raise CommandError(errno.EINVAL) from None
